"""Slow references written straight from the definitions, with plain nested Python loops.

The engine (app/cnn) is held against these in the tests, cs231n style: a fast version and a slow
one of the same operation. Everything here computes in float64 Python numbers.
Also here: a generator of random valid networks to run both on.
"""

from __future__ import annotations

import math

import numpy as np

from app.cnn.shapes import fitting_strides
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


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """out[oy, ox, k] = b[k] + sum over fy, fx, c of xpad[oy*S+fy, ox*S+fx, c] * w[k, fy, fx, c].

    x (H, W, C), w (K, F, F, C), b (K,) -> (Ho, Wo, K); cells outside x count as 0.
    """
    h, wd, ch = x.shape
    k_count, f = w.shape[0], w.shape[1]
    ho = (h - f + 2 * padding) // stride + 1
    wo = (wd - f + 2 * padding) // stride + 1
    out = np.zeros((ho, wo, k_count))
    for oy in range(ho):
        for ox in range(wo):
            for k in range(k_count):
                total = float(b[k])
                for fy in range(f):
                    for fx in range(f):
                        iy = oy * stride + fy - padding
                        ix = ox * stride + fx - padding
                        if 0 <= iy < h and 0 <= ix < wd:
                            for c in range(ch):
                                total += float(x[iy, ix, c]) * float(w[k, fy, fx, c])
                out[oy, ox, k] = total
    return out


def pool(x: np.ndarray, size: int, stride: int, padding: int, kind: str) -> np.ndarray:
    """Max over the window's cells inside x, or their sum divided by size*size (padding = 0).

    x (H, W, C) -> (Ho, Wo, C).
    """
    h, w, ch = x.shape
    ho = (h - size + 2 * padding) // stride + 1
    wo = (w - size + 2 * padding) // stride + 1
    out = np.zeros((ho, wo, ch))
    for oy in range(ho):
        for ox in range(wo):
            for c in range(ch):
                cells = []
                for fy in range(size):
                    for fx in range(size):
                        iy = oy * stride + fy - padding
                        ix = ox * stride + fx - padding
                        if 0 <= iy < h and 0 <= ix < w:
                            cells.append(float(x[iy, ix, c]))
                out[oy, ox, c] = max(cells) if kind == "max" else sum(cells) / (size * size)
    return out


def global_pool(x: np.ndarray, kind: str) -> np.ndarray:
    """x (H, W, C) -> (1, 1, C): the max or the mean of each channel."""
    h, w, ch = x.shape
    out = np.zeros((1, 1, ch))
    for c in range(ch):
        cells = [float(x[y, xx, c]) for y in range(h) for xx in range(w)]
        out[0, 0, c] = max(cells) if kind == "max" else sum(cells) / len(cells)
    return out


def flatten(x: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H*W*C,) with i = (y*W + x)*C + c; a flat input stays as it is."""
    if x.ndim == 1:
        return np.array([float(v) for v in x])
    h, w, ch = x.shape
    out = np.zeros(h * w * ch)
    for y in range(h):
        for xx in range(w):
            for c in range(ch):
                out[(y * w + xx) * ch + c] = float(x[y, xx, c])
    return out


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """z[u] = sum over j of w[u, j] * x[j], plus b[u]. x (n,), w (units, n) -> (units,)."""
    units, n = w.shape
    return np.array([float(b[u]) + sum(float(w[u, j]) * float(x[j]) for j in range(n))
                     for u in range(units)])  # fmt: skip


def relu(x: np.ndarray) -> np.ndarray:
    """max(v, 0) for every element, any shape."""
    return np.array([max(float(v), 0.0) for v in x.ravel()]).reshape(x.shape)


def softmax(z: np.ndarray) -> np.ndarray:
    """exp(z_i - max z) / sum_j exp(z_j - max z)."""
    m = max(float(v) for v in z)
    e = [math.exp(float(v) - m) for v in z]
    total = sum(e)
    return np.array([v / total for v in e])


def forward(network, image: np.ndarray) -> list[np.ndarray]:
    """Run a built app.cnn Network through the references above, using its resolved weights."""
    return forward_from(network, 0, image)


def forward_from(network, start: int, x: np.ndarray) -> list[np.ndarray]:
    """The outputs of layers start.. for x entering layer `start` (the image when start is 0)."""
    outputs = []
    x = np.asarray(x, dtype=np.float64)
    for layer in network.layers[start:]:
        spec = layer.spec
        if isinstance(spec, ConvSpec):
            x = conv(x, layer.weights, layer.bias, layer.stride, layer.padding)
            x = relu(x) if spec.activation == "relu" else x
        elif isinstance(spec, ReluSpec):
            x = relu(x)
        elif isinstance(spec, PoolSpec):
            x = pool(x, spec.size, spec.stride or spec.size, spec.padding, spec.kind)
        elif isinstance(spec, GlobalPoolSpec):
            x = global_pool(x, spec.kind)
        elif isinstance(spec, FlattenSpec):
            x = flatten(x)
        else:
            x = dense(x, layer.weights, layer.bias)
            x = {"relu": relu, "softmax": softmax}.get(spec.activation, lambda z: z)(x)
        outputs.append(x)
    return outputs


def magnitudes(network, image: np.ndarray) -> list[np.ndarray]:
    """For each layer, the size of what its values are sums of: the same network run on |x| with
    |weights| and |biases| (windows take their largest magnitude, softmax twice its input's).

    A float32 sum of terms that cancel is off by a few ulps of the terms, not of the result: this
    is the scale a float32 result can honestly be held to (standard forward error analysis),
    carried through the layers the way errors are. Vectorised NumPy: a tolerance, not a reference.
    """
    out = []
    m = np.abs(np.asarray(image, dtype=np.float64))
    for layer in network.layers:
        spec = layer.spec
        if isinstance(spec, ConvSpec):
            f, s, p = layer.weights.shape[1], layer.stride, layer.padding
            mp = np.pad(m, ((p, p), (p, p), (0, 0)))
            windows = np.lib.stride_tricks.sliding_window_view(mp, (f, f), axis=(0, 1))[::s, ::s]
            m = np.einsum("yxcij,kijc->yxk", windows, np.abs(layer.weights)) + np.abs(layer.bias)
        elif isinstance(spec, PoolSpec):
            size, stride, p = spec.size, spec.stride or spec.size, spec.padding
            mp = np.pad(m, ((p, p), (p, p), (0, 0)))
            windows = np.lib.stride_tricks.sliding_window_view(mp, (size, size), axis=(0, 1))
            m = windows[::stride, ::stride].max(axis=(3, 4))
        elif isinstance(spec, GlobalPoolSpec):
            m = m.max(axis=(0, 1), keepdims=True)
        elif isinstance(spec, FlattenSpec):
            m = m.reshape(-1)
        elif isinstance(spec, DenseSpec):
            m = np.abs(layer.weights) @ m + np.abs(layer.bias)
            if spec.activation == "softmax":
                m = np.full_like(m, 2 * m.max())
        out.append(m)  # relu: as its input
    return out


def assert_matches(
    actual: np.ndarray, expected: np.ndarray, magnitude: np.ndarray | None = None
) -> None:
    """float32 engine vs float64 reference: 1e-5 relative, atol 1e-5 of the largest magnitude
    (of the result, or of the terms it sums when `magnitude` (see magnitudes()) is given)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    if magnitude is not None and magnitude.size:
        scale = max(scale, float(magnitude.max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale + 1e-12)


def random_network_spec(rng: np.random.Generator) -> NetworkSpec:
    """A random valid network on a small, often non-square input: convs and pools with random
    strides (chosen among those that fit), paddings, "same", presets, given weights, global pools,
    flatten and dense layers with every activation."""
    in_h, in_w, in_c = int(rng.integers(3, 13)), int(rng.integers(3, 13)), int(rng.integers(1, 5))
    h, w, c = in_h, in_w, in_c
    layers: list = []
    for _ in range(int(rng.integers(1, 5))):
        choice = rng.choice(["conv", "conv", "pool", "relu"])
        if choice == "relu":
            layers.append(ReluSpec())
            continue
        if choice == "conv":
            f = int(rng.integers(1, min(h, w, 5) + 1))
            k = int(rng.integers(1, 5))
            kw: dict = {"activation": str(rng.choice(["relu", "none"]))}
            if f % 2 == 1 and rng.random() < 0.2:
                p, s, kw["padding"] = (f - 1) // 2, 1, "same"
            else:
                p = int(rng.integers(0, f))
                s = int(rng.choice(fitting_strides((h, w), f, p)))
                kw["padding"] = p
            if rng.random() < 0.2:
                kw["weights"] = rng.standard_normal((k, f, f, c)).astype(np.float32)
                kw["bias"] = rng.standard_normal(k).astype(np.float32)
            elif f == 3 and rng.random() < 0.3:
                kw["init"] = str(rng.choice(["sobel_x", "blur", "sharpen", "identity"]))
            layers.append(ConvSpec(k, f, s, **kw))
            c = k
        else:
            f = int(rng.integers(1, min(h, w, 3) + 1))
            p = int(rng.integers(0, f // 2 + 1))
            s = int(rng.choice(fitting_strides((h, w), f, p)))
            layers.append(PoolSpec(str(rng.choice(["max", "avg"])), f, None if s == f else s, p))
        h, w = (h - f + 2 * p) // s + 1, (w - f + 2 * p) // s + 1
    ending = rng.choice(["none", "global", "dense"])
    if ending == "global":
        layers.append(GlobalPoolSpec(str(rng.choice(["max", "avg"]))))
    if ending != "none":
        layers.append(FlattenSpec())
        for _ in range(int(rng.integers(1, 3))):
            layers.append(
                DenseSpec(int(rng.integers(1, 7)), str(rng.choice(["none", "relu", "softmax"])))
            )
    return NetworkSpec(InputSpec(in_h, in_w, in_c), tuple(layers), seed=int(rng.integers(0, 2**31)))
