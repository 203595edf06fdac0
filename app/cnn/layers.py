"""One small class per layer kind: resolved weights and forward(), shapes from shapes.py.

Every forward takes and returns float32 arrays, (H, W, C) for images and (n,) for flat vectors,
and never changes its input in place (the network keeps every layer's output).
"""

from __future__ import annotations

import numpy as np

from .im2col import conv2d, pool2d, relu, relu_, softmax
from .kernels import he_normal, preset_weights
from .shapes import LayerShape, resolve_padding
from .spec import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    LayerSpec,
    PoolSpec,
    ReluSpec,
)


class Layer:
    """What every layer has: its spec, its place and its shapes (checked by infer_shapes)."""

    def __init__(self, spec: LayerSpec, shape: LayerShape) -> None:
        self.spec = spec
        self.index = shape.index
        self.type = shape.type
        self.input_shape = shape.input_shape
        self.output_shape = shape.output_shape
        self.params = shape.params

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class ConvLayer(Layer):
    """K filters over a zero-padded (H, W, C) input -> (Ho, Wo, K), then ReLU unless "none".

    weights : ndarray of shape (K, F, F, C), float32
    bias : ndarray of shape (K,), float32
    """

    def __init__(self, spec: ConvSpec, shape: LayerShape, rng: np.random.Generator) -> None:
        super().__init__(spec, shape)
        k, f, c = spec.filters, spec.kernel_size, shape.input_shape[2]
        self.kernel_size = f
        self.stride = spec.stride
        self.padding = resolve_padding(spec.padding, f, spec.stride)
        self.activation = spec.activation
        if spec.weights is not None:
            self.weights = np.array(spec.weights, dtype=np.float32)
        elif spec.init == "he":
            self.weights = he_normal(rng, (k, f, f, c), fan_in=f * f * c)
        else:
            self.weights = preset_weights(spec.init, k, f, c)
        self.bias = (
            np.zeros(k, np.float32) if spec.bias is None else np.array(spec.bias, np.float32)
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x : ndarray of shape (H, W, C) -> ndarray of shape (Ho, Wo, K)."""
        z = conv2d(x, self.weights, self.bias, self.stride, self.padding)
        return relu_(z) if self.activation == "relu" else z


class ReluLayer(Layer):
    """max(x, 0) element by element; any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return relu(np.asarray(x, dtype=np.float32))


class PoolLayer(Layer):
    """Max or average over size x size windows: (H, W, C) -> (Ho, Wo, C)."""

    def __init__(self, spec: PoolSpec, shape: LayerShape) -> None:
        super().__init__(spec, shape)
        self.kind = spec.kind
        self.size = spec.size
        self.stride = spec.effective_stride
        self.padding = spec.padding

    def forward(self, x: np.ndarray) -> np.ndarray:
        return pool2d(x, self.size, self.stride, self.padding, self.kind)


class GlobalPoolLayer(Layer):
    """Max or average over all of height x width: (H, W, C) -> (1, 1, C)."""

    def __init__(self, spec: GlobalPoolSpec, shape: LayerShape) -> None:
        super().__init__(spec, shape)
        self.kind = spec.kind

    def forward(self, x: np.ndarray) -> np.ndarray:
        reduce = np.max if self.kind == "max" else np.mean
        return reduce(x, axis=(0, 1), keepdims=True).astype(np.float32, copy=False)


class FlattenLayer(Layer):
    """(H, W, C) -> (H * W * C,), row-major with the channel fastest: i = (y * W + x) * C + c."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(-1).copy()


class DenseLayer(Layer):
    """z = W x + b on a flat input, then "none", "relu" or "softmax".

    weights : ndarray of shape (units, inputs), float32
    bias : ndarray of shape (units,), float32
    """

    def __init__(self, spec: DenseSpec, shape: LayerShape, rng: np.random.Generator) -> None:
        super().__init__(spec, shape)
        units, n = spec.units, shape.input_shape[0]
        self.activation = spec.activation
        if spec.weights is not None:
            self.weights = np.array(spec.weights, dtype=np.float32)
        else:
            self.weights = he_normal(rng, (units, n), fan_in=n)
        self.bias = (
            np.zeros(units, np.float32) if spec.bias is None else np.array(spec.bias, np.float32)
        )

    def pre_activation(self, x: np.ndarray) -> np.ndarray:
        """x : ndarray of shape (inputs,) -> z = W x + b of shape (units,)."""
        return self.weights @ x + self.bias

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = self.pre_activation(x)
        if self.activation == "softmax":
            return softmax(z)
        return relu_(z) if self.activation == "relu" else z


def build_layer(spec: LayerSpec, shape: LayerShape, rng: np.random.Generator) -> Layer:
    """The layer object for a spec whose shapes infer_shapes has already checked.

    Random weights are drawn from `rng` only for conv ("he" init) and dense layers without given
    weights, so the draws happen in layer order.
    """
    if isinstance(spec, ConvSpec):
        return ConvLayer(spec, shape, rng)
    if isinstance(spec, DenseSpec):
        return DenseLayer(spec, shape, rng)
    if isinstance(spec, PoolSpec):
        return PoolLayer(spec, shape)
    if isinstance(spec, GlobalPoolSpec):
        return GlobalPoolLayer(spec, shape)
    if isinstance(spec, FlattenSpec):
        return FlattenLayer(spec, shape)
    if isinstance(spec, ReluSpec):
        return ReluLayer(spec, shape)
    raise TypeError(f"unknown layer spec {spec!r}")
