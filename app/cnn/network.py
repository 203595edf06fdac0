"""One network for the explorer, saliency and the trainer: build, forward, backward, to_spec.

A Network is the layers of a checked spec (weights resolved: given, drawn from the seed, or a
preset kernel) and the shape report that describes them. The explorer runs one image through it
and keeps every layer's output; saliency and the trainer run batches forward and backward.

X : ndarray of shape (n_ex, height, width, channels), in the network's dtype
y : ndarray of shape (n_ex,), integer class labels in [0, n_classes)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from .errors import SpecError
from .im2col import softmax
from .kernels import he_normal, preset_weights
from .layers import (
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
from .shapes import LayerShape, ShapeReport, infer_shapes, resolve_padding, shape_text
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


def _array(given: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    return None if given is None else np.array(given, dtype=dtype)


def build_layer(
    spec: LayerSpec, shape: LayerShape, rng: np.random.Generator, dtype: np.dtype
) -> Layer:
    """The layer for a spec whose shapes infer_shapes has already checked.

    Random weights are drawn from `rng` only for conv ("he" init) and dense layers without given
    weights, so the draws happen in layer order and do not depend on dtype.
    """
    layer: Layer
    if isinstance(spec, ConvSpec):
        k, f, c = spec.filters, spec.kernel_size, shape.input_shape[2]
        weights = _array(spec.weights, dtype)
        if weights is None:
            drawn = (
                he_normal(rng, (k, f, f, c), fan_in=f * f * c)
                if spec.init == "he"
                else preset_weights(spec.init, k, f, c)
            )
            weights = drawn.astype(dtype, copy=False)
        bias = _array(spec.bias, dtype)
        layer = ConvLayer(
            weights,  # (K, F, F, C)
            np.zeros(k, dtype) if bias is None else bias,  # (K,)
            stride=spec.stride,
            padding=resolve_padding(spec.padding, f, spec.stride),
            activation=spec.activation,
        )
    elif isinstance(spec, DenseSpec):
        units, n = spec.units, shape.input_shape[0]
        weights = _array(spec.weights, dtype)
        if weights is None:
            weights = he_normal(rng, (units, n), fan_in=n).astype(dtype, copy=False)
        bias = _array(spec.bias, dtype)
        layer = DenseLayer(
            weights,  # (U, D)
            np.zeros(units, dtype) if bias is None else bias,  # (U,)
            activation=spec.activation,
        )
    elif isinstance(spec, PoolSpec):
        pool = MaxPoolLayer if spec.kind == "max" else AvgPoolLayer
        layer = pool(spec.size, spec.effective_stride, spec.padding)
    elif isinstance(spec, GlobalPoolSpec):
        layer = GlobalMaxPoolLayer() if spec.kind == "max" else GlobalAvgPoolLayer()
    elif isinstance(spec, FlattenSpec):
        layer = FlattenLayer()
    elif isinstance(spec, ReluSpec):
        layer = ReluLayer()
    else:
        raise TypeError(f"unknown layer spec {spec!r}")
    layer.spec, layer.shape = spec, shape
    return layer


class Network:
    """The built layers of a valid spec, with the shape report that describes them."""

    def __init__(
        self,
        spec: NetworkSpec,
        layers: list[Layer],
        report: ShapeReport,
        dtype: np.dtype = np.dtype(np.float32),
    ) -> None:
        self.spec = spec
        self.layers = layers
        self.report = report
        self.dtype = np.dtype(dtype)
        # dL/dx is only needed below the first layer with parameters: skip the first col2im.
        self._first_learner = next(
            (layer for layer in layers if isinstance(layer, ConvLayer | DenseLayer)), None
        )
        if self._first_learner is not None:
            self._first_learner.need_input_grad = False

    @property
    def input_shape(self) -> tuple[int, int, int]:
        inp = self.spec.input
        return (inp.height, inp.width, inp.channels)

    @property
    def n_classes(self) -> int:
        """Values in the last layer's output (the classes, for a classifier)."""
        return math.prod(self.layers[-1].output_shape) if self.layers else 0

    @property
    def ends_in_softmax(self) -> bool:
        last = self.layers[-1] if self.layers else None
        return isinstance(last, DenseLayer) and last.activation == "softmax"

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one image through every layer (the explorer).

        x : ndarray of shape (H, W, C) matching spec.input (converted to float32)
        Returns a list with each layer's output, (h, w, c) or (n,), float32.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            raise ValueError(
                f"Input of shape {shape_text(x.shape)} does not match the network input "
                f"{shape_text(self.input_shape)}."
            )
        outputs = [out[0] for out in self.forward_batch(x[None])]
        for layer in self.layers:
            layer.forget()
        return outputs

    def forward_batch(self, x: np.ndarray) -> list[np.ndarray]:
        """x (N, H, W, C) -> every layer's output, batched; each layer keeps what backward needs."""
        outputs = []
        out = x.astype(self.dtype, copy=False)
        for layer in self.layers:
            out = layer.forward(out)
            outputs.append(out)
        return outputs

    def logits(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> (N, n_classes): the last output, taken before a final softmax."""
        outputs = self.forward_batch(x)
        last = self.layers[-1]
        out = last.logits if self.ends_in_softmax else outputs[-1]  # type: ignore[attr-defined]
        return out.reshape(len(x), -1)

    def backward_logits(self, dlogits: np.ndarray) -> list[np.ndarray]:
        """dlogits (N, n_classes) after logits() -> the gradient at every layer's input, from the
        last layer down (grads[i] = dL/d(input of layer i)); fills every layer's grads.

        Stops early, with fewer entries, at the first layer with parameters when its dL/dx is not
        needed (need_input_grad False).
        """
        last = self.layers[-1]
        if self.ends_in_softmax:
            grad = last.backward_logits(dlogits)  # type: ignore[attr-defined]
        else:
            grad = last.backward(dlogits.reshape((len(dlogits), *last.output_shape)))
        grads = [grad]
        for layer in reversed(self.layers[:-1]):
            if grad.size == 0:  # the first layer with parameters: nothing below needs dL/dx
                break
            grad = layer.backward(grad)
            grads.append(grad)
        grads.reverse()
        return grads

    def loss_and_backward(
        self, x: np.ndarray, y: np.ndarray, weight: float = 1.0
    ) -> tuple[float, np.ndarray]:
        """weight * mean cross-entropy of x (B, H, W, C), y (B,), its gradients in every layer's
        grads, and the logits (B, K).

        Meanwhile the arrays passed between layers live in the layers' kept buffers: nothing
        here hands them out, and fresh multi-MB arrays every step cost page faults and cache
        misses (measured on the digits net: 7% of a step).
        """
        with self.training_step():
            logits = self.logits(x).copy()  # (B, K): a buffer if the last layer is not dense
            loss, dlogits = softmax_cross_entropy(logits, y)
            if weight != 1.0:
                dlogits *= weight
            self.backward_logits(dlogits)
        return loss * weight, logits

    @contextlib.contextmanager
    def training_step(self) -> Iterator[None]:
        """Within: layers pass arrays in kept buffers, and a max pool right above a conv with
        relu applies that relu's mask for it, on 4x fewer cells (the parameter gradients are the
        same; only the gradients at layer outputs, which gradients() reports, would differ)."""
        pairs = [
            (conv, pool)
            for conv, pool in zip(self.layers, self.layers[1:], strict=False)
            if isinstance(conv, ConvLayer) and conv.relu and isinstance(pool, MaxPoolLayer)
        ]
        for layer in self.layers:
            layer.reuse_outputs = True
        for conv, pool in pairs:
            conv.relu_done_above = pool.drop_dead_windows = True
        try:
            yield
        finally:
            for layer in self.layers:
                layer.reuse_outputs = False
            for conv, pool in pairs:
                conv.relu_done_above = pool.drop_dead_windows = False

    def gradients(
        self, x: np.ndarray, target: int
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Gradients of the target class's score (the logit before a final softmax).

        x : ndarray of shape (N, H, W, C)
        Returns (outputs, output_grads, input_grad): every layer's batched output (a final
        softmax layer gives its logits), the gradient of score[target] with respect to each of
        those outputs (same shapes), and the gradient with respect to x (N, H, W, C). Leaves
        the parameters' grads changed.
        """
        if not 0 <= target < self.n_classes:
            raise ValueError(f"target must be a class index in 0..{self.n_classes - 1}")
        outputs = self.forward_batch(x)
        if self.ends_in_softmax:
            outputs[-1] = self.layers[-1].logits  # type: ignore[attr-defined]
        dscore = np.zeros((len(x), self.n_classes), dtype=self.dtype)
        dscore[:, target] = 1.0
        first = self._first_learner
        if first is not None:
            first.need_input_grad = True
        try:
            grads = self.backward_logits(dscore)  # grads[i] = d/d(input of layer i)
        finally:
            if first is not None:
                first.need_input_grad = False
        output_grads = [*grads[1:], dscore.reshape(outputs[-1].shape)]
        return outputs, output_grads, grads[0]

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """x (N, H, W, C) -> class probabilities (N, n_classes), in batches."""
        parts = [softmax(self.logits(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_classes), self.dtype)

    def param_groups(self) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """(params, grads) of every layer that learns, in layer order (for the optimisers)."""
        return [(layer.params, layer.grads) for layer in self.layers if layer.params]

    def replica(self) -> Network:
        """Another set of layers over the SAME parameter arrays, with their own caches and
        grads: for a second thread, or a request that must not share a cached network's state."""
        twin = object.__new__(Network)
        twin.__dict__.update(self.__dict__)
        twin.layers = [layer.replica() for layer in self.layers]
        index = self.layers.index(self._first_learner) if self._first_learner else None
        twin._first_learner = None if index is None else twin.layers[index]
        return twin

    def to_spec(self) -> NetworkSpec:
        """The spec with every conv/dense layer's current weights and bias (float32 copies)."""
        layers = []
        for layer_spec, layer in zip(self.spec.layers, self.layers, strict=True):
            if isinstance(layer_spec, ConvSpec | DenseSpec):
                layer_spec = replace(
                    layer_spec,
                    weights=layer.params["weights"].astype(np.float32),
                    bias=layer.params["bias"].astype(np.float32),
                )
                if isinstance(layer_spec, ConvSpec):
                    layer_spec = replace(layer_spec, init="he")  # weights given: init is moot
            layers.append(layer_spec)
        return replace(self.spec, layers=tuple(layers))


def build_network(
    spec: NetworkSpec, dtype: type | np.dtype = np.float32, *, report: ShapeReport | None = None
) -> Network:
    """Check the spec and build its layers; weights not given come from spec.seed.

    report : infer_shapes(spec), when the caller has already checked the spec (so a request
        infers its shapes once); None infers them here.
    Raises SpecError(report.issues) when the network is impossible.
    """
    if report is None:
        report = infer_shapes(spec)
    if not report.valid:
        raise SpecError(report.issues)
    rng = np.random.default_rng(spec.seed)
    dtype = np.dtype(dtype)
    layers = [
        build_layer(layer, shape, rng, dtype)
        for layer, shape in zip(spec.layers, report.layers, strict=True)
    ]
    return Network(spec, layers, report, dtype)


def estimate_activation_bytes(report: ShapeReport) -> int:
    """Bytes a forward pass holds at its peak: the float32 input, every layer's output, plus the
    largest temporary buffer one layer needs (a padded copy of its input and one im2col chunk).

    For a memory limit; weights are extra (4 * report.total_params bytes).
    """
    cells = int(np.prod(report.input_shape)) if report.input_shape else 0
    cells += sum(int(np.prod(s.output_shape)) for s in report.layers)
    scratch = max((s.scratch_bytes for s in report.layers), default=0)
    return 4 * cells + scratch
