"""Output-size and parameter arithmetic, with the human explanation of each result.

The one source of truth for shapes: layers.py and the web layer read these reports; nothing
recomputes them. Sizes are [height, width, channels] for images and [n] for flat vectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Integral

import numpy as np

from . import im2col
from .errors import DROP_WEIGHTS, Fix, LayerIssue, SpecError
from .kernels import PRESET_KERNELS
from .spec import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    LayerSpec,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
)

Shape = tuple[int, ...]
_Step = tuple["LayerShape | None", list[LayerIssue]]


def output_size(n: int, f: int, p: int, s: int) -> Fraction:
    """Exact (N - F + 2P)/S + 1; a layer is possible only when this is a whole number >= 1."""
    return Fraction(n - f + 2 * p, s) + 1


def conv_params(f: int, d: int, k: int) -> int:
    """(F*F*D + 1)*K: K filters of F x F x D weights, plus one bias each."""
    return (f * f * d + 1) * k


def dense_params(inputs: int, units: int) -> int:
    """(inputs + 1)*units: a weight per input and a bias, for every unit."""
    return (inputs + 1) * units


def resolve_padding(padding: int | str, f: int, stride: int) -> int:
    """Padding as a number: "same" -> (F-1)/2 (odd F, stride 1 only), "valid" -> 0.

    Raises SpecError (layer None, field "padding") when "same" cannot keep the size.
    """
    if not isinstance(padding, str):
        return padding
    if padding == "valid":
        return 0
    if padding != "same":
        msg = f"padding {padding!r} is not a number, 'same' or 'valid'."
        hint = "Use a whole number >= 0, 'same' or 'valid'."
        raise SpecError([LayerIssue(None, "padding", msg, hint)])
    if f % 2 == 0:
        msg = f"'same' padding needs an odd kernel_size: (F-1)/2 = ({f} - 1)/2 = {(f - 1) / 2}."
        hint = f"Use kernel_size {f - 1} or {f + 1}."
        raise SpecError([LayerIssue(None, "padding", msg, hint, Fix.set_to("kernel_size", f + 1))])
    if stride != 1:
        msg = f"'same' padding keeps the size only with stride 1, not stride {stride}."
        hint = f"Use stride 1, or write padding {(f - 1) // 2} as a number."
        raise SpecError([LayerIssue(None, "padding", msg, hint, Fix.set_to("stride", 1))])
    return (f - 1) // 2


@dataclass(frozen=True)
class LayerShape:
    """One layer's shapes and parameters, with the arithmetic that produced them."""

    index: int
    type: str
    input_shape: Shape
    output_shape: Shape
    params: int
    formula: str
    scratch_bytes: int = 0  # addition: temporary memory of forward (padded copy, im2col chunk)


@dataclass(frozen=True)
class ShapeReport:
    """The shapes of a network up to its first impossible layer.

    input_shape (an addition to the contract): (H, W, C) of the image, () if the input is invalid.
    """

    valid: bool
    layers: list[LayerShape]
    total_params: int
    issues: list[LayerIssue]
    input_shape: Shape = field(default=())


def shape_text(shape: Shape) -> str:
    """(32, 32, 10) -> "32x32x10"; (48,) -> "48"."""
    return "x".join(str(n) for n in shape)


def arithmetic(n: int, f: int, p: int, s: int) -> str:
    """The output-size formula with numbers: "(7 - 3 + 2*0)/5 + 1 = 1.8"."""
    v = output_size(n, f, p, s)
    value = str(v.numerator) if v.denominator == 1 else f"{float(v):.3f}".rstrip("0").rstrip(".")
    return f"({n} - {f} + 2*{p})/{s} + 1 = {value}"


# Suggestion searches look at this many candidates at most, so absurd specs stay cheap to refuse.
SEARCH_LIMIT = 256


def _fits(sizes: tuple[int, ...], f: int, p: int, s: int) -> bool:
    return all(n + 2 * p >= f and (n - f + 2 * p) % s == 0 for n in sizes)


def fitting_strides(sizes: tuple[int, ...], f: int, p: int) -> list[int]:
    """Strides that divide N - F + 2P for every size in `sizes` (ascending)."""
    top = min(SEARCH_LIMIT, max([1] + [n - f + 2 * p for n in sizes]))
    return [s for s in range(1, top + 1) if _fits(sizes, f, p, s)]


def fitting_paddings(sizes: tuple[int, ...], f: int, s: int, max_p: int) -> list[int]:
    """Paddings 0..max_p giving a whole output size >= 1 for every size in `sizes` (ascending)."""
    return [p for p in range(min(max_p, SEARCH_LIMIT) + 1) if _fits(sizes, f, p, s)]


def fitting_kernel_sizes(sizes: tuple[int, ...], p: int, s: int, pool: bool = False) -> list[int]:
    """Window sizes giving a whole output size >= 1 for every size (largest first).
    Pooling windows also need padding <= size/2."""
    top = min(sizes) + 2 * p
    return [
        f
        for f in range(top, max(0, top - SEARCH_LIMIT), -1)
        if _fits(sizes, f, p, s) and not (pool and 2 * p > f)
    ]


def _or_list(values: list) -> str:
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def size_advice(sizes: tuple[int, int], f: int, p: int, s: int, max_p: int, same_hint: bool) -> str:
    """What to change when (N - F + 2P)/S + 1 is not whole: strides and paddings that fit."""
    strides = [v for v in fitting_strides(sizes, f, p) if v != s][:4]
    pads = [v for v in fitting_paddings(sizes, f, s, max_p) if v != p][:2]
    parts = [f"stride {_or_list(strides)}"] if strides else []
    if pads:
        parts.append(f"keep stride {s} with padding {_or_list(pads)}")
    text = "Use " + ", or ".join(parts) + "." if parts else ""
    if same_hint and f % 2 == 1:
        text += (
            f" Padding (F-1)/2 = {(f - 1) // 2} with stride 1 keeps the size {sizes[0]}x{sizes[1]}."
        )
    return text.strip()


def _whole(v: object, minimum: int) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool) and v >= minimum


def layer_name(index: int, layer: object) -> str:
    """ "Layer 2 (conv)"; indices count from 0 like spec.layers and the shapes table."""
    if isinstance(layer, PoolSpec | GlobalPoolSpec) and layer.kind not in ("max", "avg"):
        return f"Layer {index} ({'global ' if isinstance(layer, GlobalPoolSpec) else ''}pool)"
    return f"Layer {index} ({getattr(layer, 'type', type(layer).__name__)})"


def field_issues(index: int, layer: object) -> list[LayerIssue]:
    """Problems visible without knowing the input shape: counts, kinds, names."""
    name = layer_name(index, layer)
    out: list[LayerIssue] = []

    def need_whole(fld: str, minimum: int) -> None:
        v = getattr(layer, fld)
        if not _whole(v, minimum):
            msg = f"{name}: {fld} must be a whole number >= {minimum}, got {v!r}."
            out.append(LayerIssue(index, fld, msg, f"Use {fld} {max(minimum, 1)} or more."))

    def need_choice(fld: str, choices: tuple[str, ...]) -> None:
        v = getattr(layer, fld)
        if v not in choices:
            listed = _or_list([repr(c) for c in choices])
            out.append(LayerIssue(index, fld, f"{name}: {fld} {v!r} is not {listed}.",
                                  f"Use {fld} {listed}."))  # fmt: skip

    if isinstance(layer, ConvSpec):
        need_whole("filters", 1)
        need_whole("kernel_size", 1)
        need_whole("stride", 1)
        if not (_whole(layer.padding, 0) or layer.padding in ("same", "valid")):
            msg = f"{name}: padding must be a whole number >= 0, 'same' or 'valid', "
            hint = "Use padding 0, or 'same' for an odd kernel_size with stride 1."
            out.append(LayerIssue(index, "padding", msg + f"got {layer.padding!r}.", hint))
        need_choice("activation", ("relu", "none"))
        if layer.weights is None and layer.init != "he" and layer.init not in PRESET_KERNELS:
            msg = f"{name}: unknown init {layer.init!r}."
            hint = f"Use 'he' or a preset kernel: {', '.join(sorted(PRESET_KERNELS))}."
            out.append(LayerIssue(index, "init", msg, hint, Fix.set_to("init", "he")))
        elif layer.weights is None and layer.init != "he" and layer.kernel_size != 3:
            msg = f"{name}: the preset kernel {layer.init!r} is 3x3 but kernel_size is "
            hint = "Use kernel_size 3 with a preset kernel, or init 'he'."
            fix = Fix.set_to("kernel_size", 3)
            out.append(LayerIssue(index, "kernel_size", msg + f"{layer.kernel_size!r}.", hint, fix))
    elif isinstance(layer, PoolSpec):
        need_choice("kind", ("max", "avg"))
        need_whole("size", 1)
        if layer.stride is not None:
            need_whole("stride", 1)
        need_whole("padding", 0)
    elif isinstance(layer, GlobalPoolSpec):
        need_choice("kind", ("max", "avg"))
    elif isinstance(layer, DenseSpec):
        need_whole("units", 1)
        need_choice("activation", ("none", "relu", "softmax"))
    elif not isinstance(layer, ReluSpec | FlattenSpec):
        hint = "Use conv, relu, maxpool, avgpool, globalmaxpool, globalavgpool, flatten or dense."
        out.append(LayerIssue(index, "type", f"{name}: unknown layer kind.", hint))
    return out


def _array_issues(
    index: int, name: str, what: str, given: object, expected: Shape, letters: str
) -> list[LayerIssue]:
    """Given weights or bias must have exactly the expected shape and finite values."""
    if given is None:
        return []
    try:
        arr = np.asarray(given, dtype=np.float64)
    except (ValueError, TypeError):
        msg = f"{name}: {what} is not a rectangular array of numbers."
        hint = f"Give {what} of shape {letters} = {expected}."
        return [LayerIssue(index, what, msg, hint, DROP_WEIGHTS)]
    if arr.shape != expected:
        msg = f"{name}: {what} have shape {arr.shape} but {letters} = {expected} is needed."
        hint = f"Give {what} of shape {expected}, or leave them out to draw them from the seed."
        return [LayerIssue(index, what, msg, hint, DROP_WEIGHTS)]
    if not np.all(np.isfinite(arr)):
        msg = f"{name}: {what} contain NaN or infinite values."
        return [LayerIssue(index, what, msg, f"Give finite {what}.", DROP_WEIGHTS)]
    return []


def _needs_3d(index: int, name: str, shape: Shape) -> list[LayerIssue]:
    if len(shape) == 3:
        return []
    msg = f"{name}: needs a 3D input [h, w, c] but gets a flat [{shape_text(shape)}]."
    return [LayerIssue(index, None, msg, "Move it before the flatten layer.")]


def _smaller_window(
    layer: ConvSpec | PoolSpec, sizes: tuple[int, int], p: int, s: int, fitting: list[int]
) -> Fix:
    """The window side to use when F > N + 2P: the largest that fits (`fitting`, searched with
    stride s), else the padded input's smaller side. A pool without a stride moves by its
    size, so there the size must also fit as the stride, and the fix writes both."""
    room = min(sizes) + 2 * p
    if isinstance(layer, PoolSpec) and layer.stride is None:
        sides = range(room, max(0, room - SEARCH_LIMIT), -1)
        side = next((v for v in sides if 2 * p <= v and _fits(sizes, v, p, v)), room)
        return Fix.setting(f"set size to {side}", size=side, stride=side)
    f_field = "kernel_size" if isinstance(layer, ConvSpec) else "size"
    return Fix.set_to(f_field, fitting[0] if fitting else room)


def _window_layer(index: int, layer: ConvSpec | PoolSpec, shape: Shape) -> _Step:
    """Conv and pooling: check the window against both height and width."""
    name = layer_name(index, layer)
    is_conv = isinstance(layer, ConvSpec)
    if found := _needs_3d(index, name, shape):
        return None, found
    h, w, c = shape
    f = layer.kernel_size if is_conv else layer.size
    s = layer.stride if is_conv else layer.effective_stride
    f_field = "kernel_size" if is_conv else "size"
    try:
        p = resolve_padding(layer.padding, f, s)
    except SpecError as e:
        return None, [LayerIssue(index, i.field, f"{name}: {i.message}", i.suggestion, i.fix)
                      for i in e.issues]  # fmt: skip
    max_p = f - 1 if is_conv else f // 2  # suggest no padding that makes all-padding windows
    if not is_conv and p > max_p:
        good = fitting_paddings((h, w), f, s, max_p)
        hint = f"Use padding {good[0]}." if good else f"Use padding at most {max_p}."
        msg = f"{name}: padding {p} is more than half the window size {f} (at most {max_p})."
        fix = Fix.set_to("padding", good[0] if good else max_p)
        return None, [LayerIssue(index, "padding", msg, hint, fix)]
    if f > h + 2 * p or f > w + 2 * p:
        dim, n = ("height", h) if h <= w else ("width", w)
        ks = fitting_kernel_sizes((h, w), p, s, pool=not is_conv)[:1]
        ps = [v for v in fitting_paddings((h, w), f, s, max_p) if v > p][:1]
        fixes = [f"{f_field} {v}" for v in ks] + [f"padding {v}" for v in ps]
        msg = (f"{name}: the {f}x{f} window is larger than the padded input "
               f"{h + 2 * p}x{w + 2 * p} ({dim} {n} + 2*{p} = {n + 2 * p}).")  # fmt: skip
        hint = "Use " + " or ".join(fixes) + "." if fixes else None
        fix = _smaller_window(layer, (h, w), p, s, ks)
        return None, [LayerIssue(index, f_field, msg, hint, fix)]
    sizes = [output_size(n, f, p, s) for n in (h, w)]
    bad = [(d, n) for d, n, v in zip(("height", "width"), (h, w), sizes, strict=True)
           if v.denominator != 1]  # fmt: skip
    if bad:
        if h == w:
            what = f"output size {arithmetic(h, f, p, s)} is not a whole number"
        elif len(bad) == 1:
            what = f"output {bad[0][0]} {arithmetic(bad[0][1], f, p, s)} is not a whole number"
        else:
            what = (f"output height {arithmetic(h, f, p, s)} and width "
                    f"{arithmetic(w, f, p, s)} are not whole numbers")  # fmt: skip
        hint = size_advice((h, w), f, p, s, max_p, same_hint=is_conv)
        # The largest stride up to the one asked for that divides both spans N - F + 2P (1 does).
        stride = max(v for v in [1, *fitting_strides((h, w), f, p)] if v <= s)
        fix = Fix.set_to("stride", stride)
        return None, [LayerIssue(index, "stride", f"{name}: {what}.", hint, fix)]
    ho, wo = int(sizes[0]), int(sizes[1])
    formula = arithmetic(h, f, p, s)
    if h != w:
        formula = f"height {formula}, width {arithmetic(w, f, p, s)}"
    padded_bytes = 4 * (h + 2 * p) * (w + 2 * p) * c if p else 0
    if not is_conv:
        out = (ho, wo, c)
        return LayerShape(index, layer.type, shape, out, 0, f"{formula} -> {ho}x{wo}x{c}",
                          padded_bytes), []  # fmt: skip
    k = layer.filters
    issues = _array_issues(index, name, "weights", layer.weights, (k, f, f, c), "(K, F, F, C)")
    issues += _array_issues(index, name, "bias", layer.bias, (k,), "(K,)")
    params = conv_params(f, c, k)
    formula += f" -> {ho}x{wo}x{k}; params ({f}*{f}*{c} + 1)*{k} = {params}"
    row_bytes = 4 * wo * f * f * c  # one output row of the im2col matrix
    chunk_bytes = row_bytes * max(1, min(ho, im2col.IMAGE_COLUMN_BUDGET_BYTES // row_bytes))
    scratch = padded_bytes + chunk_bytes
    return LayerShape(index, "conv", shape, (ho, wo, k), params, formula, scratch), issues


def _layer_shape(index: int, layer: LayerSpec, shape: Shape) -> _Step:
    """Infer one layer's output shape from its input shape, or say why it is impossible."""
    name = layer_name(index, layer)
    if isinstance(layer, ConvSpec | PoolSpec):
        return _window_layer(index, layer, shape)
    if isinstance(layer, ReluSpec):
        return LayerShape(index, "relu", shape, shape, 0, f"same shape {shape_text(shape)}"), []
    if isinstance(layer, GlobalPoolSpec):
        if found := _needs_3d(index, name, shape):
            return None, found
        out = (1, 1, shape[2])
        formula = f"{shape_text(shape)} -> {shape_text(out)}"
        return LayerShape(index, layer.type, shape, out, 0, formula), []
    product = "*".join(map(str, shape))
    n = int(np.prod(shape))
    if isinstance(layer, FlattenSpec):
        formula = f"{product} = {n}" if len(shape) > 1 else f"already flat: {n}"
        return LayerShape(index, "flatten", shape, (n,), 0, formula), []
    assert isinstance(layer, DenseSpec)
    if len(shape) != 1:
        msg = f"{name}: needs a flat input [n] but gets {shape_text(shape)}."
        hint = f"Add a flatten layer before it (it would give {product} = {n} inputs)."
        fix = Fix.inserting("add a flatten layer before it", type="flatten")
        return None, [LayerIssue(index, None, msg, hint, fix)]
    u = layer.units
    issues = _array_issues(index, name, "weights", layer.weights, (u, n), "(units, inputs)")
    issues += _array_issues(index, name, "bias", layer.bias, (u,), "(units,)")
    params = dense_params(n, u)
    formula = f"({n} + 1)*{u} = {params} params"
    return LayerShape(index, "dense", shape, (u,), params, formula), issues


def infer_shapes(spec: NetworkSpec) -> ShapeReport:
    """Every layer's shapes, or the problems that make the network impossible.

    Never raises for arithmetic problems. Shapes stop at the first impossible layer; problems
    that need no shape (a zero filter count, an unknown preset) are reported for every layer.
    """
    issues: list[LayerIssue] = []
    inp = spec.input
    for fld in ("height", "width", "channels"):
        v = getattr(inp, fld)
        if not _whole(v, 1):
            msg = f"Input: {fld} must be a whole number >= 1, got {v!r}."
            issues.append(LayerIssue(None, fld, msg, f"Use {fld} 1 or more."))
    if not _whole(spec.seed, 0):
        msg = f"seed must be a whole number >= 0, got {spec.seed!r}."
        issues.append(LayerIssue(None, "seed", msg, "Use seed 0 or any positive whole number."))
    per_layer = [field_issues(i, layer) for i, layer in enumerate(spec.layers)]
    if any(i.field != "seed" for i in issues):
        return ShapeReport(False, [], 0, issues + [i for found in per_layer for i in found])
    shape: Shape = (inp.height, inp.width, inp.channels)
    shapes: list[LayerShape] = []
    for i, layer in enumerate(spec.layers):
        if per_layer[i]:
            break
        result, per_layer[i] = _layer_shape(i, layer, shape)
        if per_layer[i] or result is None:
            break
        shapes.append(result)
        shape = result.output_shape
    issues += [i for found in per_layer for i in found]
    total = sum(s.params for s in shapes)
    return ShapeReport(not issues, shapes, total, issues, (inp.height, inp.width, inp.channels))


__all__ = [
    "LayerShape",
    "ShapeReport",
    "arithmetic",
    "conv_params",
    "dense_params",
    "field_issues",
    "fitting_kernel_sizes",
    "fitting_paddings",
    "fitting_strides",
    "infer_shapes",
    "layer_name",
    "output_size",
    "resolve_padding",
    "shape_text",
    "size_advice",
]
