"""Every layer's backward against central finite differences (float64), and a batch's forward
(im2col columns of several images) against the single-image kernels on the same weights."""

from __future__ import annotations

import numpy as np
import pytest

from app.cnn import layers
from app.cnn.layers import (
    AvgPoolLayer,
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    GlobalAvgPoolLayer,
    GlobalMaxPoolLayer,
    Layer,
    MaxPoolLayer,
    ReluLayer,
    softmax_cross_entropy,
)
from app.cnn.network import build_network
from app.cnn.shapes import infer_shapes
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

CASES = range(12)
STEP = 1e-6
TOLERANCE = 1e-6


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||), 0 when both are zero."""
    scale = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def numeric_gradient(loss, array: np.ndarray) -> np.ndarray:
    """Central differences of loss() with respect to every element of array (changed in place)."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + STEP
        up = loss()
        flat[i] = old - STEP
        down = loss()
        flat[i] = old
        gflat[i] = (up - down) / (2 * STEP)
    return grad


def check_layer(layer: Layer, x: np.ndarray, rng: np.random.Generator) -> None:
    """Backward of L = sum(forward(x) * R) against finite differences for x and every param."""
    r = rng.standard_normal(layer.forward(x).shape)

    def loss() -> float:
        return float(np.sum(layer.forward(x) * r))

    layer.forward(x)
    dx = layer.backward(r)
    assert dx.shape == x.shape and dx.dtype == np.float64
    assert rel_error(dx, numeric_gradient(loss, x)) < TOLERANCE
    for name, param in layer.params.items():
        layer.forward(x)
        layer.backward(r)
        analytic = layer.grads[name].copy()
        assert rel_error(analytic, numeric_gradient(loss, param)) < TOLERANCE, name


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal-ish values with |v| >= 0.1, so no finite-difference step crosses relu's kink."""
    v = rng.standard_normal(shape)
    return np.sign(v) * (0.1 + np.abs(v))


def distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.05 apart, so no step changes which element is a window's maximum."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 + rng.uniform(-0.02, 0.02, n) - n * 0.05).reshape(shape)


# ConvLayer gathers its columns channels first when F*C is below CHANNELS_FIRST_BELOW; the random
# cases are small, so each is run with the threshold forcing one layout and then the other.
LAYOUTS = {"channels-last": 0, "channels-first": 10**6}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES)
def test_conv_backward_matches_finite_differences_with_stride_and_padding(
    monkeypatch, case: int, layout: str
) -> None:
    monkeypatch.setattr(layers, "CHANNELS_FIRST_BELOW", LAYOUTS[layout])
    rng = np.random.default_rng(case)
    f, s, p = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(0, 3))
    h, w = int(rng.integers(max(1, f - 2 * p), 9)), int(rng.integers(max(1, f - 2 * p), 9))
    n, c, k = int(rng.integers(1, 3)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    relu = bool(case % 2)
    weights = rng.standard_normal((k, f, f, c))
    bias = rng.standard_normal(k)
    layer = ConvLayer(weights, bias, stride=s, padding=p, activation="relu" if relu else "none")
    x = rng.standard_normal((n, h, w, c))
    while relu and np.min(np.abs(ConvLayer(weights, bias, s, p).forward(x))) < 1e-4:
        x = rng.standard_normal((n, h, w, c))  # a step must not cross relu's kink
    check_layer(layer, x, rng)


@pytest.mark.parametrize("case", CASES)
def test_dense_backward_matches_finite_differences(case: int) -> None:
    rng = np.random.default_rng(100 + case)
    n, d, u = int(rng.integers(1, 5)), int(rng.integers(1, 11)), int(rng.integers(1, 7))
    layer = DenseLayer(
        rng.standard_normal((u, d)),
        rng.standard_normal(u),
        activation="relu" if case % 2 else "none",
    )
    x = rng.standard_normal((n, d))
    while (
        layer.activation == "relu"
        and np.min(np.abs(DenseLayer(layer.params["weights"], layer.params["bias"]).forward(x)))
        < 1e-4
    ):
        x = rng.standard_normal((n, d))  # a step must not cross relu's kink
    check_layer(layer, x, rng)


@pytest.mark.parametrize("case", CASES)
def test_pool_backward_matches_finite_differences_with_stride_and_padding(case: int) -> None:
    rng = np.random.default_rng(200 + case)
    size, s = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    p = int(rng.integers(0, size // 2 + 1))
    h, w = int(rng.integers(max(1, size - 2 * p), 9)), int(rng.integers(max(1, size - 2 * p), 9))
    shape = (int(rng.integers(1, 3)), h, w, int(rng.integers(1, 4)))
    check_layer(MaxPoolLayer(size, s, p), distinct(rng, shape), rng)
    check_layer(AvgPoolLayer(size, s, p), rng.standard_normal(shape), rng)


@pytest.mark.parametrize("case", range(4))
def test_relu_flatten_and_global_pools_backward_match_finite_differences(case: int) -> None:
    rng = np.random.default_rng(300 + case)
    shape = tuple(int(v) for v in rng.integers(1, 6, 4))
    check_layer(ReluLayer(), away_from_zero(rng, shape), rng)
    check_layer(FlattenLayer(), rng.standard_normal(shape), rng)
    check_layer(GlobalAvgPoolLayer(), rng.standard_normal(shape), rng)
    check_layer(GlobalMaxPoolLayer(), distinct(rng, shape), rng)


def test_softmax_cross_entropy_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(400)
    logits = rng.standard_normal((6, 5)) * 3
    labels = rng.integers(0, 5, 6)
    _, analytic = softmax_cross_entropy(logits, labels)
    numeric = numeric_gradient(lambda: softmax_cross_entropy(logits, labels)[0], logits)
    assert rel_error(analytic, numeric) < TOLERANCE


def test_max_pool_gives_a_tie_to_the_first_maximum_only() -> None:
    x = np.ones((1, 2, 2, 1))  # every value ties
    pool = MaxPoolLayer(2)
    pool.forward(x)
    dx = pool.backward(np.ones((1, 1, 1, 1)))
    assert dx[0, :, :, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def slow_max_pool_backward(
    x: np.ndarray, dy: np.ndarray, size: int, stride: int, padding: int
) -> np.ndarray:
    """Plain loops: each window's dy goes to its first maximum in scan order (pads never win)."""
    n, h, w, c = x.shape
    dx = np.zeros_like(x)
    for i in range(n):
        for ch in range(c):
            for oy in range(dy.shape[1]):
                for ox in range(dy.shape[2]):
                    best = None
                    for fy in range(size):
                        for fx in range(size):
                            yy, xx = oy * stride + fy - padding, ox * stride + fx - padding
                            inside = 0 <= yy < h and 0 <= xx < w
                            if inside and (best is None or x[i, yy, xx, ch] > x[i, *best, ch]):
                                best = (yy, xx)
                    dx[i, *best, ch] += dy[i, oy, ox, ch]
    return dx


@pytest.mark.parametrize(
    ("size", "stride", "padding", "height", "width"),
    [(2, 2, 0, 6, 8), (3, 3, 0, 6, 9), (1, 1, 0, 3, 4), (2, 2, 0, 5, 6), (3, 2, 1, 7, 6)],
)
def test_max_pool_routes_ties_like_the_loop_reference(
    size: int, stride: int, padding: int, height: int, width: int
) -> None:
    rng = np.random.default_rng(size * 10 + stride)
    x = rng.integers(0, 3, (2, height, width, 3)).astype(np.float64)  # ties everywhere
    pool = MaxPoolLayer(size, stride, padding)
    y = pool.forward(x)
    dy = rng.standard_normal(y.shape)
    expected = slow_max_pool_backward(x, dy, size, stride, padding)
    # Overlapping windows add up in another order: equal up to rounding, not bit for bit.
    np.testing.assert_allclose(pool.backward(dy), expected, rtol=1e-12, atol=1e-15)


WHOLE_NETWORKS = [
    NetworkSpec(
        InputSpec(7, 9, 2),
        (
            ConvSpec(3, 3, stride=2, padding=1),
            PoolSpec("avg", 2, 1, 1),
            ConvSpec(2, 2, activation="none"),
            ReluSpec(),
            FlattenSpec(),
            DenseSpec(4, "relu"),
            DenseSpec(3, "softmax"),
        ),
        seed=5,
    ),
    NetworkSpec(
        InputSpec(7, 7, 1),
        (
            ConvSpec(4, 3, padding="same"),
            PoolSpec("max", 3, 2, 1),
            GlobalPoolSpec("avg"),
            FlattenSpec(),
            DenseSpec(3),
        ),
        seed=6,
    ),
]


@pytest.mark.parametrize("spec", WHOLE_NETWORKS, ids=["strided", "global-pool"])
def test_whole_network_parameter_gradients_match_finite_differences(spec: NetworkSpec) -> None:
    rng = np.random.default_rng(7)
    net = build_network(spec, np.float64)
    x = rng.random((3, spec.input.height, spec.input.width, spec.input.channels))
    labels = rng.integers(0, net.n_classes, 3)
    for params, _ in net.param_groups():  # zero biases would put all-zero windows on relu's kink
        params["bias"] += rng.uniform(0.05, 0.2, params["bias"].shape)

    def loss() -> float:
        return softmax_cross_entropy(net.logits(x), labels)[0]

    _, dlogits = softmax_cross_entropy(net.logits(x), labels)
    net.backward_logits(dlogits)
    for params, grads in net.param_groups():
        for name, param in params.items():
            analytic = grads[name].copy()
            assert rel_error(analytic, numeric_gradient(loss, param)) < TOLERANCE


def random_valid_specs(count: int, seed: int) -> list[NetworkSpec]:
    """Seeded random stacks with strides, padding, every pooling kind; only valid ones kept."""
    rng = np.random.default_rng(seed)
    specs = []
    while len(specs) < count:
        h, w, c = int(rng.integers(6, 20)), int(rng.integers(6, 20)), int(rng.choice([1, 3]))
        layers = []
        for _ in range(int(rng.integers(1, 4))):
            kind = rng.choice(["conv", "maxpool", "avgpool", "relu"])
            if kind == "conv":
                f = int(rng.integers(1, 6))
                pad = "same" if f % 2 and rng.random() < 0.3 else int(rng.integers(0, f // 2 + 1))
                stride = 1 if pad == "same" else int(rng.integers(1, 3))
                layers.append(
                    ConvSpec(
                        int(rng.integers(1, 6)),
                        f,
                        stride,
                        pad,
                        activation=str(rng.choice(["relu", "none"])),
                    )
                )
            elif kind == "relu":
                layers.append(ReluSpec())
            else:
                size = int(rng.integers(1, 4))
                layers.append(
                    PoolSpec(
                        kind[:3], size, int(rng.integers(1, 3)), int(rng.integers(0, size // 2 + 1))
                    )
                )
        tail = rng.integers(0, 3)
        if tail == 1:
            layers.append(GlobalPoolSpec(str(rng.choice(["max", "avg"]))))
        if tail >= 1:
            layers += [
                FlattenSpec(),
                DenseSpec(int(rng.integers(2, 8)), "relu"),
                DenseSpec(int(rng.integers(2, 6)), "softmax"),
            ]
        spec = NetworkSpec(InputSpec(h, w, c), tuple(layers), seed=int(rng.integers(0, 1000)))
        if infer_shapes(spec).valid:
            specs.append(spec)
    return specs


@pytest.mark.parametrize("spec", WHOLE_NETWORKS + random_valid_specs(16, seed=11))
def test_batched_forward_equals_single_image_engine_per_image(spec: NetworkSpec) -> None:
    engine = build_network(spec)
    net = build_network(spec)
    rng = np.random.default_rng(3)
    x = rng.random((4, spec.input.height, spec.input.width, spec.input.channels), dtype=np.float32)
    batched = net.forward_batch(x)
    assert all(out.dtype == np.float32 for out in batched)
    for i in range(len(x)):
        for layer_out, single in zip(batched, engine.forward(x[i]), strict=True):
            assert layer_out[i].shape == single.shape
            np.testing.assert_allclose(layer_out[i], single, rtol=1e-5, atol=1e-5)


def test_untrained_network_starts_from_the_engines_seeded_weights() -> None:
    spec = WHOLE_NETWORKS[0]
    engine = build_network(spec)
    written = build_network(spec).to_spec()
    for layer, written_spec in zip(engine.layers, written.layers, strict=True):
        if isinstance(written_spec, ConvSpec | DenseSpec):
            np.testing.assert_array_equal(written_spec.weights, layer.weights)
            np.testing.assert_array_equal(written_spec.bias, layer.bias)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 1), (1, 3)])
def test_conv_in_one_image_chunks_equals_the_whole_batch(
    monkeypatch, stride, padding, layout
) -> None:
    monkeypatch.setattr(layers, "CHANNELS_FIRST_BELOW", LAYOUTS[layout])
    rng = np.random.default_rng(8)
    weights, bias = rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    x = rng.standard_normal((5, 9, 7, 2))
    whole = ConvLayer(weights, bias, stride, padding, activation="relu")
    y = whole.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = whole.backward(dy)
    monkeypatch.setattr(layers, "BATCH_COLUMN_BUDGET_BYTES", 1)  # one image per chunk
    chunked = ConvLayer(weights, bias, stride, padding, activation="relu")
    np.testing.assert_allclose(chunked.forward(x), y, rtol=1e-12)
    np.testing.assert_allclose(chunked.backward(dy), dx, rtol=1e-12)
    np.testing.assert_allclose(chunked.grads["weights"], whole.grads["weights"], rtol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv_kept_buffers_serve_batches_of_any_size_without_mixing_them(
    monkeypatch, layout: str
) -> None:
    monkeypatch.setattr(layers, "CHANNELS_FIRST_BELOW", LAYOUTS[layout])
    rng = np.random.default_rng(9)
    weights, bias = rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    reused = ConvLayer(weights, bias, 1, 1, activation="relu")
    for n in (5, 2, 7, 3):  # grow, shrink, grow past the first size, shrink
        x = rng.standard_normal((n, 6, 5, 2))
        y = reused.forward(x)
        dy = rng.standard_normal(y.shape)
        dx = reused.backward(dy)
        fresh = ConvLayer(weights, bias, 1, 1, activation="relu")
        np.testing.assert_array_equal(fresh.forward(x), y)
        np.testing.assert_array_equal(fresh.backward(dy), dx)
        np.testing.assert_array_equal(fresh.grads["weights"], reused.grads["weights"])
        np.testing.assert_array_equal(fresh.grads["bias"], reused.grads["bias"])
    kept = y.copy()
    reused.forward(rng.standard_normal((3, 6, 5, 2)))
    np.testing.assert_array_equal(y, kept)  # an output handed out is never a buffer reused later


def test_a_replica_shares_parameters_but_not_buffers_or_grads() -> None:
    rng = np.random.default_rng(10)
    layer = ConvLayer(rng.standard_normal((3, 3, 3, 2)), rng.standard_normal(3), 1, 1)
    layer.forward(rng.standard_normal((2, 5, 5, 2)))
    twin = layer.replica()
    assert twin.params["weights"] is layer.params["weights"]
    assert twin.grads["weights"] is not layer.grads["weights"]
    x = rng.standard_normal((2, 5, 5, 2))
    y = twin.forward(x)
    layer.forward(rng.standard_normal((2, 5, 5, 2)))  # must not touch the twin's kept input
    dy = rng.standard_normal(y.shape)
    twin.backward(dy)
    fresh = ConvLayer(layer.params["weights"], layer.params["bias"], 1, 1)
    fresh.forward(x)
    fresh.backward(dy)
    np.testing.assert_array_equal(twin.grads["weights"], fresh.grads["weights"])


def test_layer_gradients_of_a_class_logit_match_finite_differences() -> None:
    spec = WHOLE_NETWORKS[0]
    net = build_network(spec, np.float64)
    rng = np.random.default_rng(12)
    for params, _ in net.param_groups():  # keep windows off relu's kink (see above)
        params["bias"] += rng.uniform(0.05, 0.2, params["bias"].shape)
    x = rng.random((2, spec.input.height, spec.input.width, spec.input.channels))
    outputs, output_grads, input_grad = net.gradients(x, target=1)
    assert [g.shape for g in output_grads] == [o.shape for o in outputs]
    numeric = numeric_gradient(lambda: float(net.logits(x)[:, 1].sum()), x)
    assert rel_error(input_grad, numeric) < TOLERANCE
    # The gradient at the last layer's output is the one-hot of the target class.
    assert output_grads[-1].reshape(2, -1).tolist() == [[0.0, 1.0, 0.0]] * 2
    assert net.layers[0].need_input_grad is False  # restored for training
