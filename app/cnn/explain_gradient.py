"""How one gradient value was computed, as JSON-ready dicts: the chain rule written out.

For dL/d(a value) the terms are what the layer above sends back to it; for a weight or a bias
they are the input values it multiplied, each times the delta dL/dz it met. Each term has a
`product`, and the products add up to `value` (recomputed in float64 from the float32 arrays of
a backprop.Gradients, so they agree with the array to float32 rounding). Long sums list the
MOST_TERMS largest products and one `rest` term carrying the sum and count of the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backprop import Gradients
from .errors import ExplainError
from .layers import (
    AvgPoolLayer,
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    GlobalMaxPoolLayer,
    GlobalPoolLayer,
    Layer,
    MaxPoolLayer,
    ReluLayer,
)
from .network import Network

MOST_TERMS = 48


def _terms(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The largest |product| rows first, the others folded into one `rest` term."""
    rows.sort(key=lambda r: -abs(r["product"]))
    if len(rows) <= MOST_TERMS:
        return rows
    rest = rows[MOST_TERMS:]
    folded = {"rest": True, "count": len(rest), "product": float(sum(r["product"] for r in rest))}
    return [*rows[:MOST_TERMS], folded]


def _index(name: str, value: int | None, size: int, where: str) -> int:
    if value is None or isinstance(value, bool) or not 0 <= value < size:
        raise ExplainError(f"{name} must be in 0..{size - 1} for {where}, got {value!r}.")
    return int(value)


def _position(shape: tuple[int, ...], where: str, y, x, c, i) -> tuple[int, ...]:
    if len(shape) == 1:
        return (_index("i", i, shape[0], where),)
    return (
        _index("y", y, shape[0], where),
        _index("x", x, shape[1], where),
        _index("c", c, shape[2], where),
    )


def _delta(g: Gradients, index: int) -> np.ndarray:
    """dL/dz of a conv or dense layer (before its activation), float64."""
    return np.asarray(g.pre_activation_grads[index], dtype=np.float64)


def _from_conv(above: ConvLayer, g: Gradients, j: int, y: int, x: int, c: int) -> dict[str, Any]:
    """dL/da[y, x, c] = sum over k and the output cells (oy, ox) whose window covers (y, x) of
    W[k, fy, fx, c] * dz[oy, ox, k], with fy = y + P - oy*S, fx = x + P - ox*S: the full
    convolution of dz with the kernel turned 180 degrees."""
    dz = _delta(g, j)  # (Ho, Wo, K)
    w = above.weights.astype(np.float64)  # (K, F, F, C)
    f, s, p = above.kernel_size, above.stride, above.padding
    rows = []
    for oy in range(dz.shape[0]):
        fy = y + p - oy * s
        if not 0 <= fy < f:
            continue
        for ox in range(dz.shape[1]):
            fx = x + p - ox * s
            if not 0 <= fx < f:
                continue
            for k in range(dz.shape[2]):
                tap, delta = float(w[k, fy, fx, c]), float(dz[oy, ox, k])
                rows.append({"output": [oy, ox, k], "tap": [k, fy, fx, c], "weight": tap,
                             "delta": delta, "product": tap * delta})  # fmt: skip
    formula = (
        f"dL/da[{y},{x},{c}] = sum over k, (oy, ox) of W[k, fy, fx, {c}] * dL/dz[oy, ox, k], "
        f"fy = {y} + {p} - oy*{s}, fx = {x} + {p} - ox*{s}"
    )
    return {"formula": formula, "terms": _terms(rows), "rule": "conv"}


def _from_pool(above: Layer, g: Gradients, j: int, y: int, x: int, c: int) -> dict[str, Any]:
    """Max pool: the gradient of each window goes to the cell that won it (the first maximum);
    average pool: each window spreads delta / F^2 over its cells."""
    a = np.asarray(g.outputs[j - 1], dtype=np.float64)  # the pool's input (H, W, C)
    dy = np.asarray(g.output_grads[j], dtype=np.float64)  # (Ho, Wo, C)
    f, s, p = above.size, above.stride, above.padding  # type: ignore[attr-defined]
    rows = []
    for oy in range(dy.shape[0]):
        for ox in range(dy.shape[1]):
            top, left = oy * s - p, ox * s - p
            if not (top <= y < top + f and left <= x < left + f):
                continue
            if isinstance(above, AvgPoolLayer):
                share = 1.0 / (f * f)
                rows.append({"output": [oy, ox, c], "delta": float(dy[oy, ox, c]),
                             "share": share, "product": float(dy[oy, ox, c] * share)})  # fmt: skip
                continue
            window = a[max(top, 0) : top + f, max(left, 0) : left + f, c]
            winner = np.unravel_index(int(np.argmax(window)), window.shape)
            won = (max(top, 0) + int(winner[0]), max(left, 0) + int(winner[1])) == (y, x)
            rows.append({"output": [oy, ox, c], "delta": float(dy[oy, ox, c]), "won": bool(won),
                         "product": float(dy[oy, ox, c]) if won else 0.0})  # fmt: skip
    rule = "avgpool" if isinstance(above, AvgPoolLayer) else "maxpool"
    formula = (
        "dL/da = sum over the windows holding the cell of dL/dy / F^2"
        if rule == "avgpool"
        else "dL/da = sum over the windows this cell won of dL/dy (others get 0)"
    )
    return {"formula": formula, "terms": _terms(rows), "rule": rule}


def _from_global_pool(
    above: GlobalPoolLayer, g: Gradients, j: int, y: int, x: int, c: int
) -> dict[str, Any]:
    a = np.asarray(g.outputs[j - 1], dtype=np.float64)
    delta = float(g.output_grads[j][0, 0, c])
    h, w = a.shape[:2]
    if isinstance(above, GlobalMaxPoolLayer):
        winner = np.unravel_index(int(np.argmax(a[:, :, c])), (h, w))
        won = (int(winner[0]), int(winner[1])) == (y, x)
        row = {"output": [0, 0, c], "delta": delta, "won": won, "product": delta if won else 0.0}
        return {"formula": "dL/da = dL/dy where the cell is the channel's maximum, else 0",
                "terms": [row], "rule": "globalmaxpool"}  # fmt: skip
    share = 1.0 / (h * w)
    row = {"output": [0, 0, c], "delta": delta, "share": share, "product": delta * share}
    return {"formula": f"dL/da = dL/dy / (H*W) = dL/dy / {h * w}", "terms": [row],
            "rule": "globalavgpool"}  # fmt: skip


def _from_dense(above: DenseLayer, g: Gradients, j: int, i: int) -> dict[str, Any]:
    """dL/dx[i] = sum over units u of W[u, i] * dz[u] (dx = W^T delta)."""
    dz = _delta(g, j)  # (units,)
    column = above.weights[:, i].astype(np.float64)
    rows = [
        {"unit": u, "weight": float(column[u]), "delta": float(dz[u]),
         "product": float(column[u] * dz[u])}
        for u in range(dz.size)
    ]  # fmt: skip
    return {"formula": f"dL/dx[{i}] = sum over u of W[u, {i}] * dL/dz[u]", "terms": _terms(rows),
            "rule": "dense"}  # fmt: skip


def _output_value(network: Network, g: Gradients, index: int, pos: tuple[int, ...]) -> dict:
    """dL/d(output value of layer `index`) at pos, from the layer above (or the loss)."""
    j = index + 1
    if j == len(network.layers):
        value = float(g.output_grads[index][pos])
        t = g.target
        if g.loss == "score":
            formula = f"L = output[{t}], so dL/doutput[k] = 1 for k = {t}, else 0"
        else:
            formula = f"L = -log p[{t}], so dL/dp[k] = -1/p[{t}] for k = {t}, else 0"
        return {"formula": formula, "terms": [{"loss": g.loss, "product": value}], "rule": "loss"}
    above = network.layers[j]
    if isinstance(above, ConvLayer):
        return _from_conv(above, g, j, *pos)
    if isinstance(above, MaxPoolLayer | AvgPoolLayer):
        return _from_pool(above, g, j, *pos)
    if isinstance(above, GlobalPoolLayer):
        return _from_global_pool(above, g, j, *pos)
    if isinstance(above, DenseLayer):
        return _from_dense(above, g, j, pos[0])
    dy = np.asarray(g.output_grads[j], dtype=np.float64)
    if isinstance(above, ReluLayer):
        a = float(g.outputs[index][pos])
        passes = a > 0
        row = {"input": a, "passes": passes, "delta": float(dy[pos]),
               "product": float(dy[pos]) if passes else 0.0}  # fmt: skip
        return {"formula": "dL/da = dL/dy where a > 0, else 0", "terms": [row], "rule": "relu"}
    if isinstance(above, FlattenLayer):
        shape = g.outputs[index].shape
        flat = int(np.ravel_multi_index(pos, shape)) if len(shape) == 3 else pos[0]
        row = {"flat_index": flat, "delta": float(dy[flat]), "product": float(dy[flat])}
        formula = "dL/da[y, x, c] = dL/dflat[(y*W + x)*C + c]"
        return {"formula": formula, "terms": [row], "rule": "flatten"}
    raise ExplainError(f"No gradient rule for layer {j} ({above.type}).")  # pragma: no cover


def _weight(layer: Layer, g: Gradients, index: int, weight: tuple[int, ...]) -> dict:
    a = np.asarray(g.outputs[index - 1] if index > 0 else g.image, dtype=np.float64)
    dz = _delta(g, index)
    if isinstance(layer, DenseLayer):
        u, i = weight
        product = float(dz[u] * a[i])
        rows = [{"unit": u, "input": i, "input_value": float(a[i]), "delta": float(dz[u]),
                 "product": product}]  # fmt: skip
        return {"formula": f"dL/dW[{u},{i}] = dL/dz[{u}] * x[{i}]", "terms": rows}
    k, fy, fx, c = weight
    s, p = layer.stride, layer.padding  # type: ignore[attr-defined]
    h, w = a.shape[:2]
    rows = []
    for oy in range(dz.shape[0]):
        for ox in range(dz.shape[1]):
            yy, xx = oy * s + fy - p, ox * s + fx - p
            value = float(a[yy, xx, c]) if 0 <= yy < h and 0 <= xx < w else 0.0
            if value == 0.0:
                continue  # padding, or a zero input: no contribution
            delta = float(dz[oy, ox, k])
            rows.append({"output": [oy, ox, k], "input_at": [yy, xx, c], "input_value": value,
                         "delta": delta, "product": value * delta})  # fmt: skip
    formula = (
        f"dL/dW[{k},{fy},{fx},{c}] = sum over (oy, ox) of x_pad[oy*{s} + {fy}, ox*{s} + {fx}, "
        f"{c}] * dL/dz[oy, ox, {k}]"
    )
    return {"formula": formula, "terms": _terms(rows)}


def _bias(layer: Layer, g: Gradients, index: int, k: int) -> dict:
    dz = _delta(g, index)
    if isinstance(layer, DenseLayer):
        rows = [{"unit": k, "delta": float(dz[k]), "product": float(dz[k])}]
        return {"formula": f"dL/db[{k}] = dL/dz[{k}]", "terms": rows}
    rows = [
        {"output": [oy, ox, k], "delta": float(dz[oy, ox, k]), "product": float(dz[oy, ox, k])}
        for oy in range(dz.shape[0])
        for ox in range(dz.shape[1])
    ]
    return {"formula": f"dL/db[{k}] = sum over (oy, ox) of dL/dz[oy, ox, {k}]",
            "terms": _terms(rows)}  # fmt: skip


def explain_gradient(
    network: Network,
    g: Gradients,
    index: int,
    *,
    y: int | None = None,
    x: int | None = None,
    c: int | None = None,
    i: int | None = None,
    weight: tuple[int, ...] | None = None,
    bias: int | None = None,
) -> dict[str, Any]:
    """How dL/d(output (y, x, c) or i of layer `index`), dL/dW[weight] or dL/db[bias] was
    computed. Raises ExplainError for a bad layer index, position, weight or bias."""
    n = len(network.layers)
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < n:
        raise ExplainError(f"Layer index must be in 0..{n - 1}, got {index!r}.")
    layer = network.layers[index]
    where = f"layer {index} ({layer.type})"
    if weight is not None or bias is not None:
        if not isinstance(layer, ConvLayer | DenseLayer):
            raise ExplainError(f"{where} has no weights; ask for a conv or dense layer.")
        if weight is not None:
            shape = layer.weights.shape
            if len(weight) != len(shape):
                letters = "k,fy,fx,c" if len(shape) == 4 else "u,j"
                raise ExplainError(f"weight for {where} is {letters} (shape {list(shape)}).")
            pos = tuple(_index(f"weight[{d}]", v, s, where) for d, (v, s) in
                        enumerate(zip(weight, shape, strict=True)))  # fmt: skip
            out = _weight(layer, g, index, pos)
            value = float(g.weight_grads[index][pos])
            out.update(what="weight", weight=list(pos))
        else:
            k = _index("bias", bias, layer.bias.shape[0], where)
            out = _bias(layer, g, index, k)
            value = float(g.bias_grads[index][k])
            out.update(what="bias", bias=k)
    else:
        pos = _position(layer.output_shape, where, y, x, c, i)
        out = _output_value(network, g, index, pos)
        value = float(g.output_grads[index][pos])
        out.update(what="output", position=list(pos))
    return {"value": value, "layer": index, "type": layer.type, "loss": g.loss,
            "target": g.target, **out}  # fmt: skip
