"""Feature visualisation (app/cnn/attribution.visualise): gradient ascent raises the objective,
its gradient is right, it is seeded and bounded, and it leaves a shared network alone."""

from __future__ import annotations

import numpy as np
import pytest

from app.cnn import build_network
from app.cnn.attribution import objective_gradient, visualise
from app.learning.recipes import MODEL_DIR
from app.storage.models import ModelRegistry
from tests.test_backprop import POST, rel_error


@pytest.fixture(scope="module")
def digits():
    return ModelRegistry(MODEL_DIR).get("digits").network


def test_theobjective_gradient_matches_central_differences() -> None:
    network = build_network(POST, np.float64)
    net = network.replica()
    for layer in net.layers:
        layer.need_input_grad = True
    x = np.random.default_rng(0).random((32, 32, 3))
    for layer, channel in ((0, 3), (1, 7), (3, 2)):
        _, grad = objective_gradient(net, x, layer, channel)
        rng = np.random.default_rng(layer)
        picks = [tuple(int(rng.integers(0, n)) for n in x.shape) for _ in range(8)]
        numeric = []
        for p in picks:
            up, down = x.copy(), x.copy()
            up[p] += 1e-6
            down[p] -= 1e-6
            numeric.append(
                (objective_gradient(net, up, layer, channel)[0]
                 - objective_gradient(net, down, layer, channel)[0]) / 2e-6
            )  # fmt: skip
        assert rel_error(np.array([grad[p] for p in picks]), np.array(numeric)) < 1e-6


@pytest.mark.parametrize(("layer", "channel"), [(0, 5), (2, 11), (5, 3)])
def test_gradient_ascent_raises_the_objective_of_the_shipped_digits_model(
    digits, layer: int, channel: int
) -> None:
    found = visualise(digits, layer, channel, steps=24, seed=1)
    assert found.image.shape == (28, 28, 1) and found.image.dtype == np.float32
    assert float(found.image.min()) >= 0.0 and float(found.image.max()) <= 1.0
    assert len(found.objective) == 25
    assert found.objective[-1] > found.objective[0] + 1e-3
    if layer == 5:  # the class's probability rises too
        start = digits.forward(np.full((28, 28, 1), 0.5, np.float32))[-1][channel]
        assert digits.forward(found.image)[-1][channel] > start


def test_the_same_seed_gives_the_same_image_and_the_network_is_left_alone(digits) -> None:
    weights = digits.layers[0].weights.copy()
    a = visualise(digits, 2, 4, steps=6, seed=3)
    b = visualise(digits, 2, 4, steps=6, seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, visualise(digits, 2, 4, steps=6, seed=4).image)
    np.testing.assert_array_equal(digits.layers[0].weights, weights)
    assert digits.layers[0].need_input_grad is False


def test_a_layer_or_channel_that_does_not_exist_is_refused(digits) -> None:
    with pytest.raises(ValueError, match=r"layer must be in 0\.\.5"):
        visualise(digits, 6, 0)
    with pytest.raises(ValueError, match=r"channel must be in 0\.\.15 for layer 0"):
        visualise(digits, 0, 16)
