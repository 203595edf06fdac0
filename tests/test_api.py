"""Every endpoint of /api/v1 and every error it can answer, through httpx against the ASGI app."""

from __future__ import annotations

import copy
import io
import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cnn import build_network, estimate_activation_bytes, infer_shapes
from app.schemas import NetworkSpecModel
from app.settings import Settings
from app.storage.model_files import ModelFileError
from app.storage.models import ModelRegistry
from app.storage.runs.memory import MemoryRunStore
from app.web.imageio import decode_image
from app.web.render import grid_layout
from tests.conftest import WORKED_EXAMPLE, client_for, encode, huge_png_header, random_pixels

pytestmark = pytest.mark.anyio

API = "/api/v1"


def spec(**changes: object) -> dict:
    """The worked example (API.md), with top-level fields replaced."""
    s = copy.deepcopy(WORKED_EXAMPLE)
    s.update(changes)
    return s


def with_layers(*layers: dict, h: int = 32, w: int = 32, c: int = 3) -> dict:
    return {"input": {"height": h, "width": w, "channels": c}, "layers": list(layers)}


async def forward(client, image: bytes, network: dict | str | None = None, **data: str):
    form = dict(data)
    if network is not None:
        form["network"] = network if isinstance(network, str) else json.dumps(network)
    return await client.post(
        f"{API}/forward", files={"image": ("image.png", image, "image/png")}, data=form
    )


def detail(response) -> dict:
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"]["message"], str)
    return body["detail"]


def load(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


# -- health and docs ---------------------------------------------------------------------------
async def test_health_reports_ok_and_the_package_version(client):
    r = await client.get(f"{API}/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": version("cnn-explorer")}


async def test_openapi_describes_every_endpoint_and_the_network_schema(client):
    doc = (await client.get("/openapi.json")).json()
    paths = set(doc["paths"])
    assert {
        f"{API}/health",
        f"{API}/shapes",
        f"{API}/forward",
        f"{API}/models",
        f"{API}/runs/{{run_id}}/input.png",
        f"{API}/runs/{{run_id}}/layers/{{index}}.png",
        f"{API}/runs/{{run_id}}/layers/{{index}}/channels/{{channel}}.png",
        f"{API}/runs/{{run_id}}/layers/{{index}}.npy",
        f"{API}/runs/{{run_id}}/layers/{{index}}/explain",
    } <= paths
    schemas = doc["components"]["schemas"]
    for name in ("NetworkSpecModel", "ConvLayer", "DenseLayer", "ShapesResponse",
                 "ForwardResponse", "ConvExplain", "PresetModelInfo", "ErrorResponse"):  # fmt: skip
        assert name in schemas
    conv = schemas["ConvLayer"]["properties"]
    assert conv["stride"]["default"] == 1 and conv["activation"]["default"] == "relu"
    assert "(F-1)/2" in conv["padding"]["description"]
    assert schemas["DenseLayer"]["properties"]["activation"]["default"] == "none"
    layers = schemas["NetworkSpecModel"]["properties"]["layers"]["items"]
    assert layers["discriminator"]["propertyName"] == "type"
    assert len(layers["discriminator"]["mapping"]) == 8
    forward_body = doc["paths"][f"{API}/forward"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in forward_body
    assert (await client.get("/docs")).status_code == 200


# -- shapes ------------------------------------------------------------------------------------
async def test_shapes_of_the_worked_example(client):
    r = await client.post(f"{API}/shapes", json=WORKED_EXAMPLE)
    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is True and body["errors"] == []
    conv, pool, flat, dense = body["layers"]
    assert conv["input_shape"] == [32, 32, 3] and conv["output_shape"] == [32, 32, 10]
    assert conv["params"] == (5 * 5 * 3 + 1) * 10 == 760
    assert "(32 - 5 + 2*2)/1 + 1 = 32" in conv["formula"]
    assert pool["output_shape"] == [16, 16, 10] and pool["params"] == 0
    assert flat["output_shape"] == [16 * 16 * 10]
    assert dense["output_shape"] == [10] and dense["params"] == (2560 + 1) * 10
    assert body["total_params"] == 760 + 25610
    outputs = 4 * (32 * 32 * 3 + 32 * 32 * 10 + 2560 + 2560 + 10)
    report = infer_shapes(NetworkSpecModel.model_validate(WORKED_EXAMPLE).to_engine())
    assert body["activation_bytes"] == estimate_activation_bytes(report) >= outputs


async def test_shapes_defaults_follow_the_contract(client):
    body = with_layers(
        {"type": "conv", "filters": 4, "kernel_size": 3},  # stride 1, padding 0
        {"type": "avgpool", "size": 3},  # stride = size
        {"type": "globalmaxpool"},
        h=11,
        w=11,
    )
    layers = (await client.post(f"{API}/shapes", json=body)).json()["layers"]
    assert [lay["output_shape"] for lay in layers] == [[9, 9, 4], [3, 3, 4], [1, 1, 4]]


async def test_stride_5_on_7x7_is_invalid_with_the_arithmetic_and_a_fix(client):
    body = with_layers(
        {"type": "conv", "filters": 2, "kernel_size": 3, "padding": 1},
        {"type": "conv", "filters": 2, "kernel_size": 3, "stride": 5},
        {"type": "relu"},
        h=7,
        w=7,
    )
    r = await client.post(f"{API}/shapes", json=body)
    assert r.status_code == 200
    out = r.json()
    assert out["valid"] is False and out["activation_bytes"] is None
    assert [lay["index"] for lay in out["layers"]] == [0]  # up to the first error
    assert out["total_params"] == (3 * 3 * 3 + 1) * 2
    (err,) = out["errors"]
    assert err["layer"] == 1 and err["field"] == "stride"
    assert "(7 - 3 + 2*0)/5 + 1 = 1.8" in err["message"] and err["suggestion"]


async def test_dense_on_a_3d_input_suggests_a_flatten(client):
    r = await client.post(f"{API}/shapes", json=with_layers({"type": "dense", "units": 3}))
    (err,) = r.json()["errors"]
    assert err["layer"] == 0 and "flatten" in err["suggestion"]


@pytest.mark.parametrize(
    ("layer", "field", "text"),
    [
        ({"type": "convolution", "filters": 2}, "type", "Did you mean 'conv'?"),
        ({"filters": 2, "kernel_size": 3}, "type", 'Add "type"'),
        ({"type": "conv", "kernel_size": 3}, "filters", "filters is required"),
        ({"type": "conv", "filters": "many", "kernel_size": 3}, "filters", "valid integer"),
        ({"type": "conv", "filters": 0, "kernel_size": 3}, "filters", "greater than or equal"),
        # JSON true is not 1 (Pydantic's lax mode would take it), and the message says "true".
        ({"type": "conv", "filters": True, "kernel_size": 3}, "filters", "filters true must be"),
        ({"type": "maxpool", "size": 2, "stride": False}, "stride", "stride false must be"),
        ({"type": "conv", "filters": 2, "kernel_size": 3, "stide": 2}, "stide", "'stride'"),
        ({"type": "conv", "filters": 2, "kernel_size": 3, "padding": "full"}, "padding", "same"),
        ({"type": "dense", "units": 2, "activation": "tanh"}, "activation", "'softmax'"),
        ({"type": "conv", "filters": 1, "kernel_size": 2, "weights": [[[[1]], [[1], [2]]]]},
         "weights", "rectangular"),
    ],
)  # fmt: skip
async def test_a_malformed_layer_is_422_naming_its_index_and_field(client, layer, field, text):
    body = with_layers({"type": "relu"}, layer)
    r = await client.post(f"{API}/shapes", json=body)
    assert r.status_code == 422
    d = detail(r)
    assert d["message"].startswith("The network is not valid")
    err = d["errors"][0]
    assert err["layer"] == 1 and err["field"] == field
    assert text in err["message"] + " " + (err["suggestion"] or "")
    assert set(err) == {"layer", "field", "message", "suggestion", "fix"}
    # Ragged weights: the one change that removes the problem is to leave them out.
    dropped = ["weights", "bias"] if field == "weights" else None
    assert (err["fix"] or {}).get("drop") == dropped


async def test_booleans_are_not_counts_anywhere_in_a_request(client):
    for where, value in (("channels", True), ("height", False)):
        body = with_layers({"type": "relu"})
        body["input"][where] = value
        err = detail(await client.post(f"{API}/shapes", json=body))["errors"][0]
        assert err["field"] == f"input.{where}" and "must be a whole number" in err["message"]
    body = {**with_layers({"type": "relu"}), "seed": True}
    assert detail(await client.post(f"{API}/shapes", json=body))["errors"][0]["field"] == "seed"
    # Numbers written as strings are still read, as before (compatible).
    body = with_layers({"type": "conv", "filters": "3", "kernel_size": 3})
    r = await client.post(f"{API}/shapes", json=body)
    assert r.status_code == 200 and r.json()["layers"][0]["output_shape"][2] == 3


async def test_a_ragged_weights_array_is_one_problem_not_one_per_number(client):
    weights = [[[[1.0]] * 3] * 3, [[[1.0]] * 3] * 2]
    r = await client.post(
        f"{API}/shapes",
        json=with_layers({"type": "conv", "filters": 2, "kernel_size": 3, "weights": weights}),
    )
    assert r.status_code == 422 and len(detail(r)["errors"]) == 1


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"input": {"height": 8, "width": 8, "channels": 4}, "layers": [{"type": "relu"}]},
         "input.channels", "1 (grayscale) or 3 (RGB)"),
        ({"input": {"height": 8, "width": 8, "channels": 3}, "layers": []}, "layers", "no layers"),
        ({"layers": [{"type": "relu"}]}, "input", "input is required"),
        ({"input": {"height": 8, "width": 8, "channels": 3}, "layer": []}, "layer", "'layers'"),
        ([1, 2], None, "must be a JSON object"),
    ],
)  # fmt: skip
async def test_a_body_that_is_not_a_network_spec_is_422(client, body, field, text):
    r = await client.post(f"{API}/shapes", json=body)
    assert r.status_code == 422
    errors = detail(r)["errors"]
    assert any(e["field"] == field and text in e["message"] + (e["suggestion"] or "")
               for e in errors), errors  # fmt: skip


async def test_invalid_json_is_422_with_the_parser_message(client):
    r = await client.post(
        f"{API}/shapes", content=b'{"input": {', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "not valid JSON" in detail(r)["message"]


async def test_server_limits_make_a_network_invalid_where_they_bite(make_app):
    app = make_app(max_filters=8, max_input_side=64, max_layers=3)
    async with client_for(app) as client:
        body = with_layers({"type": "relu"}, {"type": "conv", "filters": 9, "kernel_size": 3})
        out = (await client.post(f"{API}/shapes", json=body)).json()
        assert out["valid"] is False and len(out["layers"]) == 1
        (err,) = out["errors"]
        assert (err["layer"], err["field"]) == (1, "filters") and "(8)" in err["message"]

        out = (await client.post(f"{API}/shapes", json=with_layers({"type": "relu"}, h=65))).json()
        assert out["valid"] is False and out["layers"] == []
        assert out["errors"][0]["field"] == "input.height"

        many = with_layers(*[{"type": "relu"}] * 4)
        out = (await client.post(f"{API}/shapes", json=many)).json()
        assert out["valid"] is False and "4 layers" in out["errors"][0]["message"]


async def test_activation_memory_over_the_limit_is_refused_before_allocation(make_app, png_bytes):
    app = make_app(max_activation_bytes=100_000)
    body = with_layers({"type": "conv", "filters": 64, "kernel_size": 3, "padding": 1})
    async with client_for(app) as client:
        out = (await client.post(f"{API}/shapes", json=body)).json()
        assert out["valid"] is False and len(out["layers"]) == 1
        assert "would need" in out["errors"][0]["message"]
        r = await forward(client, png_bytes, body)
        assert r.status_code == 422 and "0.1 MB" in detail(r)["errors"][0]["message"]
        assert len(app.state.run_store) == 0


# -- forward -----------------------------------------------------------------------------------
async def test_forward_of_the_worked_example_matches_the_engine(client, png_bytes, rgb_pixels):
    r = await forward(client, png_bytes, WORKED_EXAMPLE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["input_shape"] == [32, 32, 3]
    assert body["image"] == {"format": "PNG", "original_shape": [32, 32], "resized": False}
    layers = body["layers"]
    assert [lay["type"] for lay in layers] == ["conv", "maxpool", "flatten", "dense"]
    assert [lay["output_shape"] for lay in layers] == [[32, 32, 10], [16, 16, 10], [2560], [10]]
    assert [lay["params"] for lay in layers] == [760, 0, 0, 25610]

    # The engine on the same decoded image gives the very same arrays.
    network = build_network(NetworkSpecModel.model_validate(WORKED_EXAMPLE).to_engine())
    x = decode_image(png_bytes, height=32, width=32, channels=3, max_bytes=2**24, max_pixels=2**24)
    np.testing.assert_array_equal(x.pixels, rgb_pixels / np.float32(255))
    expected = network.forward(x.pixels)
    for lay, want in zip(layers, expected, strict=True):
        a = npy((await client.get(lay["array_url"])).content)
        assert a.dtype == np.float32 and list(a.shape) == lay["output_shape"]
        np.testing.assert_array_equal(a, want)
        assert lay["stats"]["min"] == pytest.approx(float(want.min()))
        assert lay["stats"]["max"] == pytest.approx(float(want.max()))
        assert lay["stats"]["mean"] == pytest.approx(float(want.mean()), rel=1e-5)

    out = body["output"]
    np.testing.assert_allclose(out["values"], expected[-1], rtol=1e-6)
    assert out["probabilities"] == out["values"] and out["size"] == 10 and not out["truncated"]
    assert sum(out["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    top = out["top"]
    assert len(top) == 5 and [t["index"] for t in top] == list(np.argsort(-expected[-1])[:5])
    assert all(t["label"] is None for t in top)


async def test_layer_pngs_decode_to_the_right_sizes(client, png_bytes):
    body = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()
    conv, pool, flat, dense = body["layers"]
    assert conv["channel_url"].endswith("/layers/0/channels/{c}.png")

    channel = load((await client.get(conv["channel_url"].replace("{c}", "9"))).content)
    assert channel.mode == "P" and channel.size == (32, 32)  # native resolution
    rows, cols = grid_layout(10, 32, 32)
    grid = await client.get(conv["grid_url"])
    assert grid.headers["content-type"] == "image/png"
    assert load(grid.content).size == (cols * 33 - 1, rows * 33 - 1)
    assert load((await client.get(pool["channel_url"].replace("{c}", "0"))).content).size == (
        16,
        16,
    )
    assert load((await client.get(flat["grid_url"])).content).size == (51, 51)  # 2560 values
    strip = await client.get(dense["channel_url"].replace("{c}", "0"))
    assert load(strip.content).size == (10, 1)
    image = load((await client.get(body["input_url"])).content)
    assert image.mode == "RGB" and image.size == (32, 32)


async def test_the_input_png_is_the_image_the_network_saw(client, rgb_pixels, png_bytes):
    body = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()
    same = np.asarray(load((await client.get(body["input_url"])).content))
    np.testing.assert_array_equal(same, rgb_pixels)  # no resampling at the input size

    big = encode(random_pixels(40, 50, 3), "JPEG")
    body = (await forward(client, big, WORKED_EXAMPLE)).json()
    assert body["image"] == {"format": "JPEG", "original_shape": [40, 50], "resized": True}
    assert load((await client.get(body["input_url"])).content).size == (32, 32)


async def test_explain_gives_the_value_in_the_array(client, png_bytes):
    body = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()
    conv, pool, flat, dense = body["layers"]
    a = npy((await client.get(conv["array_url"])).content)
    r = await client.get(conv["explain_url"], params={"y": 0, "x": 31, "c": 7})
    assert r.status_code == 200
    e = r.json()
    assert e["type"] == "conv" and e["layer"] == 0
    assert e["value"] == pytest.approx(float(a[0, 31, 7]), abs=1e-5)
    assert np.shape(e["patch"]) == (5, 5, 3) and np.shape(e["kernel"]) == (5, 5, 3)
    assert e["window"] == {**e["window"], "top": -2, "left": 29, "size": 5}
    assert e["pre_activation"] == pytest.approx(e["products_sum"] + e["bias"])

    p = npy((await client.get(pool["array_url"])).content)
    e = (await client.get(pool["explain_url"], params={"y": 3, "x": 4, "c": 2})).json()
    assert e["type"] == "maxpool" and np.shape(e["window_values"]) == (2, 2)
    assert e["value"] == pytest.approx(float(p[3, 4, 2]))

    f = npy((await client.get(flat["array_url"])).content)
    e = (await client.get(flat["explain_url"], params={"i": 1234})).json()
    assert e["type"] == "flatten" and e["value"] == pytest.approx(float(f[1234]))
    y, x, c = e["source"]
    assert (y * 16 + x) * 10 + c == 1234

    d = npy((await client.get(dense["array_url"])).content)
    e = (await client.get(dense["explain_url"], params={"i": 3})).json()
    assert e["type"] == "dense" and e["value"] == pytest.approx(float(d[3]), abs=1e-6)
    assert len(e["top_contributions"]) == 10
    assert set(e["top_contributions"][0]) >= {"input", "weight", "product"}


async def test_explain_on_relu_and_global_pool_layers(client, png_bytes):
    network = with_layers(
        {"type": "conv", "filters": 3, "kernel_size": 3, "activation": "none", "padding": "same"},
        {"type": "relu"},
        {"type": "globalavgpool"},
    )
    body = (await forward(client, png_bytes, network)).json()
    assert body["output"]["probabilities"] is None and body["output"]["top"] is None
    conv, relu, gap = body["layers"]
    z = npy((await client.get(conv["array_url"])).content)
    r = npy((await client.get(relu["array_url"])).content)
    assert z.min() < 0 and r.min() == 0  # each layer's output is kept as it was
    np.testing.assert_array_equal(r, np.maximum(z, 0))
    e = (await client.get(relu["explain_url"], params={"y": 5, "x": 6, "c": 1})).json()
    assert e["type"] == "relu" and e["value"] == pytest.approx(float(r[5, 6, 1]))
    assert e["input"] == pytest.approx(float(z[5, 6, 1])) and e["value"] == max(e["input"], 0)
    g = npy((await client.get(gap["array_url"])).content)
    e = (await client.get(gap["explain_url"], params={"y": 0, "x": 0, "c": 2})).json()
    assert e["type"] == "globalavgpool" and e["value"] == pytest.approx(float(g[0, 0, 2]))
    assert e["value"] == pytest.approx(float(r[:, :, 2].mean()), rel=1e-5)


async def test_a_large_last_layer_returns_the_first_values_and_says_so(make_app, png_bytes):
    app = make_app(max_output_values=100)
    async with client_for(app) as client:
        body = (await forward(client, png_bytes, with_layers({"type": "relu"}))).json()
    out = body["output"]
    assert out["size"] == 32 * 32 * 3 and out["truncated"] is True and len(out["values"]) == 100


async def test_a_grayscale_network_gets_one_channel(client, png_bytes):
    body = (await forward(client, png_bytes, with_layers({"type": "relu"}, c=1))).json()
    a = npy((await client.get(body["layers"][0]["array_url"])).content)
    assert a.shape == (32, 32, 1) and body["input_shape"] == [32, 32, 1]
    assert load((await client.get(body["input_url"])).content).mode == "L"


# -- forward refusals --------------------------------------------------------------------------
async def test_forward_with_an_impossible_network_is_422_with_the_arithmetic(client, png_bytes):
    network = with_layers({"type": "conv", "filters": 2, "kernel_size": 3, "stride": 2}, h=8, w=8)
    r = await forward(client, png_bytes, network)
    assert r.status_code == 422
    (err,) = detail(r)["errors"]
    assert err["layer"] == 0 and "(8 - 3 + 2*0)/2 + 1 = 3.5" in err["message"]


async def test_forward_with_a_malformed_network_is_422(client, png_bytes):
    r = await forward(client, png_bytes, with_layers({"type": "pool", "size": 2}))
    assert r.status_code == 422
    err = detail(r)["errors"][0]
    assert err["layer"] == 0 and err["field"] == "type"
    r = await forward(client, png_bytes, '{"input": ')
    assert r.status_code == 422 and "not valid JSON" in detail(r)["message"]


@pytest.mark.parametrize("given", ["both", "neither"])
async def test_network_and_model_are_one_or_the_other(client, png_bytes, given):
    extra = {"model": "digits"} if given == "both" else {}
    network = WORKED_EXAMPLE if given == "both" else None
    r = await forward(client, png_bytes, network, **extra)
    assert r.status_code == 422
    message = detail(r)["message"]
    assert ("not both" in message) if given == "both" else ("Give a network" in message)


async def test_forward_without_an_image_is_422(client):
    r = await client.post(f"{API}/forward", data={"network": json.dumps(WORKED_EXAMPLE)})
    assert r.status_code == 422
    assert detail(r)["errors"][0]["field"] == "image"


async def test_an_image_over_the_byte_limit_is_413(make_app):
    app = make_app(max_upload_bytes=5000, max_network_bytes=2048)
    image = encode(random_pixels(64, 64, 3))  # about 12 KB of noise
    async with client_for(app) as client:
        r = await forward(client, image, WORKED_EXAMPLE)
        assert r.status_code == 413 and "the limit is 4.9 KB" in detail(r)["message"]
        # A body far over every limit is cut off while it is read.
        r = await forward(client, b"\0" * (200 * 1024), WORKED_EXAMPLE)
        assert r.status_code == 413 and "larger than this server accepts" in detail(r)["message"]


async def test_a_40000x40000_png_is_413_before_decoding(client):
    r = await forward(client, huge_png_header(), WORKED_EXAMPLE)
    assert r.status_code == 413
    assert "40000x40000" in detail(r)["message"]


async def test_non_images_and_unsupported_formats_are_415(client):
    r = await forward(client, b"just some text", WORKED_EXAMPLE)
    assert r.status_code == 415 and "PNG, JPEG" in detail(r)["message"]
    r = await forward(client, encode(random_pixels(8, 8, 3), "PPM"), WORKED_EXAMPLE)
    assert r.status_code == 415 and "PPM" in detail(r)["message"]


async def test_a_truncated_image_is_422(client):
    data = encode(random_pixels(32, 32, 3))
    r = await forward(client, data[: len(data) // 2], WORKED_EXAMPLE)
    assert r.status_code == 422 and "truncated" in detail(r)["message"]


# -- runs: not found, bad parameters -----------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["input.png", "layers/0.png", "layers/0/channels/0.png", "layers/0.npy",
     "layers/0/explain?y=0&x=0&c=0"],
)  # fmt: skip
async def test_an_unknown_run_is_404_with_what_to_do(client, path):
    r = await client.get(f"{API}/runs/abc/{path}")
    assert r.status_code == 404
    assert "Run abc is unknown or expired" in detail(r)["message"]
    assert "POST /api/v1/forward again" in detail(r)["message"]


@pytest.mark.parametrize("path", ["4.png", "4/channels/0.png", "4.npy", "4/explain?i=0",
                                  "-1.png"])  # fmt: skip
async def test_a_layer_out_of_range_is_404_with_the_valid_range(client, png_bytes, path):
    run_id = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()["run_id"]
    r = await client.get(f"{API}/runs/{run_id}/layers/{path}")
    assert r.status_code == 404
    d = detail(r)
    assert "layers 0..3" in d["message"] and d["valid_range"] == [0, 3]


async def test_a_channel_out_of_range_is_404_with_the_valid_range(client, png_bytes):
    run_id = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()["run_id"]
    r = await client.get(f"{API}/runs/{run_id}/layers/0/channels/10.png")
    assert r.status_code == 404 and "channels 0..9" in detail(r)["message"]
    r = await client.get(f"{API}/runs/{run_id}/layers/3/channels/1.png")  # flat: channel 0 only
    assert r.status_code == 404 and "channels 0..0" in detail(r)["message"]


@pytest.mark.parametrize(
    ("layer", "params", "text"),
    [
        (0, {"y": 0, "x": 0}, "c is required"),
        (0, {"y": 32, "x": 0, "c": 0}, "0..31"),
        (0, {"y": -1, "x": 0, "c": 0}, "0..31"),
        (0, {"y": "top", "x": 0, "c": 0}, "valid integer"),
        (3, {}, "i is required"),
        (3, {"i": 10}, "0..9"),
    ],
)
async def test_bad_explain_parameters_are_422(client, png_bytes, layer, params, text):
    run_id = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()["run_id"]
    r = await client.get(f"{API}/runs/{run_id}/layers/{layer}/explain", params=params)
    assert r.status_code == 422
    d = detail(r)
    assert text in d["message"] and d["errors"]


async def test_non_numeric_path_indices_are_422(client, png_bytes):
    run_id = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()["run_id"]
    r = await client.get(f"{API}/runs/{run_id}/layers/first.png")
    assert r.status_code == 422 and detail(r)["errors"][0]["field"] == "index"


async def test_a_run_evicted_by_the_byte_bound_is_404(make_app, png_bytes):
    arrays = 4 * (32 * 32 * 3 + 32 * 32 * 10 + 2560 + 2560 + 10)
    measuring = make_app()
    async with client_for(measuring) as client:
        params = (await client.post("/api/v1/shapes", json=WORKED_EXAMPLE)).json()["total_params"]
        await forward(client, png_bytes, WORKED_EXAMPLE)
    # A run's bytes: its arrays (the conv output is held in its padded-width array, a little
    # more than 32x32x10), its network's weights and biases.
    one_run = measuring.state.run_store.nbytes
    assert arrays + 4 * params <= one_run <= arrays + 4 * params + 4 * 32 * 4 * 10
    app = make_app(run_store_max_bytes=one_run + 1000)
    async with client_for(app) as client:
        first = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()
        second = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()
        r = await client.get(first["layers"][0]["grid_url"])
        assert r.status_code == 404
        assert f"Run {first['run_id']} is unknown or expired" in detail(r)["message"]
        assert (await client.get(second["layers"][0]["grid_url"])).status_code == 200


async def test_a_run_expires_after_the_ttl(app, png_bytes):
    now = [0.0]
    app.state.run_store = MemoryRunStore(2**26, ttl_seconds=3600, clock=lambda: now[0])
    async with client_for(app) as client:
        body = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()
        now[0] = 3599.0
        assert (await client.get(body["layers"][0]["array_url"])).status_code == 200
        now[0] += 3601.0
        r = await client.get(body["layers"][0]["array_url"])
        assert r.status_code == 404 and "kept 60 minutes" in detail(r)["message"]


async def test_pngs_are_rendered_once_then_cached(app, client, png_bytes):
    body = (await forward(client, png_bytes, WORKED_EXAMPLE)).json()
    url = body["layers"][0]["grid_url"]
    cache = app.state.render_cache
    first, second = await client.get(url), await client.get(url)
    assert first.content == second.content
    # The first asks for the PNG and the layer's colour indices (both missing), the second hits.
    assert (cache.hits, cache.misses) == (1, 2)
    assert "max-age=3600" in first.headers["cache-control"]
    # A channel of the same layer is drawn from the colours the grid already worked out.
    channel = await client.get(body["layers"][0]["channel_url"].replace("{c}", "1"))
    assert channel.status_code == 200
    assert (cache.hits, cache.misses) == (2, 3)


# -- models ------------------------------------------------------------------------------------
def write_tiny_model(models_dir: Path, name: str = "tiny") -> np.ndarray:
    """A 4x4 grey input, conv 2 3x3 (weights in the .npz), flatten, dense 3 softmax (inline)."""
    models_dir.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    conv_w = rng.standard_normal((2, 3, 3, 1)).astype(np.float32)
    dense_w = rng.standard_normal((3, 8)).round(3).tolist()
    network = with_layers(
        {"type": "conv", "filters": 2, "kernel_size": 3},
        {"type": "flatten"},
        {"type": "dense", "units": 3, "activation": "softmax", "weights": dense_w,
         "bias": [0.1, 0.0, -0.1]},
        h=4, w=4, c=1,
    )  # fmt: skip
    model = {
        "name": name,
        "description": "A tiny test model.",
        "network": network,
        "labels": ["cat", "dog", "fish"],
        "accuracy": 0.5,
        "dataset": "none",
        "command": "written by a test",
    }
    (models_dir / f"{name}.json").write_text(json.dumps(model), encoding="utf-8")
    np.savez(models_dir / f"{name}.npz", **{"layers.0.weights": conv_w, "layers.0.bias": [1, 2]})
    return conv_w


async def test_no_models_are_listed_when_none_are_installed(client):
    r = await client.get(f"{API}/models")
    assert r.status_code == 200 and r.json() == []


async def test_a_model_file_is_listed_without_weights_and_runs_with_them(make_app, settings):
    conv_w = write_tiny_model(settings.models_dir)
    app = make_app()
    async with client_for(app) as client:
        (info,) = (await client.get(f"{API}/models")).json()
        assert info["name"] == "tiny" and info["labels"] == ["cat", "dog", "fish"]
        assert info["accuracy"] == 0.5 and info["command"] == "written by a test"
        assert all(lay.get("weights") is None for lay in info["network"]["layers"])

        image = encode(random_pixels(8, 8, 1, seed=3)[:, :, 0])
        r = await forward(client, image, model="tiny")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "tiny" and body["input_shape"] == [4, 4, 1]
        labels = {t["index"]: t["label"] for t in body["output"]["top"]}
        assert labels == {0: "cat", 1: "dog", 2: "fish"}

        conv = npy((await client.get(body["layers"][0]["array_url"])).content)
        x = decode_image(image, height=4, width=4, channels=1, max_bytes=2**20, max_pixels=2**20)
        patch = x.pixels[1:4, 0:3, 0]
        expected = max(float((patch * conv_w[1, :, :, 0]).sum()) + 2.0, 0.0)
        assert conv[1, 0, 1] == pytest.approx(expected, abs=1e-5)


async def test_an_unknown_model_is_404_listing_the_available_ones(make_app, settings, png_bytes):
    write_tiny_model(settings.models_dir)
    async with client_for(make_app()) as client:
        r = await forward(client, png_bytes, model="resnet")
    assert r.status_code == 404
    d = detail(r)
    assert "'resnet'" in d["message"] and "tiny" in d["message"] and d["available"] == ["tiny"]


def test_a_broken_model_file_stops_the_registry_naming_the_file(tmp_path):
    write_tiny_model(tmp_path)
    data = json.loads((tmp_path / "tiny.json").read_text())
    data["labels"] = ["only one"]
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match=r"tiny\.json: 1 labels for an output of shape \[3\]"):
        ModelRegistry(tmp_path)
    (tmp_path / "tiny.json").write_text('{"name": "tiny"')
    with pytest.raises(ModelFileError, match="cannot be read as JSON"):
        ModelRegistry(tmp_path)
    assert ModelRegistry(tmp_path / "missing").names() == []


# -- the page, static files, unknown routes ----------------------------------------------------
async def test_the_page_renders_with_the_version_and_limits(client, settings):
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f"CNN Explorer {version('cnn-explorer')}" in r.text
    assert f"data-max-upload='{settings.max_upload_bytes}'" in r.text
    assert "data-max-layers='32'" in r.text


async def test_the_shipped_page_renders(make_app, settings):
    shipped = Path(__file__).resolve().parent.parent / "templates"
    assert (shipped / "index.html").exists(), "templates/index.html ships with the app"
    async with client_for(make_app(templates_dir=shipped)) as client:
        assert (await client.get("/")).status_code == 200


async def test_static_files_are_served(client):
    r = await client.get("/static/hello.css")
    assert r.status_code == 200 and "margin" in r.text


async def test_an_unknown_route_is_a_json_404(client):
    r = await client.get(f"{API}/nothing")
    assert r.status_code == 404 and "/api/v1" in detail(r)["message"]


async def test_a_streamed_body_over_the_limit_is_cut_off_with_a_json_413(make_app):
    app = make_app(max_upload_bytes=1000, max_network_bytes=1024)

    async def chunks():
        for _ in range(100):
            yield b" " * 1024  # 100 KB of JSON whitespace, no Content-Length

    async with client_for(app) as client:
        r = await client.post(
            f"{API}/shapes", content=chunks(), headers={"content-type": "application/json"}
        )
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "larger than this server accepts" in detail(r)["message"]


async def test_numbers_over_the_limits_never_reach_the_arithmetic(client):
    # Padding 10**9 with stride 7 would send the engine looking for fitting strides up to 2e9.
    layers = [{"type": "conv", "filters": 2, "kernel_size": 3, "padding": 10**9, "stride": 7},
              {"type": "maxpool", "size": 2, "stride": 10**9}]  # fmt: skip
    out = (await client.post(f"{API}/shapes", json=with_layers(*layers))).json()
    assert out["valid"] is False and out["layers"] == []
    assert [(e["layer"], e["field"]) for e in out["errors"]] == [(0, "padding"), (1, "stride")]
    assert "(15)" in out["errors"][0]["message"] and "(512)" in out["errors"][1]["message"]


async def test_too_many_parameters_or_multiply_adds_are_refused(make_app):
    body = with_layers(
        {"type": "conv", "filters": 8, "kernel_size": 3, "padding": 1},
        {"type": "flatten"},
        {"type": "dense", "units": 100},
    )
    params = (3 * 3 * 3 + 1) * 8 + (32 * 32 * 8 + 1) * 100
    work = 32 * 32 * 8 * 3 * 3 * 3 + 100 * 32 * 32 * 8
    async with client_for(make_app(max_params=params - 1)) as client:
        out = (await client.post(f"{API}/shapes", json=body)).json()
        assert out["valid"] is False and len(out["layers"]) == 3
        assert f"{params:,} parameters" in out["errors"][0]["message"]
    async with client_for(make_app(max_params=params, max_multiply_adds=work - 1)) as client:
        out = (await client.post(f"{API}/shapes", json=body)).json()
        assert out["valid"] is False and "multiply-adds" in out["errors"][0]["message"]
    async with client_for(make_app(max_params=params, max_multiply_adds=work)) as client:
        assert (await client.post(f"{API}/shapes", json=body)).json()["valid"] is True


async def test_a_network_field_over_its_limit_is_413(make_app, png_bytes):
    async with client_for(make_app(max_network_bytes=2048)) as client:
        padded = json.dumps(WORKED_EXAMPLE) + " " * 3000
        r = await forward(client, png_bytes, padded)
    assert r.status_code == 413 and "network field is larger" in detail(r)["message"]


async def test_an_image_sent_as_text_is_422_saying_to_attach_a_file(client):
    r = await client.post(f"{API}/forward", data={"image": "x", "network": "{}"})
    assert r.status_code == 422
    (err,) = detail(r)["errors"]
    assert err["field"] == "image" and "multipart/form-data" in err["suggestion"]


def test_the_shipped_model_files_load():
    shipped = Settings().models_dir
    assert list(shipped.glob("*.json")), f"the shipped models are missing from {shipped}"
    registry = ModelRegistry(shipped)
    for model in registry.list():
        info = model.info()
        assert all(lay.weights is None for lay in info.network.layers if hasattr(lay, "weights"))
        out = model.network.report.layers[-1].output_shape
        assert model.labels is None or len(model.labels) == out[0]
