"""One SGD step through the API (POST /api/v1/runs/{run_id}/step): a small step lowers the loss,
the reply is the /forward reply of the new run, the new run's gradients agree, and every
refusal says what to do."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.cnn import backprop, build_network
from tests.conftest import WORKED_EXAMPLE, client_for, encode, random_pixels
from tests.test_backprop import ref_loss
from tests.test_gradients_api import (
    API,
    CLASSIFIER,
    LOSSES,
    forward,
    get_npy,
    image_for,
    message,
    with_weights,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("run_store", ["memory", "disk"])
@pytest.mark.parametrize("loss", LOSSES)
async def test_a_small_step_lowers_the_loss_and_the_new_run_says_so(
    make_app, run_store: str, loss: str
) -> None:
    app = make_app(run_store=run_store)
    body, _ = with_weights(CLASSIFIER)
    png, image = image_for(CLASSIFIER, seed=12)
    async with client_for(app) as client:
        run = await forward(client, body, png)
        old = run["run_id"]
        before = (await client.get(f"{API}/runs/{old}/gradients?target=2&loss={loss}")).json()
        dw = await get_npy(client, before["layers"][0]["weight_gradient_url"])
        r = await client.post(
            f"{API}/runs/{old}/step", json={"target": 2, "learning_rate": 1e-3, "loss": loss}
        )
        assert r.status_code == 200, r.text
        step = r.json()
        assert step["previous_run_id"] == old and step["run_id"] != old
        assert (step["target"], step["loss"], step["learning_rate"]) == (2, loss, 1e-3)
        assert step["loss_before"] == before["loss_value"]
        assert step["loss_after"] < step["loss_before"]
        # exactly a /forward reply of the new run, plus the step's own fields
        assert set(run) <= set(step)
        assert set(step) - set(run) == {
            "previous_run_id", "target", "loss", "learning_rate", "loss_before", "loss_after"
        }  # fmt: skip
        new = step["run_id"]
        assert all(new in layer["array_url"] for layer in step["layers"])
        assert [la["output_shape"] for la in step["layers"]] == [
            la["output_shape"] for la in run["layers"]
        ]
        assert sum(step["output"]["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert step["output"]["probabilities"] != run["output"]["probabilities"]
        assert step["image"]["original_shape"] == run["input_shape"][:2]
        probs = await get_npy(client, step["layers"][-1]["array_url"])
        np.testing.assert_allclose(probs, step["output"]["probabilities"], rtol=1e-6)
        # the weights moved by -learning_rate * dL/dW
        moved = (
            app.state.run_store.get(new).network.layers[0].weights
            - app.state.run_store.get(old).network.layers[0].weights
        )
        np.testing.assert_allclose(moved, -1e-3 * dw, atol=1e-7)
        # loss_after is the loop reference's loss of the new weights
        stepped = build_network(app.state.run_store.get(new).network.to_spec(), np.float64)
        assert step["loss_after"] == pytest.approx(ref_loss(stepped, 0, image, 2, loss), rel=1e-5)
        # the new run's /gradients: the kept ones, and the same when worked out again
        query = f"?target=2&loss={loss}"
        after = (await client.get(f"{API}/runs/{new}/gradients{query}")).json()
        assert after["loss_value"] == step["loss_after"]
        stepped_run = app.state.run_store.get(new)
        again = backprop.gradients(stepped_run.network, stepped_run.input, 2, loss)
        assert again.loss_value == step["loss_after"]
        # steps repeat: the loss keeps falling
        one_more = {"learning_rate": 1e-3, "target": 2, "loss": loss}
        r = await client.post(f"{API}/runs/{new}/step", json=one_more)
        assert r.status_code == 200 and r.json()["loss_after"] < step["loss_after"]


async def test_the_step_and_the_gradients_default_to_the_top_class(client) -> None:
    run = await forward(client, WORKED_EXAMPLE, encode(random_pixels(32, 32, 3, seed=4)))
    top = run["output"]["top"][0]["index"]
    reply = (await client.get(f"{API}/runs/{run['run_id']}/gradients")).json()
    assert (reply["target"], reply["loss"]) == (top, "cross_entropy")
    assert f"?target={top}&loss=cross_entropy" in reply["layers"][0]["grid_url"]
    assert reply["loss_value"] == pytest.approx(-np.log(run["output"]["top"][0]["p"]), rel=1e-5)
    r = await client.post(f"{API}/runs/{run['run_id']}/step", json={"learning_rate": 0.01})
    assert r.status_code == 200 and r.json()["target"] == top
    assert r.json()["loss_after"] < r.json()["loss_before"]


# -- refusals ---------------------------------------------------------------------------------
async def test_a_step_refuses_learning_rates_out_of_bounds_and_unknown_runs(make_app) -> None:
    async with client_for(make_app(train_max_learning_rate=0.5)) as client:
        run = await forward(client, WORKED_EXAMPLE, encode(random_pixels(32, 32, 3, seed=10)))
        step = f"{API}/runs/{run['run_id']}/step"
        refusals = {
            json.dumps({"learning_rate": 0.6}): "learning_rate 0.6 is more than this server "
            "allows (0.5)",
            json.dumps({"learning_rate": 0}): "learning_rate 0 should be greater than 0",
            json.dumps({"learning_rate": -1}): "learning_rate -1 should be greater than 0",
            '{"learning_rate": Infinity}': "learning_rate",
            '{"learning_rate": NaN}': "learning_rate",
            json.dumps({"lr": 0.1}): "learning_rate is required",
            json.dumps({"learning_rate": 0.1, "loss": "hinge"}): "'cross_entropy' or 'score'",
            json.dumps({"learning_rate": 0.1, "target": 10}): "use 0..9",
            json.dumps({"learning_rate": 0.1, "target": True}): "target",
        }
        for text, words in refusals.items():
            r = await client.post(step, content=text, headers={"content-type": "application/json"})
            assert r.status_code == 422 and words in message(r), (text, r.text)
            assert "The network is not valid" not in message(r), (text, r.text)
        r = await client.post(f"{API}/runs/no-such-run/step", json={"learning_rate": 0.1})
        assert r.status_code == 404 and "unknown or expired" in message(r)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
async def test_a_step_that_would_make_weights_infinite_is_refused_in_words(client) -> None:
    rng = np.random.default_rng(0)  # 1e30 * 1e30 overflows float32: the outputs are NaN
    huge = {
        "input": {"height": 4, "width": 4, "channels": 1},
        "layers": [
            {"type": "flatten"},
            {
                "type": "dense",
                "units": 4,
                "weights": (rng.normal(size=(4, 16)) * 1e30).tolist(),
                "bias": [0] * 4,
            },
            {
                "type": "dense",
                "units": 3,
                "activation": "softmax",
                "weights": (rng.normal(size=(3, 4)) * 1e30).tolist(),
                "bias": [0] * 3,
            },
        ],
    }
    run = await forward(client, huge, encode(random_pixels(4, 4, 1, seed=1)))
    base = f"{API}/runs/{run['run_id']}"
    assert (await client.get(f"{base}/gradients")).status_code == 200  # NaN shown as 0
    r = await client.post(f"{base}/step", json={"learning_rate": 1.0})
    assert r.status_code == 422
    assert "infinite or NaN: the run's gradients overflow float32" in message(r)
    assert r.json()["detail"]["errors"][0]["suggestion"].startswith("Use a smaller learning rate")
