"""The CNN engine: pure NumPy, float32 (H, W, C) arrays, no HTTP, no images, no I/O."""

from .errors import ExplainError, LayerIssue, SpecError
from .explain import explain
from .im2col import conv2d, pool2d, relu, relu_, softmax
from .kernels import PRESET_KERNELS, he_normal, preset_weights
from .layers import (
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    GlobalPoolLayer,
    Layer,
    PoolLayer,
    ReluLayer,
    build_layer,
)
from .network import Network, build_network, estimate_activation_bytes
from .shapes import (
    LayerShape,
    ShapeReport,
    conv_params,
    dense_params,
    infer_shapes,
    output_size,
    resolve_padding,
)
from .spec import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    InputSpec,
    LayerSpec,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
)

__all__ = [
    "PRESET_KERNELS",
    "ConvLayer",
    "ConvSpec",
    "DenseLayer",
    "DenseSpec",
    "ExplainError",
    "FlattenLayer",
    "FlattenSpec",
    "GlobalPoolLayer",
    "GlobalPoolSpec",
    "InputSpec",
    "Layer",
    "LayerIssue",
    "LayerShape",
    "LayerSpec",
    "Network",
    "NetworkSpec",
    "PoolLayer",
    "PoolSpec",
    "ReluLayer",
    "ReluSpec",
    "ShapeReport",
    "SpecError",
    "build_layer",
    "build_network",
    "conv2d",
    "conv_params",
    "dense_params",
    "estimate_activation_bytes",
    "explain",
    "he_normal",
    "infer_shapes",
    "output_size",
    "pool2d",
    "preset_weights",
    "relu",
    "relu_",
    "resolve_padding",
    "softmax",
]
