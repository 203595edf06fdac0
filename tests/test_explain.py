"""explain(): every number shown adds up, and agrees with the forward pass."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.cnn import (
    ConvSpec,
    DenseSpec,
    ExplainError,
    FlattenSpec,
    GlobalPoolSpec,
    InputSpec,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
    build_network,
    explain,
)
from tests import reference as ref

SPEC = NetworkSpec(
    InputSpec(9, 5, 2),
    (
        ConvSpec(4, 3, stride=2, padding=1),  # 5x3x4
        PoolSpec("max", 3, 2, 1),  # 3x2x4
        PoolSpec("avg", 2, 1, 1),  # 4x3x4
        ReluSpec(),
        GlobalPoolSpec("avg"),  # 1x1x4
        FlattenSpec(),  # 4
        DenseSpec(6, "relu"),
        DenseSpec(3, "softmax"),
    ),
    seed=3,
)


@pytest.fixture(scope="module")
def run():
    network = build_network(SPEC)
    image = np.random.default_rng(0).standard_normal((9, 5, 2)).astype(np.float32)
    outputs = network.forward(image)
    return network, [image, *outputs[:-1]], outputs


def close(a, b):
    assert a == pytest.approx(float(b), rel=1e-5, abs=1e-6)


def json_ready(result):
    assert json.loads(json.dumps(result, allow_nan=False)) == result


@pytest.mark.parametrize(("y", "x"), [(0, 0), (0, 2), (4, 0), (4, 2), (2, 1)])
def test_conv_products_sum_plus_bias_is_the_value_at_borders_and_inside(run, y, x):
    network, inputs, outputs = run
    for c in range(4):
        e = explain(network, inputs, 0, y=y, x=x, c=c)
        json_ready(e)
        assert e["products_sum"] + e["bias"] == e["pre_activation"]
        assert e["value"] == max(e["pre_activation"], 0.0)
        close(e["value"], outputs[0][y, x, c])
        assert e["window"]["top"] == 2 * y - 1 and e["window"]["left"] == 2 * x - 1
        assert e["window"]["size"] == 3
        np.testing.assert_array_equal(e["kernel"], network.layers[0].weights[c])
        assert e["bias"] == float(network.layers[0].bias[c])
        padded = np.pad(inputs[0], ((1, 1), (1, 1), (0, 0)))  # patch is cut from the padded input
        top, left = e["window"]["top"] + 1, e["window"]["left"] + 1
        np.testing.assert_array_equal(e["patch"], padded[top : top + 3, left : left + 3])
        close(e["products_sum"], np.sum(np.array(e["patch"]) * np.array(e["kernel"])))


def test_conv_patch_at_the_top_left_corner_starts_with_a_row_of_padding(run):
    network, inputs, _ = run
    e = explain(network, inputs, 0, y=0, x=0, c=0)
    assert (e["window"]["top"], e["window"]["left"]) == (-1, -1)
    patch = np.array(e["patch"])
    assert not patch[0].any() and not patch[:, 0].any()
    np.testing.assert_array_equal(patch[1:, 1:], inputs[0][0:2, 0:2])


@pytest.mark.parametrize(("index", "kind"), [(1, "max"), (2, "avg")])
def test_pooling_value_is_the_max_or_mean_of_the_window_and_the_forward_output(run, index, kind):
    network, inputs, outputs = run
    ho, wo, ch = outputs[index].shape
    for y in range(ho):
        for x in range(wo):
            c = (y + x) % ch
            e = explain(network, inputs, index, y=y, x=x, c=c)
            json_ready(e)
            values = [v for row in e["window_values"] for v in row]
            if kind == "max":
                close(e["value"], max(v for v in values if v is not None))
            else:
                close(e["value"], sum(values) / len(values))
            close(e["value"], outputs[index][y, x, c])


def test_max_pool_shows_padding_as_null_and_avg_pool_as_zero(run):
    network, inputs, _ = run
    top_left_max = explain(network, inputs, 1, y=0, x=0, c=0)["window_values"]
    assert top_left_max[0] == [None, None, None] and top_left_max[1][0] is None
    assert top_left_max[1][1] == float(inputs[1][0, 0, 0])
    top_left_avg = explain(network, inputs, 2, y=0, x=0, c=1)["window_values"]
    assert top_left_avg[0] == [0.0, 0.0] and top_left_avg[1][0] == 0.0


def test_relu_shows_its_input_and_output(run):
    network, inputs, outputs = run
    for y, x, c in [(0, 0, 0), (3, 2, 3), (1, 1, 2)]:
        e = explain(network, inputs, 3, y=y, x=x, c=c)
        assert e["input"] == float(inputs[3][y, x, c])
        assert e["value"] == max(e["input"], 0.0) == float(outputs[3][y, x, c])


def test_global_pool_window_is_the_whole_channel(run):
    network, inputs, outputs = run
    e = explain(network, inputs, 4, y=0, x=0, c=2)
    np.testing.assert_array_equal(e["window_values"], inputs[4][:, :, 2])
    assert e["window"] == {"top": 0, "left": 0, "size": 4, "height": 4, "width": 3}
    close(e["value"], outputs[4][0, 0, 2])


def test_flatten_source_maps_back_to_the_right_cell():
    network = build_network(NetworkSpec(InputSpec(3, 4, 2), (FlattenSpec(),)))
    image = np.random.default_rng(1).random((3, 4, 2), dtype=np.float32)
    (flat,) = network.forward(image)
    for i in range(24):
        e = explain(network, [image], 0, i=i)
        y, x, c = e["source"]
        assert i == (y * 4 + x) * 2 + c
        assert e["value"] == float(image[y, x, c]) == float(flat[i])


@pytest.mark.parametrize("index", [6, 7])
def test_dense_contributions_and_value_agree_with_forward(run, index):
    network, inputs, outputs = run
    layer = network.layers[index]
    for i in range(layer.output_shape[0]):
        e = explain(network, inputs, index, i=i)
        json_ready(e)
        contributions = e["top_contributions"]
        assert len(contributions) == min(10, layer.input_shape[0])
        for item in contributions:
            assert item["weight"] == float(layer.weights[i, item["input"]])
            assert item["input_value"] == float(inputs[index][item["input"]])
            close(item["product"], item["weight"] * item["input_value"])
        magnitudes = [abs(item["product"]) for item in contributions]
        assert magnitudes == sorted(magnitudes, reverse=True)
        # these layers have at most 10 inputs, so the contributions are all of them
        close(sum(item["product"] for item in contributions), e["products_sum"])
        assert e["products_sum"] + e["bias"] == e["pre_activation"]
        close(e["value"], outputs[index][i])
    if layer.activation == "softmax":
        total = sum(explain(network, inputs, index, i=i)["value"] for i in range(3))
        assert total == pytest.approx(1.0)


def test_dense_shows_only_the_ten_largest_contributions():
    spec = NetworkSpec(InputSpec(5, 5, 1), (FlattenSpec(), DenseSpec(2)), seed=9)
    network = build_network(spec)
    image = np.random.default_rng(2).random((5, 5, 1), dtype=np.float32)
    flat, out = network.forward(image)
    e = explain(network, [image, flat], 1, i=1)
    products = network.layers[1].weights[1] * flat
    expected = sorted(np.abs(products), reverse=True)[:10]
    np.testing.assert_allclose([abs(c["product"]) for c in e["top_contributions"]], expected)
    close(e["value"], out[1])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_explained_values_equal_the_forward_output_in_random_networks(seed):
    rng = np.random.default_rng(seed)
    spec = ref.random_network_spec(rng)
    network = build_network(spec)
    image = rng.random((spec.input.height, spec.input.width, spec.input.channels), dtype=np.float32)
    outputs = network.forward(image)
    inputs = [image, *outputs]
    for index, out in enumerate(outputs):
        for _ in range(3):
            if out.ndim == 1:
                i = int(rng.integers(out.shape[0]))
                e = explain(network, inputs, index, i=i)
                expected = out[i]
            else:
                y, x, c = (int(rng.integers(n)) for n in out.shape)
                e = explain(network, inputs, index, y=y, x=x, c=c)
                expected = out[y, x, c]
            json_ready(e)
            scale = max(1.0, float(np.abs(out).max()))
            assert e["value"] == pytest.approx(float(expected), rel=1e-5, abs=1e-5 * scale)


@pytest.mark.parametrize(
    ("index", "where", "pattern"),
    [
        (0, {"y": 5, "x": 0, "c": 0}, r"y must be in 0\.\.4"),
        (0, {"y": 0, "x": -1, "c": 0}, r"x must be in 0\.\.2"),
        (0, {"y": 0, "x": 0, "c": 4}, r"c must be in 0\.\.3"),
        (0, {"y": 0, "x": 0}, r"c is required .* 0\.\.3"),
        (0, {"y": 1.5, "x": 0, "c": 0}, r"y must be in 0\.\.4"),
        (1, {"y": True, "x": 0, "c": 0}, r"y must be in 0\.\.2"),
        (7, {}, r"i is required .* 0\.\.2"),
        (7, {"i": 3}, r"i must be in 0\.\.2"),
        (8, {"i": 0}, r"Layer index must be in 0\.\.7"),
        (-1, {"i": 0}, r"Layer index must be in 0\.\.7"),
    ],
)
def test_out_of_range_positions_raise_explain_error_with_the_valid_range(
    run, index, where, pattern
):
    network, inputs, _ = run
    with pytest.raises(ExplainError, match=pattern):
        explain(network, inputs, index, **where)


def test_an_input_of_the_wrong_shape_is_refused(run):
    network, inputs, _ = run
    with pytest.raises(ExplainError, match="shape 9x5x2, not 5x3x4"):
        explain(network, [inputs[0], inputs[0]], 1, y=0, x=0, c=0)
    assert issubclass(ExplainError, ValueError)
