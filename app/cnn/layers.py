"""One class per layer kind, forward and backward side by side, on a batch.

Activations are (N, H, W, C) (a batch of images) or (N, D) (a batch of flat vectors); the
explorer's single image is a batch of one. Every layer works in the dtype of its input: float64
for gradient checks, float32 otherwise. `forward` keeps what `backward` needs; `backward(dy)`
returns dL/dx and fills `.grads` for layers with parameters (`.params` and `.grads` are dicts with
the same keys, arrays of the same shapes).

Conventions: conv weights are (K, F, F, C) cross-correlated with a zero-padded input, max
pooling pads with -inf, average pooling counts pads as zeros (count_include_pad), flatten is
row-major with channel fastest (i = (y * W + x) * C + c), dense is z = W x + b.

A batch of one float32 image goes through the single-image kernels of im2col.py (conv2d, pool2d),
which are tuned for one image; larger batches through im2col columns of a few images at a time.
Both give the same numbers to float32 rounding (tests/test_layers.py).

Layers keep scratch arrays from call to call (Layer._buffer) and the cache of their last
forward, so one layer object serves one thread at a time: `replica()` makes a twin over the same
parameters for another thread. A layer built by a network also knows its place: `shape` (a
shapes.LayerShape with index, shapes, parameter count and formula).
"""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np

from .im2col import (
    BATCH_COLUMN_BUDGET_BYTES,
    CHANNELS_FIRST_BELOW,
    batch_windows,
    column_sums,
    conv2d,
    output_length,
    pad,
    pool2d,
    relu,
    relu_,
    softmax,
    unpad,
)
from .shapes import LayerShape
from .spec import LayerSpec


def _single_image(x: np.ndarray, dtype: np.dtype) -> bool:
    """Whether x (N, ...) is one float32 image, for the single-image kernels."""
    return len(x) == 1 and x.dtype == np.float32 and dtype == np.float32


class Layer:
    """Base: a layer without parameters. Subclasses set `params`/`grads` when they learn."""

    type: ClassVar[str] = "layer"
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    # What the layer was built from and where it sits in a network (set by
    # network.build_layer); None for a loose layer.
    spec: LayerSpec | None = None
    shape: LayerShape | None = None
    # True during a training step (Network.training_step): the activations and gradients handed
    # from layer to layer are then kept buffers, as nobody holds on to them.
    reuse_outputs: bool = False

    def __init__(self) -> None:
        self.params = {}
        self.grads = {}
        self._buffers: dict[str, np.ndarray] = {}

    @property
    def index(self) -> int:
        return self._shape().index

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape().input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._shape().output_shape

    @property
    def param_count(self) -> int:
        return self._shape().params

    def _shape(self) -> LayerShape:
        if self.shape is None:
            raise AttributeError(f"this {self.type} layer is not part of a network")
        return self.shape

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def forget(self) -> None:
        """Drop what the last forward kept for backward, so that its arrays can be freed now
        rather than at the next call (the explorer's forward needs no backward)."""
        self._cache = None

    def backward(self, dy: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def replica(self) -> Layer:
        """A twin over the SAME parameter arrays with its own grads, caches and scratch (for
        another thread)."""
        twin = copy.copy(self)
        twin.grads = {name: np.zeros_like(g) for name, g in self.grads.items()}
        twin._buffers = {}
        return twin

    def _buffer(
        self, name: str, shape: tuple[int, ...], dtype: np.dtype, fill: float | None = None
    ) -> np.ndarray:
        """A scratch array of `shape` that this layer keeps from call to call.

        A fresh multi-megabyte array may be page-faulted in anew on every step (glibc can hand
        blocks that big back to the kernel when they are freed), which cost more than the
        arithmetic here. The leading axis (the batch) grows as needed and a smaller request gets
        a view of the first rows. `fill` is written only when the array is made: borders that
        callers never write stay filled. Never return a buffer to a caller (it is overwritten by
        the next call).
        """
        kept = self._buffers.get(name)
        if (
            kept is None
            or kept.dtype != dtype
            or kept.shape[1:] != shape[1:]
            or kept.shape[0] < shape[0]
        ):
            kept = np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
            self._buffers[name] = kept
        return kept[: shape[0]]

    def _output(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An array to hand on: a kept buffer while `reuse_outputs` is on (valid until this
        layer's next call), else a new one that the caller may keep."""
        if self.reuse_outputs:
            return self._buffer(name, shape, dtype)
        return np.empty(shape, dtype)


class ConvLayer(Layer):
    """K filters over a zero-padded input, then ReLU when activation is "relu".

    weights : ndarray of shape (K, F, F, C)
    bias : ndarray of shape (K,)
    need_input_grad : False for the first layer, whose dL/dx nobody reads (saves a matmul)

    Batches go through im2col + one matmul per chunk of images; backward by transposed matmuls.
    The columns are rebuilt in backward rather than kept from forward: a chunk's columns are
    rebuilt in cache for the dW matmul, where a whole batch's would be read back from memory.
    dL/dx of a stride-1 convolution is itself a convolution: the output gradient, zero-padded by
    F-1-P, correlated with the kernels turned 180 degrees and with K and C swapped. Other strides
    use col2im: each kernel offset adds its share back into one strided slice of the input.
    """

    type: ClassVar[str] = "conv"
    # Set during a training step when the layer above is a max pool that drops the gradient of
    # windows whose maximum is 0 (MaxPoolLayer.drop_dead_windows): the only cells it sends
    # gradient to are then ones where this relu's output is positive, and the mask can be skipped.
    relu_done_above: bool = False

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        stride: int = 1,
        padding: int = 0,
        activation: str = "none",
        need_input_grad: bool = True,
    ) -> None:
        super().__init__()
        self.params = {"weights": weights, "bias": bias}
        self.grads = {"weights": np.zeros_like(weights), "bias": np.zeros_like(bias)}
        self.stride, self.padding, self.activation = stride, padding, activation
        self.need_input_grad = need_input_grad

    @property
    def weights(self) -> np.ndarray:
        return self.params["weights"]

    @property
    def bias(self) -> np.ndarray:
        return self.params["bias"]

    @property
    def kernel_size(self) -> int:
        return self.params["weights"].shape[1]

    @property
    def relu(self) -> bool:
        return self.activation == "relu"

    @property
    def channels_first(self) -> bool:
        _, f, _, c = self.params["weights"].shape
        return f * c < CHANNELS_FIRST_BELOW

    def _chunk(self, ho: int, wo: int, itemsize: int, channels: int) -> int:
        """Images per chunk so that one chunk's columns over `channels` fit the batch budget."""
        f = self.params["weights"].shape[1]
        return max(1, BATCH_COLUMN_BUDGET_BYTES // (ho * wo * f * f * channels * itemsize))

    def _padded_input(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """x (N, H, W, C) -> zero-padded (N, H+2P, W+2P, C), or (N, C, H+2P, W+2P) channels
        first, in a kept buffer whose border stays zero."""
        n, h, w, c = x.shape
        p = self.padding
        if self.channels_first:
            xp = self._buffer("input", (n, c, h + 2 * p, w + 2 * p), dtype, fill=0.0)
            xp[:, :, p : p + h, p : p + w] = x.transpose(0, 3, 1, 2)
        else:
            xp = self._buffer("input", (n, h + 2 * p, w + 2 * p, c), dtype, fill=0.0)
            xp[:, p : p + h, p : p + w] = x
        return xp

    def _columns(self, xp: np.ndarray, first: int, count: int, ho: int, wo: int) -> np.ndarray:
        """im2col of images first..first+count-1 -> (count*Ho*Wo, F*F*C + 1) in a kept buffer.

        Channels last the values are in (fy, fx, c) order; channels first in (c, fy, fx) order
        (see _weight_columns), and the matrix is the transpose of a (F*F*C + 1, rows) buffer that
        BLAS reads as column-major without a copy. The last value of every row is 1: it meets the
        bias row of the weight matrix (forward) and sums dL/dz into the bias gradient (backward).
        """
        _, f, _, c = self.params["weights"].shape
        depth, cells = f * f * c, count * ho * wo
        part = xp[first : first + count]
        flat = self._buffer("columns", ((depth + 1) * cells,), xp.dtype)
        if self.channels_first:
            buf = flat.reshape(depth + 1, cells)
            target = buf[:depth].reshape(c, f, f, count, ho, wo)  # leading rows: a view
            np.copyto(target, batch_windows(part, f, self.stride, ho, wo, True))
            buf[depth] = 1.0
            return buf.T
        buf = flat.reshape(cells, depth + 1)
        target = flat.reshape(count, ho, wo, depth + 1)[..., :depth].reshape(count, ho, wo, f, -1)
        np.copyto(target, batch_windows(part, f, self.stride, ho, wo, False))
        buf[:, depth] = 1.0
        return buf

    def _weight_columns(self) -> np.ndarray:
        """weights (K, F, F, C) and bias (K,) -> (F*F*C + 1, K), rows in _columns' order."""
        w, b = self.params["weights"], self.params["bias"]
        k = w.shape[0]
        rows = w.transpose(3, 1, 2, 0) if self.channels_first else w.transpose(1, 2, 3, 0)
        w_cols = np.empty((w[0].size + 1, k), dtype=w.dtype)
        w_cols[:-1] = rows.reshape(-1, k)
        w_cols[-1] = b
        return w_cols

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> y (N, Ho, Wo, K)."""
        w = self.params["weights"]  # (K, F, F, C)
        if _single_image(x, w.dtype):
            y = conv2d(x[0], w, self.params["bias"], self.stride, self.padding)[None]
            if self.relu:
                relu_(y)
            self._cache = (None, x.shape, x, y if self.relu else None)
            return y
        k, f, _, c = w.shape
        s, p = self.stride, self.padding
        n, h, wd, _ = x.shape
        ho, wo = output_length(h, f, p, s), output_length(wd, f, p, s)
        xp = self._padded_input(x, w.dtype)
        w_cols = self._weight_columns()  # (F*F*C + 1, K)
        y = self._output("output", (n, ho, wo, k), w.dtype)  # (N, Ho, Wo, K)
        step = self._chunk(ho, wo, xp.itemsize, c)
        for i in range(0, n, step):
            count = min(step, n - i)
            out = y[i : i + count].reshape(-1, k)  # (B*Ho*Wo, K)
            np.matmul(self._columns(xp, i, count, ho, wo), w_cols, out=out)
            if self.relu:
                relu_(out)  # while the chunk is in cache
        # The padded copy is all backward needs of the input: x itself is not kept alive.
        self._cache = (xp, x.shape, None, y if self.relu else None)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, Ho, Wo, K) -> dx (N, H, W, C); fills grads (K, F, F, C) and (K,)."""
        # padded input (or None after a single image, then x), (N, H, W, C), relu output
        xp, x_shape, x, y = self._cache
        w = self.params["weights"]  # (K, F, F, C)
        k, f, _, c = w.shape
        s, p = self.stride, self.padding
        n, ho, wo, _ = dy.shape
        dtype = w.dtype
        if xp is None:
            xp = self._padded_input(x, dtype)
        dz = self._buffer("output_grad", dy.shape, dtype)  # (N, Ho, Wo, K): dL/d(pre-relu)
        depth = f * f * c
        dw = np.zeros((depth + 1, k), dtype=dtype)  # (F*F*C + 1, K): _columns' rows, then bias
        dw_part = self._buffer("weight_grad", (depth + 1, k), dtype)
        want_dx = self.need_input_grad
        as_conv = s == 1 and p <= f - 1  # dL/dx as a full convolution (see the class docstring)
        if want_dx and as_conv:
            q = f - 1 - p
            flipped = w[:, ::-1, ::-1, :].transpose(1, 2, 0, 3).reshape(f * f * k, c)  # (u, v, k)
            dzp = self._buffer("output_grad_padded", (n, ho + 2 * q, wo + 2 * q, k), dtype, 0.0)
            dx = self._output("input_grad", x_shape, dtype)  # (N, H, W, C)
            _, h, wd, _ = x_shape
        elif want_dx:
            dxp = np.zeros((n, x_shape[1] + 2 * p, x_shape[2] + 2 * p, c), dtype=dtype)
            span_h, span_w = s * (ho - 1) + 1, s * (wo - 1) + 1
            w_flat = w.reshape(k, depth)
        step = self._chunk(ho, wo, xp.itemsize, max(c, k) if want_dx else c)
        for i in range(0, n, step):
            count = min(step, n - i)
            dz_part = dz[i : i + count]  # (B, Ho, Wo, K)
            if y is not None and not self.relu_done_above:
                # relu: gradient flows where the output was positive
                np.multiply(dy[i : i + count], y[i : i + count] > 0, out=dz_part)
            elif dy.flags.c_contiguous and dy.dtype == dtype:  # no copy needed
                dz_part = dy[i : i + count]
            else:
                np.copyto(dz_part, dy[i : i + count])
            dz_mat = dz_part.reshape(-1, k)  # (B*Ho*Wo, K)
            cols = self._columns(xp, i, count, ho, wo)  # (B*Ho*Wo, F*F*C + 1)
            np.matmul(cols.T, dz_mat, out=dw_part)
            dw += dw_part
            if not want_dx:
                continue
            if as_conv:
                dzp[i : i + count, q : q + ho, q : q + wo] = dz_part
                grad_cols = self._buffer("grad_columns", (count * h * wd, f * f * k), dtype)
                np.copyto(
                    grad_cols.reshape(count, h, wd, f, f * k),
                    batch_windows(dzp[i : i + count], f, 1, h, wd, False),
                )
                np.matmul(grad_cols, flipped, out=dx[i : i + count].reshape(-1, c))
            else:
                dcols = (dz_mat @ w_flat).reshape(-1, ho, wo, f, f, c)
                chunk = dxp[i : i + count]
                for fy in range(f):
                    for fx in range(f):
                        chunk[:, fy : fy + span_h : s, fx : fx + span_w : s] += dcols[
                            :, :, :, fy, fx
                        ]
        self.grads["bias"] = dw[depth].copy()  # (K,)
        if self.channels_first:
            rows = dw[:depth].reshape(c, f, f, k).transpose(3, 1, 2, 0)
        else:
            rows = dw[:depth].reshape(f, f, c, k).transpose(3, 0, 1, 2)
        self.grads["weights"] = np.ascontiguousarray(rows)  # (K, F, F, C)
        if not want_dx:
            return np.empty(0, dtype=dtype)
        return dx if as_conv else unpad(dxp, p)


class ReluLayer(Layer):
    """max(0, x) on any shape; the gradient passes where the output is positive."""

    type: ClassVar[str] = "relu"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, ...) -> y (N, ...)."""
        y = relu(x) if x.dtype == np.float32 else np.maximum(x, 0)
        self._cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, ...) -> dx (N, ...)."""
        return dy * (self._cache > 0)


class PoolLayer(Layer):
    """Max or average over size x size windows with a stride: (N, H, W, C) -> (N, Ho, Wo, C)."""

    kind: ClassVar[str]

    def __init__(self, size: int, stride: int | None = None, padding: int = 0) -> None:
        super().__init__()
        self.size, self.stride, self.padding = size, stride or size, padding

    @property
    def type(self) -> str:  # type: ignore[override]
        return f"{self.kind}pool"

    def _sizes(self, x: np.ndarray) -> tuple[int, int, int, int]:
        """(Ho, Wo, span_h, span_w): the output size and the extent of its windows' corners."""
        f, s, p = self.size, self.stride, self.padding
        ho, wo = output_length(x.shape[1], f, p, s), output_length(x.shape[2], f, p, s)
        return ho, wo, s * (ho - 1) + 1, s * (wo - 1) + 1


class MaxPoolLayer(PoolLayer):
    """Max over each window, padding with -inf, channel by channel.

    The gradient goes to the first maximum in scan order (row by row), as argmax would pick.
    """

    kind: ClassVar[str] = "max"
    # Set during a training step when the layer below is a conv with relu (see
    # ConvLayer.relu_done_above): windows whose maximum is <= 0 then pass no gradient at all,
    # which is exactly what that relu's mask would do to it. Off, dL/dx is the plain max-pool
    # gradient.
    drop_dead_windows: bool = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> y (N, Ho, Wo, C)."""
        f, s, p = self.size, self.stride, self.padding
        if _single_image(x, x.dtype):
            y = pool2d(x[0], f, s, p, "max")[None]
            self._cache = (None, x, y)
            return y
        ho, wo, span_h, span_w = self._sizes(x)
        xp = pad(x, p, -np.inf)  # (N, Hp, Wp, C)
        y = self._output("output", (len(x), ho, wo, x.shape[3]), x.dtype)  # (N, Ho, Wo, C)
        np.copyto(y, xp[:, 0:span_h:s, 0:span_w:s])
        for dy in range(f):
            for dx in range(f):
                if dy or dx:
                    np.maximum(y, xp[:, dy : dy + span_h : s, dx : dx + span_w : s], out=y)
        self._cache = (xp, x, y)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, Ho, Wo, C) -> dx (N, H, W, C)."""
        xp, x, y = self._cache
        if xp is None:
            xp = pad(x, self.padding, -np.inf)
        f, s, p = self.size, self.stride, self.padding
        _, ho, wo, _ = y.shape
        span_h, span_w = s * (ho - 1) + 1, s * (wo - 1) + 1
        # Windows that tile the input exactly (the usual 2x2, stride 2) write every cell once.
        tiles = s == f and p == 0 and xp.shape[1] == f * ho and xp.shape[2] == f * wo
        dxp = self._output("input_grad", xp.shape, dy.dtype)  # (N, Hp, Wp, C)
        if not tiles:  # overlapping or partial windows: add into zeros
            dxp.fill(0.0)
        # (N, Ho, Wo, C): this window cell holds the first maximum / the maximum is not yet found
        winner = self._buffer("winner", y.shape, np.dtype(bool))
        unclaimed = self._buffer("unclaimed", y.shape, np.dtype(bool))
        if self.drop_dead_windows:  # windows with no positive maximum are claimed from the start
            alive = self._buffer("alive", y.shape, np.dtype(bool))
            np.greater(y, 0, out=alive)
        for oy in range(f):
            for ox in range(f):
                window = (slice(None), slice(oy, oy + span_h, s), slice(ox, ox + span_w, s))
                np.equal(xp[window], y, out=winner)
                if oy or ox:
                    winner &= unclaimed
                elif self.drop_dead_windows:
                    winner &= alive
                if tiles:
                    np.multiply(dy, winner, out=dxp[window])
                else:
                    np.add(dxp[window], dy, out=dxp[window], where=winner)
                if not (oy or ox):
                    if self.drop_dead_windows:
                        np.logical_xor(alive, winner, out=unclaimed)
                    else:
                        np.logical_not(winner, out=unclaimed)
                elif oy < f - 1 or ox < f - 1:
                    unclaimed ^= winner
        return unpad(dxp, p)


class AvgPoolLayer(PoolLayer):
    """Mean over each window; padded cells count as zeros (the divisor is always F*F)."""

    kind: ClassVar[str] = "avg"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> y (N, Ho, Wo, C)."""
        f, s, p = self.size, self.stride, self.padding
        self._x_shape = x.shape
        if _single_image(x, x.dtype):
            return pool2d(x[0], f, s, p, "avg")[None]
        _, _, span_h, span_w = self._sizes(x)
        xp = pad(x, p, 0.0)  # (N, Hp, Wp, C)
        y = xp[:, 0:span_h:s, 0:span_w:s].copy()  # (N, Ho, Wo, C)
        for dy in range(f):
            for dx in range(f):
                if dy or dx:
                    y += xp[:, dy : dy + span_h : s, dx : dx + span_w : s]
        y *= 1.0 / (f * f)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, Ho, Wo, C) -> dx (N, H, W, C)."""
        f, s, p = self.size, self.stride, self.padding
        n, h, w, c = self._x_shape
        _, ho, wo, _ = dy.shape
        span_h, span_w = s * (ho - 1) + 1, s * (wo - 1) + 1
        share = dy * (1.0 / (f * f))  # (N, Ho, Wo, C): each input in the window gets 1/F^2
        dxp = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=dy.dtype)  # (N, Hp, Wp, C)
        for oy in range(f):
            for ox in range(f):
                dxp[:, oy : oy + span_h : s, ox : ox + span_w : s] += share
        return unpad(dxp, p)


class GlobalPoolLayer(Layer):
    """Max or mean over all of height x width per channel: (N, H, W, C) -> (N, 1, 1, C)."""

    kind: ClassVar[str]

    @property
    def type(self) -> str:  # type: ignore[override]
        return f"global{self.kind}pool"


class GlobalMaxPoolLayer(GlobalPoolLayer):
    """The gradient goes to the first maximum of each channel in scan order."""

    kind: ClassVar[str] = "max"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> y (N, 1, 1, C)."""
        n, h, w, c = x.shape
        flat = x.reshape(n, h * w, c)  # (N, H*W, C)
        self._where = flat.argmax(axis=1)  # (N, C): first maximum in scan order
        self._x_shape = x.shape
        return flat.max(axis=1).reshape(n, 1, 1, c)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, 1, 1, C) -> dx (N, H, W, C)."""
        n, h, w, c = self._x_shape
        dx = np.zeros((n, h * w, c), dtype=dy.dtype)  # (N, H*W, C)
        np.put_along_axis(dx, self._where[:, None, :], dy.reshape(n, 1, c), axis=1)
        return dx.reshape(n, h, w, c)


class GlobalAvgPoolLayer(GlobalPoolLayer):
    """Each position gets 1/(H*W) of the gradient."""

    kind: ClassVar[str] = "avg"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> y (N, 1, 1, C)."""
        self._x_shape = x.shape
        return x.mean(axis=(1, 2), keepdims=True, dtype=x.dtype)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, 1, 1, C) -> dx (N, H, W, C)."""
        n, h, w, c = self._x_shape
        return np.broadcast_to(dy / (h * w), (n, h, w, c)).copy()


class FlattenLayer(Layer):
    """(N, H, W, C) -> (N, H*W*C), row-major with channel fastest; a flat input passes through."""

    type: ClassVar[str] = "flatten"

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, ...) -> y (N, D); a copy outside training, so a kept output owns its memory."""
        self._x_shape = x.shape
        y = x.reshape(x.shape[0], -1)
        return y if self.reuse_outputs or y.base is None else y.copy()

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, D) -> dx (N, ...)."""
        return dy.reshape(self._x_shape)


class DenseLayer(Layer):
    """z = x W^T + b on flat inputs, then "none", "relu" or "softmax".

    weights : ndarray of shape (U, D)
    bias    : ndarray of shape (U,)
    With softmax the output is the probabilities and `logits` holds z of the last forward,
    which the cross-entropy loss differentiates directly (backward_logits).
    """

    type: ClassVar[str] = "dense"

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        activation: str = "none",
        need_input_grad: bool = True,
    ) -> None:
        super().__init__()
        self.params = {"weights": weights, "bias": bias}
        self.grads = {"weights": np.zeros_like(weights), "bias": np.zeros_like(bias)}
        self.activation, self.need_input_grad = activation, need_input_grad

    @property
    def weights(self) -> np.ndarray:
        return self.params["weights"]

    @property
    def bias(self) -> np.ndarray:
        return self.params["bias"]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, D) -> y (N, U)."""
        w, b = self.params["weights"], self.params["bias"]  # (U, D), (U,)
        x = x.astype(w.dtype, copy=False)
        z = x @ w.T  # (N, U)
        z += b
        y = z
        if self.activation == "relu":
            y = relu_(z) if z.dtype == np.float32 else np.maximum(z, 0, out=z)
        elif self.activation == "softmax":
            self.logits = z  # only a softmax layer has logits apart from its output
            y = softmax(z)
        self._cache = (x, y)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, U) -> dx (N, D); fills grads (U, D) and (U,)."""
        _, y = self._cache
        if self.activation == "relu":
            dy = dy * (y > 0)
        elif self.activation == "softmax":  # dz = p * (dy - sum(dy * p))
            dy = y * (dy - (dy * y).sum(axis=1, keepdims=True))
        return self.backward_logits(dy)

    def backward_logits(self, dz: np.ndarray) -> np.ndarray:
        """dz = dL/d(logits) (N, U) -> dx (N, D); fills grads (U, D) and (U,)."""
        x, _ = self._cache
        self.grads["weights"] = dz.T @ x  # (U, D)
        self.grads["bias"] = column_sums(dz)  # (U,)
        if not self.need_input_grad:
            return np.empty(0, dtype=dz.dtype)
        return dz @ self.params["weights"]  # (N, D)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    logits : ndarray of shape (N, K)
    labels : ndarray of shape (N,), ints in [0, K)
    Returns (loss, dlogits) with dlogits (N, K) = (softmax(logits) - onehot(labels)) / N.
    """
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, K)
    log_sum = np.log(np.exp(shifted).sum(axis=1))  # (N,)
    rows = np.arange(n)
    loss = float(np.mean(log_sum - shifted[rows, labels]))
    dlogits = np.exp(shifted - log_sum[:, None])  # (N, K) probabilities
    dlogits[rows, labels] -= 1.0
    dlogits /= n
    return loss, dlogits
