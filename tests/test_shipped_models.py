"""The trained models shipped in app/model_files: their files, and their accuracy measured again
with the SHIPPED weights in the single-image engine (nothing here trains)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.cnn.network import Network
from app.learning.datasets import load_digits, load_shapes, mnist_style
from app.learning.recipes import MODEL_DIR, RECIPES
from app.storage.model_files import load_model, save_model, spec_to_dict
from app.web.imageio import to_array

FIELDS = {
    "name",
    "description",
    "network",
    "labels",
    "accuracy",
    "test_split",
    "dataset",
    "command",
}


def engine_accuracy(network: Network, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the single-image engine, one image at a time, as the explorer runs it."""
    predictions = [int(np.argmax(network.forward(image)[-1])) for image in x]
    return float(np.mean(np.array(predictions) == y))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_shipped_files_are_small_complete_and_load_in_the_registry(name: str) -> None:
    json_path, npz_path = MODEL_DIR / f"{name}.json", MODEL_DIR / f"{name}.npz"
    record = json.loads(json_path.read_text(encoding="utf-8"))
    assert set(record) == FIELDS
    assert record["command"] == f"python -m app.learning.recipes --only {name}"
    assert record["network"] == spec_to_dict(RECIPES[name].spec)  # the recipe made these files
    assert all("weights" not in layer for layer in record["network"]["layers"])
    assert npz_path.stat().st_size < 300_000
    model = load_model(json_path)
    assert model.network.report.layers[-1].output_shape == (len(record["labels"]),)


@pytest.mark.parametrize(
    ("name", "load", "minimum"), [("digits", load_digits, 0.97), ("shapes", load_shapes, 0.95)]
)
def test_shipped_weights_reach_the_recorded_test_accuracy(name, load, minimum) -> None:
    model = load_model(MODEL_DIR / f"{name}.json")
    data = load()
    assert model.file.test_split == data.split and model.file.labels == list(data.labels)
    accuracy = engine_accuracy(model.network, data.x_test, data.y_test)
    assert accuracy >= minimum
    assert accuracy == pytest.approx(model.file.accuracy, abs=0.002)


def _arc(cx, cy, rx, ry, start=0.0, end=360.0, n=32) -> list[tuple[float, float]]:
    angles = np.radians(np.linspace(start, end, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Clear digits as a person draws them with a mouse, in canvas units 0..1 (y grows downwards).
STROKES = {
    0: [_arc(0.5, 0.5, 0.2, 0.3)],
    1: [[(0.42, 0.27), (0.52, 0.18), (0.52, 0.82)]],
    2: [_arc(0.5, 0.33, 0.18, 0.14, 180, 380, 20) + [(0.3, 0.8), (0.72, 0.8)]],
    3: [_arc(0.48, 0.34, 0.17, 0.15, 200, 450, 20) + _arc(0.48, 0.64, 0.19, 0.17, 270, 520, 20)],
    4: [[(0.6, 0.82), (0.6, 0.18), (0.28, 0.6), (0.75, 0.6)]],
    5: [[(0.68, 0.2), (0.36, 0.2), (0.33, 0.47)] + _arc(0.5, 0.62, 0.19, 0.18, 225, 500, 24)],
    6: [[(0.62, 0.18), (0.45, 0.32), (0.35, 0.5)] + _arc(0.5, 0.64, 0.16, 0.17, 180, 540, 30)],
    7: [[(0.3, 0.2), (0.7, 0.2), (0.45, 0.82)]],
    8: [_arc(0.5, 0.33, 0.15, 0.14), _arc(0.5, 0.65, 0.18, 0.17)],
    9: [_arc(0.5, 0.35, 0.16, 0.15), [(0.66, 0.35), (0.62, 0.82)]],
}


def draw(digit: int, size: int = 280, pen: int = 22, scale: float = 1.0, at=(0.0, 0.0)):
    """A black canvas with the digit in white strokes: what the page sends (as PNG) to the API."""
    canvas = Image.new("L", (size, size), 0)
    pencil = ImageDraw.Draw(canvas)
    for stroke in STROKES[digit]:
        points = [((x * scale + at[0]) * size, (y * scale + at[1]) * size) for x, y in stroke]
        pencil.line(points, fill=255, width=pen, joint="curve")
        for px, py in (points[0], points[-1]):  # round pen ends
            pencil.ellipse([px - pen / 2, py - pen / 2, px + pen / 2, py + pen / 2], fill=255)
    return canvas


@pytest.fixture(scope="module")
def digits_model():
    return load_model(MODEL_DIR / "digits.json").network


@pytest.mark.parametrize("digit", range(10))
def test_a_clear_canvas_drawing_is_read_correctly(digits_model, digit: int) -> None:
    # The API's own decoding: Lanczos resize of the 280x280 canvas to 28x28, value / 255.
    x = to_array(draw(digit), channels=1, height=28, width=28)
    probabilities = digits_model.forward(x)[-1]
    assert int(np.argmax(probabilities)) == digit
    assert probabilities[digit] > 0.5


@pytest.mark.parametrize("digit", range(10))
def test_a_small_off_centre_drawing_is_read_after_mnist_style(digits_model, digit: int) -> None:
    canvas = draw(digit, pen=12, scale=0.5, at=(0.45, 0.05))  # small, thin, top right
    x = to_array(canvas, channels=1, height=280, width=280)
    assert int(np.argmax(digits_model.forward(mnist_style(x))[-1])) == digit


def test_saved_files_round_trip_through_the_registry(tmp_path) -> None:
    spec = load_model(MODEL_DIR / "shapes.json").network.spec
    save_model(
        tmp_path,
        "copy",
        spec,
        description="d",
        labels=list("abcde"),
        accuracy=0.5,
        test_split="s",
        dataset="x",
        command="c",
    )
    again = load_model(tmp_path / "copy.json")
    for original, copied in zip(spec.layers, again.network.spec.layers, strict=True):
        for what in ("weights", "bias"):
            if getattr(original, what, None) is not None:
                np.testing.assert_array_equal(getattr(copied, what), getattr(original, what))
    assert again.file.accuracy == 0.5 and again.file.test_split == "s"


def roughness(kernel: np.ndarray) -> float:
    """Mean step between neighbouring weights relative to their spread; white noise gives ~2.8."""
    steps = np.abs(np.diff(kernel, axis=0)).mean() + np.abs(np.diff(kernel, axis=1)).mean()
    return float(steps / np.abs(kernel - kernel.mean()).mean())


@pytest.mark.parametrize(("name", "most"), [("shapes", 1.5), ("digits", 2.2)])
def test_first_layer_filters_are_smooth_enough_to_read(name: str, most: float) -> None:
    weights = load_model(MODEL_DIR / f"{name}.json").network.layers[0].weights  # (K, F, F, C)
    noise = np.random.default_rng(0).standard_normal(weights.shape)
    assert np.mean([roughness(k) for k in noise]) > 2.5  # the yardstick: random filters
    assert max(roughness(k) for k in weights) < most


def test_shapes_filters_are_brightness_edges_whatever_the_colour() -> None:
    weights = load_model(MODEL_DIR / "shapes.json").network.layers[0].weights  # (8, 5, 5, 3)
    for kernel in weights:
        channels = np.corrcoef(kernel.reshape(-1, 3).T)
        assert channels.min() > 0.95  # R, G and B weighted alike: a grey edge detector
