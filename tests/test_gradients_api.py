"""The backward pass through the API (API.md "Backward pass"): every gradient array against central
differences of the slow loop references in float64, the explanations adding up to the arrays'
values, the gradient check, one SGD step lowering the loss, the diverging PNGs, gradients computed
once and kept with their run in the run store (shared by workers), every refusal in words, and
/openapi.json describing it all."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import os
from urllib.parse import urlencode

import numpy as np
import pytest
from PIL import Image

from app.cnn import ConvSpec, DenseSpec, NetworkSpec, backprop, build_network
from app.cnn.spec import FlattenSpec, GlobalPoolSpec, InputSpec, PoolSpec, ReluSpec
from app.storage.model_files import spec_to_dict
from app.web import render
from tests import reference as ref
from tests.conftest import WORKED_EXAMPLE, client_for, encode, random_pixels
from tests.test_backprop import ref_loss, rel_error, sampled_central_differences

pytestmark = pytest.mark.anyio
API = "/api/v1"
FLOAT32_TOLERANCE = 1e-4  # float32 gradients against float64 central differences
LOSSES = ("cross_entropy", "score")


# -- helpers -----------------------------------------------------------------------------------
def npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


def with_weights(spec: NetworkSpec) -> tuple[dict, NetworkSpec]:
    """The spec's JSON with every weight and bias written out, and the engine spec holding the
    same float32 values (so the references run on exactly what the server holds)."""
    resolved = build_network(spec).to_spec()
    body = spec_to_dict(resolved)
    for layer, given in zip(body["layers"], resolved.layers, strict=True):
        if isinstance(given, ConvSpec | DenseSpec):
            layer["weights"] = np.asarray(given.weights).tolist()
            layer["bias"] = np.asarray(given.bias).tolist()
    return body, resolved


def image_for(spec: NetworkSpec, seed: int) -> tuple[bytes, np.ndarray]:
    """A PNG of exactly the input size, and its pixels as the server sees them, in float64.

    No two pixels of a channel are equal (up to 256 of them): 8-bit values tie often, and a max
    pool over a tie has no derivative for central differences to find (see central_differences).
    """
    inp = spec.input
    h, w, c = inp.height, inp.width, inp.channels
    rng = np.random.default_rng(seed)
    if h * w <= 256:
        levels = [rng.permutation(256)[: h * w].reshape(h, w) for _ in range(c)]
        pixels = np.stack(levels, axis=2).astype(np.uint8)
    else:
        pixels = random_pixels(h, w, c, seed=seed)
    seen = (pixels.astype(np.float32) / np.float32(255.0)).astype(np.float64)
    return encode(pixels), seen


def central_differences(
    loss, array: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """As tests/test_backprop.sampled_central_differences, also leaving out elements equal to
    another one: a max pool with overlapping windows copies a value into several cells, and a
    max over two equal cells is a kink whose one-sided slopes differ (a central difference gives
    their mean, backprop the subgradient of the first maximum), like a relu's 0.
    Returns (flat indices, (L(a + h) - L(a - h)) / 2h at them); `array` is restored."""
    return sampled_central_differences(loss, array, rng, leave_out_ties=True)


async def forward(client, body: dict, png: bytes) -> dict:
    r = await client.post(
        f"{API}/forward",
        files={"image": ("x.png", png, "image/png")},
        data={"network": json.dumps(body)},
    )
    assert r.status_code == 200, r.text
    return r.json()


async def get_npy(client, url: str) -> np.ndarray:
    r = await client.get(url)
    assert r.status_code == 200, (url, r.text)
    assert r.headers["content-type"] == "application/octet-stream"
    a = npy(r.content)
    assert a.dtype == np.float32
    return a


def ends_in_softmax(spec: NetworkSpec) -> bool:
    last = spec.layers[-1]
    return isinstance(last, DenseSpec) and last.activation == "softmax"


# Stacks that hold every layer kind with strides and paddings, beside the random ones.
CHOSEN = [
    NetworkSpec(
        InputSpec(9, 9, 3),
        (
            ConvSpec(4, 3, 2, 1),
            PoolSpec("max", 2, 1, 1),
            ConvSpec(3, 3, 1, "same", activation="none"),
            GlobalPoolSpec("avg"),
            FlattenSpec(),
            DenseSpec(6, "relu"),
            DenseSpec(4, "softmax"),
        ),
        seed=21,
    ),
    NetworkSpec(
        InputSpec(11, 7, 1),
        (
            ConvSpec(3, 5, 1, 2, activation="none"),
            PoolSpec("avg", 3, 2, 1),
            ReluSpec(),
            FlattenSpec(),
            DenseSpec(5, "softmax"),
        ),
        seed=22,
    ),
    NetworkSpec(
        InputSpec(7, 7, 3),
        (ConvSpec(2, 3, 2), GlobalPoolSpec("max"), FlattenSpec(), DenseSpec(3, "none")),
        seed=23,
    ),
]


def random_stacks(softmax_ends: int = 8, other_ends: int = 6) -> list[tuple[NetworkSpec, str]]:
    """(stack, loss) pairs: CHOSEN, and tests/reference.random_network_spec on 1 and 3 channels
    (strides, paddings, both pools, global pools, dense activations); a softmax end is tried
    with both losses."""
    rng = np.random.default_rng(1313)
    specs = list(CHOSEN)
    softmax = other = 0
    while softmax < softmax_ends or other < other_ends:
        spec = ref.random_network_spec(rng)
        if spec.input.channels not in (1, 3):
            continue
        if ends_in_softmax(spec) and softmax < softmax_ends:
            specs.append(spec)
            softmax += 1
        elif not ends_in_softmax(spec) and other < other_ends:
            specs.append(spec)
            other += 1
    found = [(s, loss) for s in specs for loss in LOSSES if loss == "score" or ends_in_softmax(s)]
    assert {s.input.channels for s, _ in found} == {1, 3}
    return found


STACKS = random_stacks()


def test_the_stacks_hold_every_layer_kind() -> None:
    kinds = {
        (type(layer).__name__, getattr(layer, "kind", None))
        for spec, _ in STACKS
        for layer in spec.layers
    }
    assert kinds >= {("ConvSpec", None), ("ReluSpec", None), ("PoolSpec", "max"),
                     ("PoolSpec", "avg"), ("GlobalPoolSpec", "max"), ("GlobalPoolSpec", "avg"),
                     ("FlattenSpec", None), ("DenseSpec", None)}  # fmt: skip
    layers = [layer for spec, _ in STACKS for layer in spec.layers]
    assert any(isinstance(layer, ConvSpec) and layer.stride > 1 for layer in layers)
    assert any(isinstance(layer, PoolSpec) and layer.padding > 0 for layer in layers)


CLASSIFIER = NetworkSpec(  # the worked example at a smaller size
    InputSpec(12, 10, 3),
    (ConvSpec(4, 3, 1, 1), PoolSpec("max", 2), FlattenSpec(), DenseSpec(5, "softmax")),
    seed=3,
)


# -- every gradient against central differences -------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "loss"), STACKS, ids=[f"{loss}-{i}" for i, (_, loss) in enumerate(STACKS)]
)
async def test_every_gradient_array_matches_central_differences_of_the_loop_reference(
    client, spec: NetworkSpec, loss: str
) -> None:
    body, resolved = with_weights(spec)
    png, image = image_for(spec, seed=spec.seed % 1000)
    run = await forward(client, body, png)
    reference = build_network(resolved, np.float64)
    rng = np.random.default_rng(spec.seed % 2**32)
    target = int(rng.integers(0, reference.n_classes))

    r = await client.get(f"{API}/runs/{run['run_id']}/gradients?target={target}&loss={loss}")
    assert r.status_code == 200, r.text
    reply = r.json()
    assert (reply["target"], reply["loss"]) == (target, loss)
    assert reply["loss_value"] == pytest.approx(
        ref_loss(reference, 0, image, target, loss), rel=1e-4, abs=1e-6
    )
    assert len(reply["layers"]) == len(spec.layers)

    # dL/d(input)
    got = await get_npy(client, reply["input_gradient_url"])
    assert got.shape == image.shape
    x = image.copy()
    picks, numeric = central_differences(lambda: ref_loss(reference, 0, x, target, loss), x, rng)
    assert rel_error(got.reshape(-1)[picks].astype(np.float64), numeric) < FLOAT32_TOLERANCE

    outputs = ref.forward(reference, image)
    last = len(spec.layers) - 1
    for i, layer in enumerate(reply["layers"]):
        assert layer["index"] == i
        got = await get_npy(client, layer["gradient_url"])
        assert got.shape == outputs[i].shape == tuple(layer["output_shape"])
        stats = layer["stats"]
        assert stats["min"] == pytest.approx(float(got.min()))
        assert stats["abs_mean"] == pytest.approx(float(np.abs(got).astype(np.float64).mean()))
        if i == last:  # dL/d(output): 1 at the target for the score, -1/p[target] for -log p
            want = np.zeros(got.size)
            p = outputs[i].reshape(-1)[target]
            want[target] = 1.0 if loss == "score" else -1.0 / p
            np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-5)
        else:
            a = outputs[i].copy()
            picks, numeric = central_differences(
                lambda a=a, i=i: ref_loss(reference, i + 1, a, target, loss), a, rng
            )
            analytic = got.reshape(-1)[picks].astype(np.float64)
            assert rel_error(analytic, numeric) < FLOAT32_TOLERANCE, (i, layer["type"])
        learner = reference.layers[i]
        if layer["weight_gradient_url"] is None:
            assert layer["bias_gradient_url"] is None
            assert layer["type"] not in ("conv", "dense")
            continue
        for url, param in (
            (layer["weight_gradient_url"], learner.weights),
            (layer["bias_gradient_url"], learner.bias),
        ):
            got = await get_npy(client, url)
            assert got.shape == param.shape
            picks, numeric = central_differences(
                lambda: ref_loss(reference, 0, image, target, loss), param, rng
            )
            analytic = got.reshape(-1)[picks].astype(np.float64)
            assert rel_error(analytic, numeric) < FLOAT32_TOLERANCE, (i, url)


# -- explanations and the gradient check --------------------------------------------------------
def assert_terms_add_up(found: dict) -> None:
    total = sum(term["product"] for term in found["terms"])
    scale = sum(abs(term["product"]) for term in found["terms"]) + abs(found["value"])
    assert abs(total - found["value"]) <= 1e-5 * scale + 1e-9, found["formula"]


@pytest.mark.parametrize(
    ("spec", "loss"), STACKS[:6], ids=[f"{loss}-{i}" for i, (_, loss) in enumerate(STACKS[:6])]
)
async def test_explained_gradients_add_up_to_the_values_of_the_arrays(
    client, spec: NetworkSpec, loss: str
) -> None:
    body, _ = with_weights(spec)
    png, _ = image_for(spec, seed=7)
    run = await forward(client, body, png)
    reply = (await client.get(f"{API}/runs/{run['run_id']}/gradients?loss={loss}")).json()
    rng = np.random.default_rng(5)
    for layer in reply["layers"]:
        out = await get_npy(client, layer["gradient_url"])
        asks: list[tuple[dict, float]] = []
        for _ in range(3):
            pos = tuple(int(rng.integers(0, n)) for n in out.shape)
            where = {"i": pos[0]} if out.ndim == 1 else dict(zip("yxc", pos, strict=True))
            asks.append((where, float(out[pos])))
        if layer["weight_gradient_url"] is not None:
            dw = await get_npy(client, layer["weight_gradient_url"])
            db = await get_npy(client, layer["bias_gradient_url"])
            for _ in range(2):
                w = tuple(int(rng.integers(0, n)) for n in dw.shape)
                asks.append(({"weight": ",".join(map(str, w))}, float(dw[w])))
            k = int(rng.integers(0, db.size))
            asks.append(({"bias": k}, float(db[k])))
        for where, value in asks:
            r = await client.get(f"{layer['explain_url']}&{urlencode(where)}")
            assert r.status_code == 200, r.text
            found = r.json()
            assert found["value"] == value  # the .npy element, exactly
            assert (found["layer"], found["type"]) == (layer["index"], layer["type"])
            assert (found["target"], found["loss"]) == (reply["target"], loss)
            assert_terms_add_up(found)
            assert "check" not in found


async def test_the_gradient_check_agrees_with_backprop_for_weights_and_biases(client) -> None:
    body, _ = with_weights(CLASSIFIER)
    png, _ = image_for(CLASSIFIER, seed=11)
    run = await forward(client, body, png)
    base = f"{API}/runs/{run['run_id']}/layers"
    for loss in LOSSES:
        for index, where in (
            (0, {"weight": "1,2,0,2"}),
            (0, {"weight": "3,1,1,0"}),
            (0, {"bias": 2}),
            (3, {"weight": "4,17"}),
            (3, {"bias": 0}),
        ):
            query = {"target": 1, "loss": loss, "check": "true", **where}
            r = await client.get(f"{base}/{index}/explain_gradient", params=query)
            assert r.status_code == 200, r.text
            found = r.json()
            check = found["check"]
            assert set(check) == {"analytic", "numeric", "relative_error", "h", "loss_plus",
                                  "loss_minus"}  # fmt: skip
            assert check["relative_error"] < 1e-5, (loss, index, where, check)
            assert check["numeric"] == pytest.approx(
                (check["loss_plus"] - check["loss_minus"]) / (2 * check["h"]), rel=1e-9
            )
            assert check["analytic"] == pytest.approx(found["value"], rel=1e-4, abs=1e-7)


# -- the PNGs -----------------------------------------------------------------------------------
async def test_gradient_maps_are_diverging_with_zero_in_the_middle_and_one_scale(client) -> None:
    body, _ = with_weights(CLASSIFIER)
    png, _ = image_for(CLASSIFIER, seed=13)
    run = await forward(client, body, png)
    reply = (await client.get(f"{API}/runs/{run['run_id']}/gradients?target=0")).json()
    layer = reply["layers"][0]  # the conv under a max pool: zero wherever a cell lost
    g = await get_npy(client, layer["gradient_url"])
    assert (g == 0).any() and (g > 0).any() and (g < 0).any()
    assert layer["scale"] == pytest.approx(float(np.abs(g).max()))
    r = await client.get(layer["grid_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(r.content))
    assert image.mode == "P"
    assert image.getpalette()[: 3 * render.LEVELS] == list(render.DIVERGING_PALETTE[:765])
    indices = np.asarray(image)
    h, w, channels = g.shape
    rows, cols = render.grid_layout(channels, h, w)
    assert indices.shape == (rows * (h + 1) - 1, cols * (w + 1) - 1)
    middle = (render.LEVELS - 1) // 2
    want = np.rint(g * (middle / layer["scale"]) + middle)  # one scale for every channel
    for c in range(channels):
        top, left = (c // cols) * (h + 1), (c % cols) * (w + 1)
        tile = indices[top : top + h, left : left + w, ...].astype(int)
        assert (tile[g[:, :, c] == 0] == middle).all()
        assert (tile[g[:, :, c] > 0] >= middle).all() and (tile[g[:, :, c] < 0] <= middle).all()
        assert np.abs(tile - want[:, :, c]).max() <= 1
    assert {int(indices.min()), int(indices[indices < 255].max())} & {0, 2 * middle}
    palette = np.array(image.getpalette()).reshape(-1, 3)
    assert tuple(palette[middle]) == (247, 247, 247)  # ColorBrewer RdBu's middle
    # the input's map, and a cached second answer
    r = await client.get(reply["input_grid_url"])
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).mode == "P"
    assert (await client.get(layer["grid_url"])).content == (
        await client.get(layer["grid_url"])
    ).content


# -- computed once, kept with the run -------------------------------------------------------------
@pytest.fixture
def computed(monkeypatch) -> list[tuple[int, str]]:
    """(target, loss) of every backward pass the server computes (app.cnn.backprop.gradients,
    counted as it is called)."""
    calls: list[tuple[int, str]] = []
    real = backprop.gradients

    def counted(network, image, target, loss):
        calls.append((target, loss))
        return real(network, image, target, loss)

    monkeypatch.setattr(backprop, "gradients", counted)
    return calls


def example_urls(run: dict, target: int = 1) -> list[str]:
    """Every gradient URL of a run of the worked example, for one target."""
    base, query = f"{API}/runs/{run['run_id']}", f"?target={target}"
    urls = [f"{base}/gradients{query}", f"{base}/input_gradient.npy{query}"]
    urls += [f"{base}/layers/{i}/gradient.png{query}" for i in range(4)]
    urls += [f"{base}/layers/{i}/gradient.npy{query}" for i in range(4)]
    urls += [f"{base}/layers/0/weight_gradient.npy{query}"]
    urls += [f"{base}/layers/3/explain_gradient{query}&i=2"]
    return urls


async def test_gradients_are_computed_once_per_run_target_and_loss(app, client, computed) -> None:
    run = await forward(client, WORKED_EXAMPLE, encode(random_pixels(32, 32, 3, seed=5)))
    base = f"{API}/runs/{run['run_id']}"
    urls = example_urls(run)
    replies = await asyncio.gather(*(client.get(url) for url in urls))  # all at once
    assert [r.status_code for r in replies] == [200] * len(urls)
    assert computed == [(1, "cross_entropy")]
    await client.get(f"{base}/gradients?target=1&loss=score")
    await client.get(f"{base}/gradients?target=2")
    await client.get(f"{base}/gradients?target=1")
    assert computed == [(1, "cross_entropy"), (1, "score"), (2, "cross_entropy")]
    store = app.state.run_store  # where they are kept: with the run
    for target, loss in computed:
        assert store.get_gradients(run["run_id"], target, loss) is not None
    assert 0 < store.nbytes <= app.state.settings.run_store_max_bytes


async def test_the_kept_gradients_stay_within_the_run_stores_bytes(make_app, computed) -> None:
    pngs = [encode(random_pixels(32, 32, 3, seed=s)) for s in range(4)]
    async with client_for(measure := make_app()) as client:
        first = await forward(client, WORKED_EXAMPLE, pngs[0])
        run_only = measure.state.run_store.nbytes
        assert (await client.get(f"{API}/runs/{first['run_id']}/gradients")).status_code == 200
        with_gradients = measure.state.run_store.nbytes
    room = 2 * with_gradients + run_only // 2  # two runs with their gradients, not three
    app = make_app(run_store_max_bytes=room)
    store = app.state.run_store
    async with client_for(app) as client:
        runs = []
        for png in pngs:  # as the page does: a run, then its backward pass
            runs.append(run := await forward(client, WORKED_EXAMPLE, png))
            r = await client.get(f"{API}/runs/{run['run_id']}/gradients")
            assert r.status_code == 200
            assert store.nbytes <= room
        assert len(store) == 2  # the first runs went, their gradients with them
        for run in runs[:2]:
            assert (await client.get(f"{API}/runs/{run['run_id']}/gradients")).status_code == 404
        for run in runs[2:]:
            top = run["output"]["top"][0]["index"]
            assert store.get_gradients(run["run_id"], top, "cross_entropy") is not None
    assert len(computed) == 1 + 4

    # Gradients bigger than the whole store: never kept, computed for each request.
    app = make_app(run_store_max_bytes=with_gradients - run_only - 1)
    async with client_for(app) as client:
        run = await forward(client, WORKED_EXAMPLE, pngs[0])
        for _ in range(2):
            r = await client.get(f"{API}/runs/{run['run_id']}/layers/0/gradient.npy")
            assert r.status_code == 200
    assert len(computed) == 5 + 2
    assert app.state.run_store.nbytes == run_only


async def test_gradients_computed_by_one_worker_are_served_by_another(make_app, computed) -> None:
    """Two apps over one data dir, as two worker processes of one machine with the disk store:
    what one computes, the other serves without computing again, byte for byte."""
    one, other = make_app(run_store="disk"), make_app(run_store="disk")
    async with client_for(one) as first, client_for(other) as second:
        run = await forward(first, WORKED_EXAMPLE, encode(random_pixels(32, 32, 3, seed=14)))
        urls = example_urls(run)
        mine = [await first.get(url) for url in urls]
        assert computed == [(1, "cross_entropy")]
        theirs = [await second.get(url) for url in urls]
        assert computed == [(1, "cross_entropy")]
        for url, a, b in zip(urls, mine, theirs, strict=True):
            assert a.status_code == b.status_code == 200, (url, b.text)
            assert a.content == b.content, url
        # a step's new run comes with its gradients, for every worker
        body = {"target": 1, "learning_rate": 0.01}  # the gradients before: the kept ones
        r = await first.post(f"{API}/runs/{run['run_id']}/step", json=body)
        assert r.status_code == 200, r.text
        step = r.json()
        assert len(computed) == 2  # the new run's backward pass, once
        query = f"?target={step['target']}&loss={step['loss']}"
        r = await second.get(f"{API}/runs/{step['run_id']}/gradients{query}")
        assert r.status_code == 200 and r.json()["loss_value"] == step["loss_after"]
        assert len(computed) == 2


async def test_a_store_that_cannot_keep_gradients_still_answers_with_them(
    make_app, computed, monkeypatch, caplog
) -> None:
    app = make_app(run_store="disk")
    replace = os.replace

    def full(source, target):  # the disk is full when the gradients are moved into place
        if str(target).endswith(".grad"):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(os, "replace", full)
    async with client_for(app) as client:
        run = await forward(client, WORKED_EXAMPLE, encode(random_pixels(32, 32, 3, seed=15)))
        url = f"{API}/runs/{run['run_id']}/layers/0/gradient.npy?target=3"
        with caplog.at_level(logging.WARNING, logger="cnn_explorer"):
            answers = [await client.get(url) for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 200]
    assert answers[0].content == answers[1].content
    assert computed == [(3, "cross_entropy")] * 2  # not kept, so worked out again
    assert f"gradients of run {run['run_id']} not kept" in caplog.text
    assert "No space left on device" in caplog.text


# -- refusals, in words ---------------------------------------------------------------------------
GRADIENT_PATHS = [
    "gradients",
    "input_gradient.npy",
    "input_gradient.png",
    "layers/0/gradient.npy",
    "layers/0/gradient.png",
    "layers/0/weight_gradient.npy",
    "layers/0/bias_gradient.npy",
    "layers/0/explain_gradient?bias=0",
]


def message(r) -> str:
    return r.json()["detail"]["message"]


async def test_every_refusal_is_a_4xx_that_says_what_to_do(client) -> None:
    run = await forward(client, WORKED_EXAMPLE, encode(random_pixels(32, 32, 3, seed=6)))
    base = f"{API}/runs/{run['run_id']}"
    for path in GRADIENT_PATHS:
        sep = "&" if "?" in path else "?"
        r = await client.get(f"{API}/runs/no-such-run/{path}")
        assert r.status_code == 404 and "unknown or expired" in message(r), path
        r = await client.get(f"{base}/{path}{sep}loss=hinge")
        assert r.status_code == 422 and "'cross_entropy' or 'score'" in message(r), path
        r = await client.get(f"{base}/{path}{sep}target=10")
        assert r.status_code == 422 and "use 0..9" in message(r), path
        assert r.json()["detail"]["errors"][0]["field"] == "target"
        r = await client.get(f"{base}/{path}{sep}target=-1")
        assert r.status_code == 422 and "use 0..9" in message(r), path
    for path in ("gradient.npy", "gradient.png", "explain_gradient?i=0"):
        r = await client.get(f"{base}/layers/4/{path}")
        assert r.status_code == 404 and "layers 0..3; there is no layer 4" in message(r)
    for path in ("weight_gradient.npy", "bias_gradient.npy"):
        r = await client.get(f"{base}/layers/1/{path}")
        assert r.status_code == 404, path
        assert message(r) == (
            "Layer 1 (maxpool) has no weights, so no weight or bias gradient; the layers with "
            "weights are 0, 3."
        )
    explain = f"{base}/layers/0/explain_gradient"
    refusals = {
        "": "Say which gradient to explain",
        "?weight=1,2": "weight for layer 0 (conv) is k,fy,fx,c (shape [10, 5, 5, 3])",
        "?weight=1,2,3,3": "weight[3] must be in 0..2 for layer 0 (conv), got 3",
        "?weight=10,0,0,0": "weight[0] must be in 0..9",
        "?weight=a,b": "weight must be whole numbers separated by commas",
        "?bias=10": "bias must be in 0..9",
        "?y=32&x=0&c=0": "y must be in 0..31",
        "?y=1&x=1&c=1&check=true": "check=true compares the gradient of one weight or bias",
        "?y=1&x=1&c=1&bias=2": "Ask for one gradient at a time",
        "?bias=1&check=true&h=0": "h '0' should be greater than 0",
    }
    for query, words in refusals.items():
        r = await client.get(f"{explain}{query}")
        assert r.status_code == 422 and words in message(r), (query, r.text)
    r = await client.get(f"{base}/layers/1/explain_gradient?bias=0")
    assert r.status_code == 422
    assert "layer 1 (maxpool) has no weights; ask for a conv or dense layer" in message(r)
    r = await client.get(f"{base}/layers/3/explain_gradient?weight=1,2,3,4")
    assert r.status_code == 422 and "is u,j (shape [10, 2560])" in message(r)


async def test_cross_entropy_needs_a_softmax_end_and_says_use_score(client) -> None:
    layers = [*WORKED_EXAMPLE["layers"][:3], {"type": "dense", "units": 4}]  # no softmax
    plain = {**WORKED_EXAMPLE, "layers": layers}
    run = await forward(client, plain, encode(random_pixels(32, 32, 3, seed=8)))
    base = f"{API}/runs/{run['run_id']}"
    for path in GRADIENT_PATHS:
        r = await client.get(f"{base}/{path}")
        assert r.status_code == 422 and "Use loss=score" in message(r), path
        assert r.json()["detail"]["errors"][0]["field"] == "loss"
    r = await client.post(f"{base}/step", json={"learning_rate": 0.1})
    assert r.status_code == 422 and "Use loss=score" in message(r)
    r = await client.get(f"{base}/gradients?loss=score")
    assert r.status_code == 200 and r.json()["loss_value"] == pytest.approx(
        max(run["output"]["values"]), rel=1e-6
    )
    r = await client.post(f"{base}/step", json={"learning_rate": 0.01, "loss": "score"})
    assert r.status_code == 200 and r.json()["loss_after"] < r.json()["loss_before"]


# -- the contract -------------------------------------------------------------------------------
async def test_openapi_documents_the_backward_pass(client) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in GRADIENT_PATHS:
        assert f"{API}/runs/{{run_id}}/{path.split('?')[0].replace('0', '{index}', 1)}" in paths
    assert "post" in paths[f"{API}/runs/{{run_id}}/step"]
    components = schema["components"]["schemas"]
    for name in ("GradientsResponse", "GradientLayer", "GradientStats", "GradientExplainResponse",
                 "GradientCheckInfo", "StepRequest", "StepResponse"):  # fmt: skip
        inherited = components["ForwardResponse"]["properties"] if name == "StepResponse" else {}
        own = {f: prop for f, prop in components[name]["properties"].items() if f not in inherited}
        missing = [f for f, prop in own.items() if "description" not in prop]
        assert not missing, (name, missing)
    fields = set(components["GradientsResponse"]["properties"])
    assert {"target", "loss", "loss_value", "input_gradient_url", "layers"} <= fields
    layer = set(components["GradientLayer"]["properties"])
    assert {"index", "type", "stats", "grid_url", "gradient_url", "weight_gradient_url",
            "bias_gradient_url"} <= layer  # fmt: skip
    assert set(components["GradientStats"]["properties"]) == {"min", "max", "mean", "abs_mean"}
    step = set(components["StepResponse"]["properties"])
    assert set(components["ForwardResponse"]["properties"]) < step
    assert {"loss_before", "loss_after", "previous_run_id"} <= step
    query = {p["name"] for p in paths[f"{API}/runs/{{run_id}}/gradients"]["get"]["parameters"]}
    assert {"target", "loss"} <= query
