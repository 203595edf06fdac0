"""Schemathesis against the app's own /openapi.json, in process (ASGI): for every operation,
generated requests (valid and invalid) must never get a 5xx, and every response must match the
schema (status code documented, content type, body).

Deterministic (derandomized Hypothesis) and bounded: MAX_EXAMPLES per operation and phase, on an
app with small limits so a generated network stays cheap. Paths that name a run get a real run
half of the time (by the parity of the generated id), so the fuzzer reaches the layer, channel
and explain code rather than only "unknown run".
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from app.settings import Settings
from app.web.admission import get_gate
from app.web.deps import API_PREFIX, run_context
from app.web.main import create_app
from tests.conftest import encode, random_pixels

pytestmark = pytest.mark.slow  # fuzzing: make test-quick leaves it out

MAX_EXAMPLES = 200

LIMITS = dict(
    max_upload_bytes=64 * 1024,
    max_image_pixels=256 * 256,
    max_network_bytes=64 * 1024,
    max_input_side=32,
    max_layers=6,
    max_filters=8,
    max_kernel_size=5,
    max_units=64,
    max_activation_bytes=4 * 2**20,
    max_params=100_000,
    max_multiply_adds=2_000_000,
    cpu_time_budget_seconds=30,
    # A generated training request that passes the checks trains for a moment, on little data.
    train_max_epochs=1,
    train_max_examples=32,
    train_max_seconds=2,
    max_saved_models=2,
)
# Nothing outside a temporary directory: the fuzzer may save and delete models.
DATA_DIR = Path(tempfile.mkdtemp(prefix="cnn-fuzz-"))
APP = create_app(Settings(models_dir=DATA_DIR / "no-models", data_dir=DATA_DIR, **LIMITS))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
)

NETWORK = {
    "input": {"height": 6, "width": 6, "channels": 3},
    "layers": [
        {"type": "conv", "filters": 2, "kernel_size": 3},
        {"type": "maxpool", "size": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 3, "activation": "softmax"},
    ],
}
# What a response must be. Not checked: whether the server refuses every schema-invalid request
# (Pydantic's lax mode takes "3" for 3 and false for 0.0) or accepts every schema-valid one (a
# well-typed network can still be impossible, an image bytes field can hold any bytes).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PNG = encode(random_pixels(6, 6, 3))
RANGES = {"index": 6, "channel": 4, "y": 5, "x": 5, "c": 3, "i": 10}  # a little past each end


SEEN: defaultdict[str, Counter[int]] = defaultdict(Counter)


@pytest.fixture(scope="module", autouse=True)
def report_statuses():
    """Print the statuses seen per operation (pytest -s shows them)."""
    yield
    for operation, statuses in sorted(SEEN.items()):
        print(f"{operation}: {sum(statuses.values())} requests, {dict(sorted(statuses.items()))}")


@pytest.fixture(scope="module")
def run_id() -> str:
    with TestClient(APP) as client:
        r = client.post(
            "/api/v1/forward",
            files={"image": ("i.png", PNG, "image/png")},
            data={"network": json.dumps(NETWORK)},
        )
    assert r.status_code == 200, r.text
    return r.json()["run_id"]


def aim_at_the_run(case, run_id: str) -> None:
    """Point half of the generated run paths at a real run, with indices near its ranges, and
    the explain queries at the coordinates their layer needs (missing ones filled with 0)."""
    path = case.path_parameters or {}
    generated = path.get("run_id")
    if not isinstance(generated, str) or len(generated) % 2:
        return
    path["run_id"] = run_id
    query = case.query if isinstance(case.query, dict) else {}
    for params in (path, query):
        for name, span in RANGES.items():
            if isinstance(params.get(name), int) and not isinstance(params[name], bool):
                params[name] = params[name] % span
    if case.path.endswith("/explain") and isinstance(path.get("index"), int):
        for name in ("y", "x", "c") if path["index"] < 2 else ("i",):
            query.setdefault(name, 0)
        case.query = query


def aim_at_a_forward_pass(case) -> None:
    """Half of the generated uploads become a real PNG, half of the networks a valid one, so
    the fuzzer reaches decoding and the forward pass, not only the field checks."""
    body = case.body
    if case.path != "/api/v1/forward" or not isinstance(body, dict):
        return
    image, network = body.get("image"), body.get("network")
    if isinstance(image, str | bytes) and len(image) % 2 == 0:
        body["image"] = PNG
    if isinstance(network, str) and len(network) % 2 == 0 and not body.get("model"):
        body["network"] = json.dumps(NETWORK)


@schema.parametrize()
@settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors_and_responses_match_the_schema(case, run_id):
    aim_at_the_run(case, run_id)
    aim_at_a_forward_pass(case)
    response = case.call_and_validate(checks=CHECKS)
    SEEN[f"{case.method} {case.path}"][response.status_code] += 1


def test_every_422_in_the_schema_is_the_documented_error_shape():
    doc = APP.openapi()
    assert "HTTPValidationError" not in json.dumps(doc)
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            response = operation["responses"].get("422")
            if response is not None:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)


def uses_the_gate(dependant: Dependant) -> bool:
    """Whether a route gets the gate: on its own, or in the run routes' one RunContext."""
    return dependant.call in (get_gate, run_context) or any(
        uses_the_gate(d) for d in dependant.dependencies
    )


def api_routes(routes: list) -> Iterator[APIRoute]:
    """Every APIRoute, looking inside included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and inner is not APP.router:
            yield from api_routes(inner.routes)


def test_every_route_that_waits_for_the_cpu_gate_documents_503_and_504():
    doc = APP.openapi()
    gated = [r for r in api_routes(APP.routes) if uses_the_gate(r.dependant)]
    assert len(gated) >= 6  # forward, the maps, the array, explain, ...
    for route in gated:
        path = route.path_format
        path = path if path.startswith(API_PREFIX) else API_PREFIX + path
        for method in route.methods:
            responses = doc["paths"][path][method.lower()]["responses"]
            assert {"503", "504"} <= set(responses), (method, path)
