"""Hypothesis against the network checks: random JSON-ish specs and layer dicts never get a 500,
only 200 or 422 in the documented shapes; runnable networks with extreme weights run, and every
layer's explanation and maps come back as the schema says.

Fixed seed (derandomized) and bounded examples; the app has small limits so any network that
passes them is cheap to run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from starlette.testclient import TestClient

from app.schemas import ErrorResponse, ExplainResponse, ForwardResponse, ShapesResponse
from app.settings import Settings
from app.web.main import create_app
from tests.conftest import encode, random_pixels

pytestmark = pytest.mark.slow  # fuzzing: make test-quick leaves it out

APP = create_app(
    Settings(
        models_dir=Path(__file__).parent / "no-models",
        data_dir=Path(tempfile.mkdtemp(prefix="cnn-spec-fuzz-")),
        max_input_side=16,
        max_layers=8,
        max_filters=8,
        max_kernel_size=7,
        max_units=32,
        max_params=50_000,
        max_multiply_adds=500_000,
        max_activation_bytes=2 * 2**20,
    )
)
PNG = encode(random_pixels(12, 10, 3))
EXPLAIN = TypeAdapter(ExplainResponse)
FUZZ = settings(
    max_examples=500,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies --------------------------------------------------------------------------------
LAYER_TYPES = ["conv", "relu", "maxpool", "avgpool", "globalmaxpool", "globalavgpool", "flatten",
               "dense", "pool", "Conv", "linear", ""]  # fmt: skip
leaf = (
    st.none()
    | st.booleans()
    | st.integers(-3, 40)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
)
json_ish = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
REAL_TYPES = LAYER_TYPES[:8]
numbers = st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(), max_size=4)


def fields(whole: st.SearchStrategy[int]) -> dict[str, st.SearchStrategy]:
    return {
        "filters": whole,
        "kernel_size": whole,
        "stride": whole,
        "padding": whole | st.sampled_from(["same", "valid", "full"]),
        "size": whole,
        "units": whole,
        "activation": st.sampled_from(["relu", "none", "softmax", "tanh"]),
        "init": st.sampled_from(["he", "sobel_x", "blur", "nope"]),
        "weights": st.recursive(numbers, lambda inner: st.lists(inner, max_size=3), max_leaves=20),
        "bias": numbers,
    }


# Well-typed layers reach the arithmetic and the limits; junk ones the validation messages.
whole = st.integers(1, 8)
typed_layer = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("conv"), "filters": whole, "kernel_size": whole},
        optional={"stride": whole, "padding": whole | st.sampled_from(["same", "valid"]),
                  "activation": st.sampled_from(["relu", "none"]),
                  "init": st.sampled_from(["he", "sobel_x", "blur"])},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["maxpool", "avgpool"]), "size": whole},
        optional={"stride": whole, "padding": st.integers(0, 2)},
    ),
    st.fixed_dictionaries(
        {"type": st.just("dense"), "units": whole},
        optional={"activation": st.sampled_from(["none", "relu", "softmax"])},
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["relu", "flatten", "globalmaxpool",
                                                    "globalavgpool"])}),
)  # fmt: skip
junk_layer = st.fixed_dictionaries(
    {"type": st.sampled_from(LAYER_TYPES)},
    optional={name: values | json_ish for name, values in fields(st.integers(-2, 40)).items()},
)
network = st.fixed_dictionaries(
    {
        "input": st.fixed_dictionaries(
            {"height": st.integers(-1, 20), "width": st.integers(-1, 20)},
            optional={"channels": st.sampled_from([1, 3, 4, "3"])},
        )
        | json_ish,
        "layers": st.lists(typed_layer | junk_layer | json_ish, max_size=6) | json_ish,
    },
    optional={"seed": st.integers(-1, 2**70) | json_ish, "extra": json_ish},
)
typed_network = st.fixed_dictionaries(
    {
        "input": st.fixed_dictionaries(
            {
                "height": st.integers(1, 20),
                "width": st.integers(1, 20),
                "channels": st.sampled_from([1, 3]),
            }  # fmt: skip
        ),
        "layers": st.lists(typed_layer, min_size=1, max_size=6),
    },
    optional={"seed": st.integers(0, 2**70)},
)
body = typed_network | network | json_ish

# Regressions: JSON the parser gives up on, which once escaped as 500 (network field) or 400.
BIG_NUMBER = '{"seed": 1' + "0" * 5000 + "}"
DEEP = "[" * 100_000 + "]" * 100_000


# -- helpers -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    with TestClient(APP) as c:
        yield c


def assert_documented_error(response) -> None:
    assert response.status_code == 422, (response.status_code, response.text)
    detail = ErrorResponse.model_validate(response.json()).detail
    assert detail.message and detail.errors
    for found in response.json()["detail"]["errors"]:
        assert set(found) == {"layer", "field", "message", "suggestion", "fix"}
        assert found["message"]


def post_json(client, text: str):
    return client.post("/api/v1/shapes", content=text, headers={"content-type": "application/json"})


def post_forward(client, text: str):
    return client.post(
        "/api/v1/forward",
        files={"image": ("i.png", PNG, "image/png")},
        data={"network": text},
    )


# -- /shapes and /forward on random specs ------------------------------------------------------
@FUZZ
@given(spec=body)
@example(spec=BIG_NUMBER).via("regression: a number of 5001 digits")
@example(spec=DEEP).via("regression: JSON nested 100000 deep")
def test_shapes_answers_200_or_a_documented_422_never_500(client, spec):
    text = spec if isinstance(spec, str) else json.dumps(spec)
    r = post_json(client, text)
    event(f"status {r.status_code}, valid {r.json().get('valid')}")
    if r.status_code == 200:
        shapes = ShapesResponse.model_validate(r.json())
        assert shapes.valid == (not shapes.errors)
    else:
        assert_documented_error(r)


def test_a_body_that_is_not_utf8_is_a_documented_422(client):
    r = client.post(
        "/api/v1/shapes",
        content=b'{"input": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert_documented_error(r)
    assert "not UTF-8" in r.json()["detail"]["message"]


@FUZZ
@given(spec=body)
@example(spec=BIG_NUMBER).via("regression: a number of 5001 digits")
@example(spec=DEEP).via("regression: JSON nested 100000 deep")
def test_the_network_field_of_forward_is_200_or_a_documented_422_never_500(client, spec):
    text = spec if isinstance(spec, str) else json.dumps(spec)
    r = post_forward(client, text)
    event(f"status {r.status_code}")
    if r.status_code == 200:
        ForwardResponse.model_validate(r.json())
    else:
        assert_documented_error(r)


# -- runnable networks with extreme weights ----------------------------------------------------
finite = st.floats(min_value=-3e38, max_value=3e38, allow_nan=False, allow_infinity=False)


@st.composite
def runnable(draw) -> dict[str, Any]:
    """A valid network (conv, pooling, relu, flatten, dense) with given weights of any finite
    float32 size, so values overflow to infinity and NaN inside the forward pass."""
    h, w = draw(st.integers(3, 8)), draw(st.integers(3, 8))
    c = draw(st.sampled_from([1, 3]))
    k, f = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    conv = {"type": "conv", "filters": k, "kernel_size": f, "padding": "valid",
            "activation": draw(st.sampled_from(["relu", "none"])),
            "weights": draw(st.lists(st.lists(st.lists(st.lists(finite, min_size=c, max_size=c),
                            min_size=f, max_size=f), min_size=f, max_size=f), min_size=k,
                            max_size=k)),
            "bias": draw(st.lists(finite, min_size=k, max_size=k))}  # fmt: skip
    ho, wo = h - f + 1, w - f + 1
    pool = draw(st.sampled_from(["maxpool", "avgpool", "globalmaxpool", "globalavgpool", "relu"]))
    layers = [conv]
    if pool in ("maxpool", "avgpool"):
        layers.append({"type": pool, "size": 1, "stride": 1})
    else:
        layers.append({"type": pool})
        if pool != "relu":
            ho = wo = 1
    n, units = ho * wo * k, draw(st.integers(1, 4))
    dense = {"type": "dense", "units": units,
             "activation": draw(st.sampled_from(["none", "relu", "softmax"])),
             "weights": draw(st.lists(st.lists(finite, min_size=n, max_size=n), min_size=units,
                                      max_size=units)),
             "bias": draw(st.lists(finite, min_size=units, max_size=units))}  # fmt: skip
    layers += [{"type": "flatten"}, dense]
    return {"input": {"height": h, "width": w, "channels": c}, "layers": layers}


def non_null(value: Any, where: str) -> None:
    """No null anywhere in a JSON value (a number that overflowed must still be a number)."""
    assert value is not None, where
    if isinstance(value, dict):
        for key, inner in value.items():
            non_null(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            non_null(inner, f"{where}[{i}]")


@settings(FUZZ, max_examples=60)
@given(spec=runnable())
def test_extreme_weights_run_and_every_layer_explains_itself_in_numbers(client, spec):
    r = post_forward(client, json.dumps(spec))
    assert r.status_code == 200, r.text
    body = r.json()
    ForwardResponse.model_validate(body)
    out = body["output"]
    non_null([out["values"], out["probabilities"] or [], [t["p"] for t in out["top"] or []]], "out")
    for lay in body["layers"]:
        non_null(lay["stats"], f"layers[{lay['index']}].stats")
        flat = len(lay["output_shape"]) == 1
        e = client.get(lay["explain_url"], params={"i": 0} if flat else {"y": 0, "x": 0, "c": 0})
        assert e.status_code == 200, e.text
        explained = e.json()
        EXPLAIN.validate_python(explained)
        if explained["type"] != "maxpool":  # max pooling's padded cells are null by contract
            non_null(explained, f"explain of layer {lay['index']}")
        for url in (lay["grid_url"], lay["channel_url"].replace("{c}", "0"), lay["array_url"]):
            assert client.get(url).status_code == 200, url
