"""Saliency and Grad-CAM of a kept run: held against finite differences of the class logit and
against Grad-CAM worked out by hand, through the API and through app.web.saliency directly."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from app.cnn import attribution, build_network
from app.cnn.spec import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    InputSpec,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
)
from app.web import saliency
from app.web.render import VIRIDIS_PALETTE, render_image
from tests.conftest import WORKED_EXAMPLE, client_for, encode, random_pixels

pytestmark = pytest.mark.anyio
API = "/api/v1"
RNG = np.random.default_rng(7)


def conv_relu_net(h: int, w: int, c: int, k: int, classes: int, pool: bool) -> dict:
    """conv 3x3 pad 1 relu (k filters) [-> maxpool 2 stride 1] -> flatten -> dense softmax,
    every weight given (a network spec for the API)."""
    conv_w = RNG.normal(size=(k, 3, 3, c))
    conv_b = RNG.normal(size=k) * 0.1
    side_h, side_w = (h - 1, w - 1) if pool else (h, w)
    dense_w = RNG.normal(size=(classes, side_h * side_w * k))
    dense_b = RNG.normal(size=classes)
    layers = [
        {
            "type": "conv",
            "filters": k,
            "kernel_size": 3,
            "padding": 1,
            "weights": conv_w.tolist(),
            "bias": conv_b.tolist(),
        }
    ]
    if pool:
        layers.append({"type": "maxpool", "size": 2, "stride": 1})
    layers += [
        {"type": "flatten"},
        {
            "type": "dense",
            "units": classes,
            "activation": "softmax",
            "weights": dense_w.tolist(),
            "bias": dense_b.tolist(),
        },
    ]
    return {"input": {"height": h, "width": w, "channels": c}, "layers": layers}


def reference_maps(spec: dict, x: np.ndarray) -> np.ndarray:
    """The conv layer's output, relu applied, by explicit loops in float64: (H, W, K)."""
    conv = spec["layers"][0]
    w, b = np.array(conv["weights"], dtype=np.float32), np.array(conv["bias"], dtype=np.float32)
    w, b = w.astype(np.float64), b.astype(np.float64)  # the float32 values the server holds
    h, width, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, width, len(b)))
    for y in range(h):
        for i in range(width):
            for k in range(len(b)):
                out[y, i, k] = np.sum(padded[y : y + 3, i : i + 3] * w[k]) + b[k]
    return np.maximum(out, 0.0)


def reference_logits(spec: dict, x: np.ndarray) -> np.ndarray:
    """The logits (before softmax) of a conv_relu_net spec for x (H, W, C), float64."""
    a = reference_maps(spec, x)
    if spec["layers"][1]["type"] == "maxpool":
        a = np.maximum.reduce([a[:-1, :-1], a[1:, :-1], a[:-1, 1:], a[1:, 1:]])
    dense = spec["layers"][-1]
    w = np.array(dense["weights"], dtype=np.float32).astype(np.float64)
    b = np.array(dense["bias"], dtype=np.float32).astype(np.float64)
    return w @ a.reshape(-1) + b


def finite_difference_saliency(spec: dict, x: np.ndarray, target: int) -> np.ndarray:
    """max over channels of |d logit[target] / d x| by central differences: (H, W)."""
    eps = 1e-5
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        diff = reference_logits(spec, up)[target] - reference_logits(spec, down)[target]
        grad[index] = diff / (2 * eps)
    return np.abs(grad).max(axis=-1)


async def run_of(client, spec: dict, pixels: np.ndarray) -> dict:
    r = await client.post(
        f"{API}/forward",
        files={"image": ("x.png", encode(pixels), "image/png")},
        data={"network": json.dumps(spec)},
    )
    assert r.status_code == 200, r.text
    return r.json()


def npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


@pytest.mark.parametrize("run_store", ["memory", "disk"])
async def test_saliency_equals_finite_differences_of_the_logit(make_app, run_store: str) -> None:
    spec = conv_relu_net(6, 5, 3, k=3, classes=4, pool=True)
    pixels = random_pixels(6, 5, 3, seed=3)
    x = pixels.astype(np.float64) / 255
    async with client_for(make_app(run_store=run_store)) as client:
        run = await run_of(client, spec, pixels)
        for target in (None, 2):
            query = "" if target is None else f"?target={target}"
            r = await client.get(f"{API}/runs/{run['run_id']}/saliency.npy{query}")
            assert r.status_code == 200
            want_target = run["output"]["top"][0]["index"] if target is None else target
            assert r.headers["x-target"] == str(want_target)
            got = npy(r.content)
            assert got.shape == (6, 5) and got.dtype == np.float32
            want = finite_difference_saliency(spec, x, want_target)
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-4)


def test_saliency_of_a_deeper_network_matches_finite_differences_in_float64() -> None:
    spec = NetworkSpec(
        InputSpec(8, 8, 2),
        (
            ConvSpec(3, 3, padding=1, activation="none"),
            ReluSpec(),
            PoolSpec("avg", 2, stride=1),
            ConvSpec(4, 3, stride=2),
            GlobalPoolSpec("avg"),
            FlattenSpec(),
            DenseSpec(5, "relu"),
            DenseSpec(3, "softmax"),
        ),
        seed=11,
    )
    net = build_network(spec, np.float64)
    x = np.random.default_rng(2).random((8, 8, 2))
    target = 1
    got = attribution.saliency_map(net, x, target)
    eps = 1e-6
    fd = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        fd[index] = (net.logits(up[None])[0, target] - net.logits(down[None])[0, target]) / (
            2 * eps
        )
    assert np.abs(fd).max() > 0
    np.testing.assert_allclose(got, np.abs(fd).max(axis=-1), rtol=1e-4, atol=1e-7)
    # The logits are the engine's last layer before its softmax: same weights as the run.
    z = net.logits(x[None])[0]
    probs = build_network(spec).forward(x.astype(np.float32))[-1]
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(), probs, rtol=1e-4)


async def test_grad_cam_equals_the_hand_computation(client) -> None:
    spec = conv_relu_net(4, 4, 1, k=2, classes=3, pool=False)
    pixels = random_pixels(4, 4, 1, seed=5)
    x = pixels.astype(np.float64) / 255
    run = await run_of(client, spec, pixels)
    maps = reference_maps(spec, x)  # (4, 4, 2)
    dense_w = np.array(spec["layers"][-1]["weights"], dtype=np.float32).astype(np.float64)
    cams = []
    for target in range(3):
        # logit_t = sum over (y, x, k) of W[t, (y*4 + x)*2 + k] * A[y, x, k] + b[t]: the
        # gradient at A[y, x, k] is that weight; alpha_k is its mean over the 4x4 positions.
        alpha = dense_w[target].reshape(4, 4, 2).mean(axis=(0, 1))
        want = np.maximum(maps[:, :, 0] * alpha[0] + maps[:, :, 1] * alpha[1], 0.0)
        r = await client.get(f"{API}/runs/{run['run_id']}/gradcam.npy?target={target}")
        assert r.status_code == 200
        assert r.headers["x-layer"] == "0" and r.headers["x-target"] == str(target)
        got = npy(r.content)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert float(r.headers["x-map-max"]) == pytest.approx(want.max(), rel=1e-4, abs=1e-6)
        png = await client.get(f"{API}/runs/{run['run_id']}/gradcam.png?target={target}")
        assert png.headers["x-map-max"] == r.headers["x-map-max"]
        cams.append(got)
        # HiResCAM: each position's maps times their own gradient, no averaging.
        hires = np.maximum((maps * dense_w[target].reshape(4, 4, 2)).sum(axis=-1), 0.0)
        r = await client.get(
            f"{API}/runs/{run['run_id']}/gradcam.npy?target={target}&method=hirescam"
        )
        np.testing.assert_allclose(npy(r.content), hires, rtol=1e-4, atol=1e-5)
    assert not np.allclose(cams[0], cams[1])
    r = await client.get(f"{API}/runs/{run['run_id']}/gradcam.png?method=cam")
    assert r.status_code == 422 and r.json()["detail"]["errors"][0]["field"] == "method"


def test_upsampling_aligns_pixel_centres_and_keeps_constants() -> None:
    a = np.array([[0.0, 4.0], [8.0, 12.0]])
    up = attribution.upsample(a, 4, 4)
    # Output centres 0.5, 1.5, 2.5, 3.5 fall at source 0 (clamped), 0.25, 0.75, 1 (clamped).
    row = np.array([0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(up[0], row)
    np.testing.assert_allclose(up[:, 0], 2 * row)
    np.testing.assert_allclose(
        up[1, 1], 0.75 * (0.75 * 0 + 0.25 * 4) + 0.25 * (0.75 * 8 + 0.25 * 12)
    )
    np.testing.assert_allclose(
        attribution.upsample(np.full((3, 2), 2.5), 7, 5), np.full((7, 5), 2.5)
    )
    np.testing.assert_allclose(attribution.upsample(a, 2, 2), a)


async def test_grad_cam_defaults_to_the_last_conv_after_its_relu_and_checks_layer(client) -> None:
    spec = {
        "input": {"height": 8, "width": 8, "channels": 3},
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3, "padding": 1, "activation": "none"},
            {"type": "relu"},
            {"type": "maxpool", "size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 3, "activation": "softmax"},
        ],
    }
    run = await run_of(client, spec, random_pixels(8, 8, 3, seed=1))
    base = f"{API}/runs/{run['run_id']}/gradcam"
    r = await client.get(f"{base}.npy")
    assert r.status_code == 200 and r.headers["x-layer"] == "1"
    assert npy(r.content).shape == (8, 8)
    r = await client.get(f"{base}.npy?layer=2")  # 4x4 maps, resized to the 8x8 input
    assert r.status_code == 200 and npy(r.content).shape == (8, 8)
    for layer in (3, 4, 99, -1):
        r = await client.get(f"{base}.png?layer={layer}")
        assert r.status_code == 422
        d = r.json()["detail"]
        assert d["errors"][0]["field"] == "layer" and "0, 1, 2" in d["message"]


async def test_pngs_are_the_input_size_and_the_overlay_is_rgb(client) -> None:
    spec = conv_relu_net(9, 7, 1, k=2, classes=3, pool=True)
    run = await run_of(client, spec, random_pixels(9, 7, 1, seed=2))
    base = f"{API}/runs/{run['run_id']}"
    for path in ("saliency.png", "gradcam.png"):
        r = await client.get(f"{base}/{path}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(r.content))
        assert image.size == (7, 9) and image.mode == "P"
        r = await client.get(f"{base}/{path}?overlay=1&target=1")
        image = Image.open(io.BytesIO(r.content))
        assert image.size == (7, 9) and image.mode == "RGB" and r.headers["x-target"] == "1"


def test_the_overlay_dims_the_image_where_the_map_is_zero_and_colours_its_peak() -> None:
    image = np.random.default_rng(4).random((5, 6, 1)).astype(np.float32)
    heat = np.zeros((5, 6), np.float32)
    plain = np.asarray(Image.open(io.BytesIO(saliency.overlay_png(image, heat))))
    dimmed = render_image(saliency.OVERLAY_DIM * image)
    grey = np.asarray(Image.open(io.BytesIO(dimmed)).convert("RGB"))
    np.testing.assert_array_equal(plain, grey)
    heat[2, 3], heat[0, 1] = 5.0, 1.25
    mixed = np.asarray(Image.open(io.BytesIO(saliency.overlay_png(image, heat)))).astype(float)
    strength, dim = saliency.OVERLAY_STRENGTH, saliency.OVERLAY_DIM
    top = np.array([253, 231, 37])  # viridis at 1
    peak = (1 - strength) * dim * image[2, 3, 0] * 255 + strength * top
    np.testing.assert_allclose(mixed[2, 3], peak, atol=1.0)
    # A quarter of the peak is half as opaque (sqrt), coloured from the lighter part of viridis.
    table = np.frombuffer(VIRIDIS_PALETTE, dtype=np.uint8).reshape(256, 3).astype(float)
    shade = saliency.OVERLAY_LOWEST_COLOUR + (1 - saliency.OVERLAY_LOWEST_COLOUR) * 0.25
    colour = table[round(shade * 254)]
    quarter = (1 - strength / 2) * dim * image[0, 1, 0] * 255 + strength / 2 * colour
    np.testing.assert_allclose(mixed[0, 1], quarter, atol=1.0)
    np.testing.assert_array_equal(mixed[4, 5], grey[4, 5])


async def test_a_network_without_class_scores_is_409_with_what_to_add(client, png_bytes) -> None:
    no_softmax = json.loads(json.dumps(WORKED_EXAMPLE))
    no_softmax["layers"][-1]["activation"] = "none"
    conv_only = {**WORKED_EXAMPLE, "layers": WORKED_EXAMPLE["layers"][:1]}
    for spec, ends in ((no_softmax, "dense with activation 'none'"), (conv_only, "conv")):
        run = await run_of(client, spec, random_pixels(32, 32, 3))
        for path in ("saliency.png", "saliency.npy", "gradcam.png", "gradcam.npy"):
            r = await client.get(f"{API}/runs/{run['run_id']}/{path}")
            assert r.status_code == 409
            message = r.json()["detail"]["message"]
            assert ends in message and "dense layer with softmax" in message


async def test_a_target_outside_the_classes_is_422_and_an_unknown_run_404(client) -> None:
    run = await run_of(client, WORKED_EXAMPLE, random_pixels(32, 32, 3))
    for target in (10, -1):
        r = await client.get(f"{API}/runs/{run['run_id']}/saliency.png?target={target}")
        assert r.status_code == 422
        d = r.json()["detail"]
        assert d["errors"][0]["field"] == "target" and "0..9" in d["message"]
    r = await client.get(f"{API}/runs/0123456789abcdef/gradcam.png")
    assert r.status_code == 404 and "POST /api/v1/forward" in r.json()["detail"]["message"]


async def test_grad_cam_needs_a_conv_layer(client) -> None:
    spec = {
        "input": {"height": 4, "width": 4, "channels": 1},
        "layers": [{"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}],
    }
    run = await run_of(client, spec, random_pixels(4, 4, 1))
    r = await client.get(f"{API}/runs/{run['run_id']}/gradcam.png")
    message = r.json()["detail"]["message"]
    assert r.status_code == 409 and "has none" in message and "saliency map instead" in message
    r = await client.get(f"{API}/runs/{run['run_id']}/saliency.npy")
    assert r.status_code == 200 and npy(r.content).shape == (4, 4)
