"""Every check once: a request's network is converted to the engine's spec and its shapes are
inferred once, and building it reuses that report (app/web/checks.py)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import app.cnn.network as network_module
import app.web.checks as checks_module
from app.schemas import NetworkSpecModel
from tests.conftest import WORKED_EXAMPLE

pytestmark = pytest.mark.anyio
API = "/api/v1"


@pytest.fixture
def calls(monkeypatch) -> Counter:
    """How often a request converts a network (to_engine) and infers its shapes (checks or
    build_network)."""
    counted: Counter = Counter()

    def counting(name: str, real):
        def wrapper(*args, **kwargs):
            counted[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        NetworkSpecModel, "to_engine", counting("to_engine", NetworkSpecModel.to_engine)
    )
    monkeypatch.setattr(
        checks_module, "infer_shapes", counting("infer_shapes", checks_module.infer_shapes)
    )
    monkeypatch.setattr(
        network_module, "infer_shapes", counting("infer_shapes", network_module.infer_shapes)
    )
    return counted


async def test_shapes_converts_and_infers_once(client, calls):
    r = await client.post(f"{API}/shapes", json=WORKED_EXAMPLE)
    assert r.status_code == 200 and r.json()["valid"]
    assert calls == {"to_engine": 1, "infer_shapes": 1}


async def test_forward_checks_and_builds_the_network_inferring_its_shapes_once(
    client, calls, png_bytes
):
    r = await client.post(
        f"{API}/forward",
        files={"image": ("i.png", png_bytes, "image/png")},
        data={"network": json.dumps(WORKED_EXAMPLE)},
    )
    assert r.status_code == 200, r.text
    assert calls == {"to_engine": 1, "infer_shapes": 1}


async def test_an_impossible_network_is_refused_before_anything_is_built(client, calls, png_bytes):
    spec = {**WORKED_EXAMPLE, "layers": [{"type": "conv", "filters": 1, "kernel_size": 3,
                                          "stride": 4}]}  # fmt: skip
    r = await client.post(
        f"{API}/forward",
        files={"image": ("i.png", png_bytes, "image/png")},
        data={"network": json.dumps(spec)},
    )
    assert r.status_code == 422
    assert calls == {"to_engine": 1, "infer_shapes": 1}
