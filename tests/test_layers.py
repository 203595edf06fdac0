"""Each layer against the loop references, alone (the single-image kernels) and in a batch (im2col
columns of several images); weights from the seed, given weights, presets."""

import numpy as np
import pytest

from app.cnn import (
    PRESET_KERNELS,
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    InputSpec,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
    SpecError,
    build_network,
    he_normal,
    preset_weights,
)
from tests import reference as ref


def run(layer, x: np.ndarray) -> np.ndarray:
    """The layer's output for x (H, W, C) or (n,) as a batch of one, checked against the same x
    inside a batch of three (the batched route) on the way."""
    alone = layer.forward(x[None])[0]
    batch = np.stack([np.zeros_like(x), x, -x])
    np.testing.assert_allclose(layer.forward(batch)[1], alone, rtol=1e-5, atol=1e-5)
    return alone


def single(h, w, c, layer, seed=0):
    """The one layer of a network made of it, and a random input image for it."""
    network = build_network(NetworkSpec(InputSpec(h, w, c), (layer,), seed=seed))
    image = np.random.default_rng(seed + 1).standard_normal((h, w, c)).astype(np.float32)
    return network.layers[0], image


@pytest.mark.parametrize(
    ("h", "w", "c", "spec"),
    [
        (7, 7, 1, ConvSpec(2, 3, stride=2)),
        (9, 6, 3, ConvSpec(4, 3, stride=1, padding="same", activation="none")),
        (10, 8, 2, ConvSpec(3, 4, stride=2, padding=3)),
        (5, 5, 3, ConvSpec(1, 1)),
        (7, 10, 2, ConvSpec(5, 5, stride=3, padding=2, activation="none")),
    ],
)
def test_conv_layer_matches_the_reference_with_its_activation(h, w, c, spec):
    layer, image = single(h, w, c, spec, seed=h * w)
    expected = ref.conv(image, layer.weights, layer.bias, layer.stride, layer.padding)
    if spec.activation == "relu":
        expected = ref.relu(expected)
        assert run(layer, image).min() >= 0
    ref.assert_matches(run(layer, image), expected)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    ("h", "w", "size", "stride", "padding"),
    [(8, 6, 2, None, 0), (7, 9, 3, 2, 1), (7, 9, 3, 1, 1), (5, 4, 1, None, 0)],
)
def test_pool_layer_matches_the_reference(kind, h, w, size, stride, padding):
    layer, image = single(h, w, 3, PoolSpec(kind, size, stride, padding))
    expected = ref.pool(image, size, stride or size, padding, kind)
    ref.assert_matches(run(layer, image), expected)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_global_pool_layer_matches_the_reference(kind):
    layer, image = single(5, 8, 4, GlobalPoolSpec(kind))
    ref.assert_matches(run(layer, image), ref.global_pool(image, kind))


def test_relu_layer_matches_the_reference_and_leaves_its_input_alone():
    layer, image = single(4, 5, 2, ReluSpec())
    before = image.copy()
    ref.assert_matches(run(layer, image), ref.relu(image))
    np.testing.assert_array_equal(image, before)


def test_flatten_is_row_major_with_the_channel_fastest():
    layer, _ = single(3, 4, 2, FlattenSpec())
    image = np.random.default_rng(0).random((3, 4, 2), dtype=np.float32)
    flat = run(layer, image)
    ref.assert_matches(flat, ref.flatten(image))
    for y, x, c in [(0, 0, 1), (1, 3, 0), (2, 2, 1)]:
        assert flat[(y * 4 + x) * 2 + c] == image[y, x, c]


@pytest.mark.parametrize("activation", ["none", "relu", "softmax"])
def test_dense_layer_matches_the_reference(activation):
    network = build_network(
        NetworkSpec(InputSpec(2, 3, 2), (FlattenSpec(), DenseSpec(7, activation)), seed=4)
    )
    dense = network.layers[1]
    x = np.random.default_rng(5).standard_normal(12).astype(np.float32)
    z = ref.dense(x, dense.weights, dense.bias)
    expected = {"none": z, "relu": ref.relu(z), "softmax": ref.softmax(z)}[activation]
    ref.assert_matches(run(dense, x), expected)


def test_weights_come_from_the_seed_deterministically_with_zero_bias():
    spec = NetworkSpec(InputSpec(8, 8, 3), (ConvSpec(4, 3), FlattenSpec(), DenseSpec(5)), seed=11)
    a, b = build_network(spec), build_network(spec)
    other = build_network(NetworkSpec(spec.input, spec.layers, seed=12))
    for i in (0, 2):
        np.testing.assert_array_equal(a.layers[i].weights, b.layers[i].weights)
        assert not np.array_equal(a.layers[i].weights, other.layers[i].weights)
        assert a.layers[i].weights.dtype == np.float32
        assert not a.layers[i].bias.any()


def test_weights_are_drawn_in_layer_order_from_one_generator():
    first = build_network(NetworkSpec(InputSpec(6, 6, 2), (ConvSpec(3, 3),), seed=5))
    longer = build_network(
        NetworkSpec(InputSpec(6, 6, 2), (ConvSpec(3, 3), ConvSpec(2, 3)), seed=5)
    )
    np.testing.assert_array_equal(first.layers[0].weights, longer.layers[0].weights)
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(longer.layers[0].weights, he_normal(rng, (3, 3, 3, 2), 18))
    np.testing.assert_array_equal(longer.layers[1].weights, he_normal(rng, (2, 3, 3, 3), 27))


def test_he_normal_has_variance_two_over_fan_in():
    w = he_normal(np.random.default_rng(0), (64, 5, 5, 16), fan_in=400)
    assert w.dtype == np.float32
    assert abs(float(w.std()) - np.sqrt(2 / 400)) < 0.03 * np.sqrt(2 / 400)
    assert abs(float(w.mean())) < 0.01 * np.sqrt(2 / 400) * 10


def test_given_weights_are_used_as_given_and_copied():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((2, 3, 3, 1))
    b = np.array([0.5, -0.25])
    layer, image = single(5, 5, 1, ConvSpec(2, 3, activation="none", weights=w, bias=b))
    np.testing.assert_array_equal(layer.weights, w.astype(np.float32))
    np.testing.assert_array_equal(layer.bias, b.astype(np.float32))
    w[:] = 0  # changing the caller's array afterwards changes nothing
    ref.assert_matches(run(layer, image), ref.conv(image, layer.weights, b, 1, 0))
    assert layer.weights.any()


def test_given_dense_weights_compute_w_x_plus_b():
    spec = DenseSpec(2, weights=[[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.0, 1.0]], bias=[10.0, 0.0])
    network = build_network(NetworkSpec(InputSpec(2, 2, 1), (FlattenSpec(), spec)))
    out = network.forward(np.array([1, 2, 3, 4], np.float32).reshape(2, 2, 1))
    np.testing.assert_array_equal(out[1], [10 + 1 + 4 + 9 + 16, -2 + 4])


def test_presets_are_named_3x3_float32_kernels():
    for name in ("sobel_x", "sobel_y", "blur", "sharpen", "identity", "laplacian", "emboss"):
        assert PRESET_KERNELS[name].shape == (3, 3)
        assert PRESET_KERNELS[name].dtype == np.float32
    assert PRESET_KERNELS["blur"].sum() == pytest.approx(1.0)


def test_preset_weights_apply_the_kernel_to_every_channel_divided_by_c():
    w = preset_weights("sobel_x", 2, 3, 3)
    assert w.shape == (2, 3, 3, 3) and w.dtype == np.float32
    for k in range(2):
        for c in range(3):
            np.testing.assert_allclose(w[k, :, :, c], PRESET_KERNELS["sobel_x"] / 3)


def test_a_grey_image_given_as_rgb_responds_like_its_single_channel():
    grey = np.random.default_rng(3).random((6, 7, 1), dtype=np.float32)
    rgb = np.repeat(grey, 3, axis=2)
    one, _ = single(6, 7, 1, ConvSpec(1, 3, padding=1, activation="none", init="sharpen"))
    three, _ = single(6, 7, 3, ConvSpec(1, 3, padding=1, activation="none", init="sharpen"))
    np.testing.assert_allclose(run(three, rgb), run(one, grey), rtol=1e-5, atol=1e-6)


def test_identity_preset_with_same_padding_returns_the_image():
    layer, image = single(
        5, 6, 1, ConvSpec(1, 3, padding="same", activation="none", init="identity")
    )
    np.testing.assert_array_equal(run(layer, image), image)


def test_sobel_x_responds_to_a_left_to_right_ramp_and_sobel_y_does_not():
    ramp = np.tile(np.arange(6, dtype=np.float32), (5, 1))[:, :, None]  # grows with x
    sx, _ = single(5, 6, 1, ConvSpec(1, 3, activation="none", init="sobel_x"))
    sy, _ = single(5, 6, 1, ConvSpec(1, 3, activation="none", init="sobel_y"))
    np.testing.assert_allclose(run(sx, ramp), 8.0)
    np.testing.assert_allclose(run(sy, ramp), 0.0)


def test_unknown_preset_or_wrong_size_raises_spec_error():
    with pytest.raises(SpecError, match="gabor"):
        preset_weights("gabor", 1, 3, 1)
    with pytest.raises(SpecError, match="kernel_size is 5"):
        preset_weights("blur", 1, 5, 1)


def test_layers_carry_their_shapes_and_index():
    network = build_network(NetworkSpec(InputSpec(8, 6, 3), (ConvSpec(4, 3), PoolSpec("max", 2))))
    conv, pool = network.layers
    assert (conv.index, conv.input_shape, conv.output_shape, conv.param_count) == (
        0,
        (8, 6, 3),
        (6, 4, 4),
        112,
    )
    assert (pool.index, pool.input_shape, pool.output_shape, pool.param_count) == (
        1,
        (6, 4, 4),
        (3, 2, 4),
        0,
    )
    assert conv.spec is network.spec.layers[0]


@pytest.mark.parametrize("shape", [(0, 4), (3, 3, 3, 2), (10, 2**15 + 7), (2, 2**15)])
def test_he_normal_draws_the_same_weights_as_one_float64_draw_and_leaves_rng_in_step(shape):
    # Drawn block by block to spare big temporaries; seeds must keep giving the same networks.
    fan_in = max(1, int(np.prod(shape[1:])))
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    got = he_normal(a, shape, fan_in)
    want = (b.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(a.standard_normal(3), b.standard_normal(3))
