"""How one output value was computed, as JSON-ready dicts (plain floats, ints and lists).

explain() recomputes a single cell from the layer's input in float64, so the numbers shown add up
exactly (products_sum + bias == pre_activation) and agree with the float32 forward pass to ~1e-6.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ExplainError
from .layers import ConvLayer, DenseLayer, GlobalPoolLayer, Layer, PoolLayer, ReluLayer
from .network import Network
from .shapes import shape_text

TOP_CONTRIBUTIONS = 10


def _window(
    a: np.ndarray, top: int, left: int, size: int, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """A size x size window of a (H, W, C) array starting at (top, left), which may hang over
    the edges; cells outside are `fill`. Returns (values (F, F, C) float64, inside (F, F) bool)."""
    h, w, c = a.shape
    values = np.full((size, size, c), fill, dtype=np.float64)
    inside = np.zeros((size, size), dtype=bool)
    y0, y1 = max(top, 0), min(top + size, h)
    x0, x1 = max(left, 0), min(left + size, w)
    if y0 < y1 and x0 < x1:
        values[y0 - top : y1 - top, x0 - left : x1 - left] = a[y0:y1, x0:x1]
        inside[y0 - top : y1 - top, x0 - left : x1 - left] = True
    return values, inside


def _coordinate(name: str, value: object, size: int, where: str) -> int:
    if value is None:
        raise ExplainError(f"{name} is required for {where}; give {name} in 0..{size - 1}.")
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value < size:
        raise ExplainError(f"{name} must be in 0..{size - 1} for {where}, got {value!r}.")
    return int(value)


def _activate(pre: float, activation: str) -> float:
    return max(pre, 0.0) if activation == "relu" else pre


def _conv(layer: ConvLayer, a: np.ndarray, y: int, x: int, c: int) -> dict[str, Any]:
    f, s, p = layer.kernel_size, layer.stride, layer.padding
    top, left = y * s - p, x * s - p
    patch, _ = _window(a, top, left, f, 0.0)  # zero padding is part of the sum
    kernel = layer.weights[c].astype(np.float64)  # (F, F, C)
    products_sum = float(np.sum(patch * kernel))
    bias = float(layer.bias[c])
    pre = products_sum + bias
    return {
        "patch": patch.tolist(),
        "kernel": kernel.tolist(),
        "bias": bias,
        "products_sum": products_sum,
        "pre_activation": pre,
        "value": _activate(pre, layer.activation),
        "activation": layer.activation,
        "window": {"top": top, "left": left, "size": f, "stride": s, "padding": p},
    }


def _pool(layer: PoolLayer, a: np.ndarray, y: int, x: int, c: int) -> dict[str, Any]:
    f, s, p = layer.size, layer.stride, layer.padding
    top, left = y * s - p, x * s - p
    values, inside = _window(a[:, :, c : c + 1], top, left, f, 0.0)
    values = values[:, :, 0]
    if layer.kind == "max":
        value = float(values[inside].max())
        # Max pooling pads with -inf, which JSON cannot carry: padded cells are null.
        shown = [[v if ok else None for v, ok in zip(row, oks, strict=True)]
                 for row, oks in zip(values.tolist(), inside.tolist(), strict=True)]  # fmt: skip
    else:
        value = float(values.sum() / (f * f))  # padded cells count as zeros
        shown = values.tolist()
    window = {"top": top, "left": left, "size": f, "stride": s, "padding": p}
    return {"window_values": shown, "value": value, "kind": layer.kind, "window": window}


def _global_pool(layer: GlobalPoolLayer, a: np.ndarray, c: int) -> dict[str, Any]:
    values = a[:, :, c].astype(np.float64)
    value = float(values.max() if layer.kind == "max" else values.mean())
    h, w = values.shape
    window = {"top": 0, "left": 0, "size": h, "height": h, "width": w}
    return {"window_values": values.tolist(), "value": value, "kind": layer.kind, "window": window}


def _dense(layer: DenseLayer, a: np.ndarray, i: int) -> dict[str, Any]:
    x = a.astype(np.float64)
    row = layer.weights[i].astype(np.float64)  # only this unit's weights: dense layers can be big
    products = row * x  # (inputs,)
    products_sum = float(products.sum())
    bias = float(layer.bias[i])
    pre = products_sum + bias
    if layer.activation == "softmax":
        # the other units' logits in float32 (as forward), this unit's as shown above
        z = (layer.weights @ a.astype(np.float32) + layer.bias).astype(np.float64)
        z[i] = pre
        e = np.exp(z - z.max())
        value = float(e[i] / e.sum())
    else:
        value = _activate(pre, layer.activation)
    order = np.argsort(-np.abs(products), kind="stable")[:TOP_CONTRIBUTIONS]
    top = [
        {"input": int(j), "input_value": float(x[j]), "weight": float(row[j]),
         "product": float(products[j])}
        for j in order
    ]  # fmt: skip
    return {
        "top_contributions": top,
        "bias": bias,
        "products_sum": products_sum,
        "pre_activation": pre,
        "value": value,
        "activation": layer.activation,
    }


def explain(
    network: Network,
    inputs: list[np.ndarray],
    index: int,
    *,
    y: int | None = None,
    x: int | None = None,
    c: int | None = None,
    i: int | None = None,
) -> dict[str, Any]:
    """How output (y, x, c) (or flat i) of layer `index` was computed from that layer's input.

    inputs[index] is the input to layer `index`: the image (H, W, C) for 0, else the output of
    layer index - 1. Raises ExplainError for a bad layer index or a missing / out-of-range position.
    """
    n = len(network.layers)
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < n:
        raise ExplainError(f"Layer index must be in 0..{n - 1}, got {index!r}.")
    layer: Layer = network.layers[index]
    if index >= len(inputs):
        raise ExplainError(f"No input was given for layer {index}.")
    a = np.asarray(inputs[index])
    if a.shape != layer.input_shape:
        raise ExplainError(f"The input given for layer {index} has shape {shape_text(a.shape)}, "
                           f"not {shape_text(layer.input_shape)}.")  # fmt: skip
    out = layer.output_shape
    where = f"layer {index} ({layer.type}, output {shape_text(out)})"
    if len(out) == 1:
        i = _coordinate("i", i, out[0], where)
        if isinstance(layer, DenseLayer):
            return _dense(layer, a, i)
        if isinstance(layer, ReluLayer):
            v = float(a[i])
            return {"input": v, "value": max(v, 0.0)}
        if a.ndim == 1:  # flatten of an already flat input
            return {"source": [i], "value": float(a[i])}
        _, w, ch = a.shape
        source = [i // (w * ch), (i // ch) % w, i % ch]
        return {"source": source, "value": float(a[tuple(source)])}
    y = _coordinate("y", y, out[0], where)
    x = _coordinate("x", x, out[1], where)
    c = _coordinate("c", c, out[2], where)
    if isinstance(layer, ConvLayer):
        return _conv(layer, a, y, x, c)
    if isinstance(layer, PoolLayer):
        return _pool(layer, a, y, x, c)
    if isinstance(layer, GlobalPoolLayer):
        return _global_pool(layer, a, c)
    v = float(a[y, x, c])  # relu
    return {"input": v, "value": max(v, 0.0)}
