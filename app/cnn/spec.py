"""The engine's own vocabulary: frozen dataclasses describing a network.

Specs hold what a person asked for, unchecked; shapes.infer_shapes says whether it can be built.
Arrays in specs (given weights) are excluded from equality and hashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """The image entering the network: height x width x channels."""

    height: int
    width: int
    channels: int


@dataclass(frozen=True)
class ConvSpec:
    """K filters of size F x F sliding with a stride over a zero-padded input.

    weights : ndarray of shape (K, F, F, C) or None (drawn from the seed, or a preset by `init`)
    bias : ndarray of shape (K,) or None (zeros)
    padding : an int, "same" ((F - 1) / 2, odd F with stride 1) or "valid" (0)
    """

    filters: int
    kernel_size: int
    stride: int = 1
    padding: int | str = 0
    activation: str = "relu"
    weights: np.ndarray | None = field(default=None, compare=False, repr=False)
    bias: np.ndarray | None = field(default=None, compare=False, repr=False)
    init: str = "he"
    type: ClassVar[str] = "conv"


@dataclass(frozen=True)
class ReluSpec:
    """max(x, 0), element by element; keeps the shape."""

    type: ClassVar[str] = "relu"


@dataclass(frozen=True)
class PoolSpec:
    """Max or average over size x size windows; stride defaults to size."""

    kind: str
    size: int
    stride: int | None = None
    padding: int = 0

    @property
    def type(self) -> str:
        return f"{self.kind}pool"

    @property
    def effective_stride(self) -> int | None:
        return self.size if self.stride is None else self.stride


@dataclass(frozen=True)
class GlobalPoolSpec:
    """Max or average over the whole height x width of each channel: (H, W, C) -> (1, 1, C)."""

    kind: str

    @property
    def type(self) -> str:
        return f"global{self.kind}pool"


@dataclass(frozen=True)
class FlattenSpec:
    """(H, W, C) -> (H * W * C,), row-major with the channel fastest: i = (y * W + x) * C + c."""

    type: ClassVar[str] = "flatten"


@dataclass(frozen=True)
class DenseSpec:
    """z = W x + b on a flat input, then an activation ("none", "relu" or "softmax").

    weights : ndarray of shape (units, inputs) or None (drawn from the seed)
    bias : ndarray of shape (units,) or None (zeros)
    """

    units: int
    activation: str = "none"
    weights: np.ndarray | None = field(default=None, compare=False, repr=False)
    bias: np.ndarray | None = field(default=None, compare=False, repr=False)
    type: ClassVar[str] = "dense"


LayerSpec = ConvSpec | ReluSpec | PoolSpec | GlobalPoolSpec | FlattenSpec | DenseSpec


@dataclass(frozen=True)
class NetworkSpec:
    """An input and a stack of layers; `seed` fixes every weight that is not given."""

    input: InputSpec
    layers: tuple[LayerSpec, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        # Accept a list for convenience; store a tuple so the spec stays immutable and hashable.
        object.__setattr__(self, "layers", tuple(self.layers))
