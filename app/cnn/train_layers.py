"""Batched layers for learning: each layer's forward and backward side by side.

Activations are (N, H, W, C) (a batch of images) or (N, D) (a batch of flat vectors). Every layer
works in the dtype of its input: float64 for gradient checks, float32 for training. `forward`
keeps what `backward` needs; `backward(dy)` returns dL/dx and fills `.grads` for layers with
parameters (`.params` and `.grads` are dicts with the same keys, arrays of the same shapes).

Conventions match the single-image engine (app/cnn/im2col.py): conv weights are (K, F, F, C)
cross-correlated with a zero-padded input, max pooling pads with -inf, average pooling counts pads
as zeros (count_include_pad), flatten is row-major with channel fastest, dense is z = W x + b.
Softmax is not a layer here: the loss takes the logits (see softmax_cross_entropy).

Layers keep scratch arrays from call to call (Layer._buffer), so one layer object serves one
thread at a time: the trainer's worker threads each get a `replica()`.
"""

from __future__ import annotations

import copy

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .im2col import relu_


def _output_length(n: int, f: int, p: int, s: int) -> int:
    return (n - f + 2 * p) // s + 1


def _pad(x: np.ndarray, padding: int, fill: float) -> np.ndarray:
    """(N, H, W, C) -> (N, H + 2P, W + 2P, C), new array filled with `fill` around x."""
    if padding == 0:
        return np.ascontiguousarray(x)
    n, h, w, c = x.shape
    xp = np.full((n, h + 2 * padding, w + 2 * padding, c), fill, dtype=x.dtype)
    xp[:, padding : padding + h, padding : padding + w] = x
    return xp


def _unpad(xp: np.ndarray, padding: int) -> np.ndarray:
    """(N, H + 2P, W + 2P, C) -> (N, H, W, C) view of the interior."""
    if padding == 0:
        return xp
    return xp[:, padding:-padding, padding:-padding]


def _column_sums(a: np.ndarray) -> np.ndarray:
    """a (R, K) -> (K,) sums over rows; a BLAS matrix-vector product is ~20x faster than .sum(0)
    for the tall, narrow matrices that bias gradients are."""
    return np.ones(a.shape[0], dtype=a.dtype) @ a


class Layer:
    """Base: a layer without parameters. Subclasses set `params`/`grads` when they learn."""

    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    # True during a training step (TrainableNetwork.loss_and_backward): the activations and
    # gradients handed from layer to layer are then kept buffers, as nobody holds on to them.
    reuse_outputs: bool = False

    def __init__(self) -> None:
        self.params = {}
        self.grads = {}
        self._buffers: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def replica(self) -> Layer:
        """A twin over the SAME parameter arrays with its own grads, caches and scratch (for a
        worker thread)."""
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
        arithmetic here. The leading axis
        (the batch) grows as needed and a smaller request gets a view of the first rows. `fill`
        is written only when the array is made: borders that callers never write stay filled.
        Never return a buffer to a caller (it is overwritten by the next call).
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


# Images are processed a few at a time so that one chunk's im2col columns stay in the CPU cache
# (a whole batch of columns is tens of MB and every pass over it would go to main memory).
# Measured with two workers, steps per chunk budget side by side: 2 MB beat 4 MB by 6% (digits,
# batch 32), 2-3% (digits, 128) and 0-5% (shapes); 1 MB and 8 MB were slower than both.
COLUMN_BUDGET_BYTES = 2 * 2**20

# Kernel rows shorter than this many values (F*C: 5x5 over one grey channel is 5) are gathered
# channels first: copying runs of F*C values from a channels-last image is slow when they are that
# short, while in channels-first order each run is a whole output row.
CHANNELS_FIRST_BELOW = 32


def _windows(xp: np.ndarray, f: int, s: int, ho: int, wo: int, channels_first: bool) -> np.ndarray:
    """A read-only view of every output cell's receptive field in the padded input.

    Channels last: xp (N, Hp, Wp, C) -> (N, Ho, Wo, F, F*C); for one output cell and kernel row
    fy the F*C values it reads are contiguous in xp. Channels first: xp (N, C, Hp, Wp) ->
    (C, F, F, N, Ho, Wo); each run is an output row. Strides come from the shape (xp is
    C-contiguous): NumPy may report any stride for an axis of length 1.
    """
    item = xp.itemsize
    if channels_first:
        n, c, hp, wp = xp.shape
        s_row, s_ch = wp * item, hp * wp * item
        return as_strided(
            xp,
            shape=(c, f, f, n, ho, wo),
            strides=(s_ch, s_row, item, c * s_ch, s * s_row, s * item),
            writeable=False,
        )
    n, hp, wp, c = xp.shape
    s_col, s_row = c * item, wp * c * item
    return as_strided(
        xp,
        shape=(n, ho, wo, f, f * c),
        strides=(hp * s_row, s * s_row, s * s_col, s_row, item),
        writeable=False,
    )


class Conv2D(Layer):
    """Convolution by im2col + one matmul per chunk of images; backward by transposed matmuls.

    weights : ndarray of shape (K, F, F, C)
    bias    : ndarray of shape (K,)
    relu    : apply max(0, .) after the convolution (the spec's activation "relu")
    need_input_grad : False for the first layer, whose dL/dx nobody reads (saves a matmul)

    The columns are rebuilt in backward rather than kept from forward: a chunk's columns are
    rebuilt in cache for the dW matmul, where a whole batch's would be read back from memory.
    dL/dx of a stride-1 convolution is itself a convolution: the output gradient, zero-padded by
    F-1-P, correlated with the kernels turned 180 degrees and with K and C swapped. Other strides
    use col2im: each kernel offset adds its share back into one strided slice of the input.
    """

    # Set during a training step when the layer above is a max pool that drops the gradient of
    # windows whose maximum is 0 (MaxPool2D.drop_dead_windows): the only cells it sends gradient
    # to are then ones where this relu's output is positive, and the relu mask can be skipped.
    relu_done_above: bool = False

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        stride: int = 1,
        padding: int = 0,
        relu: bool = False,
        need_input_grad: bool = True,
    ) -> None:
        super().__init__()
        self.params = {"weights": weights, "bias": bias}
        self.grads = {"weights": np.zeros_like(weights), "bias": np.zeros_like(bias)}
        self.stride, self.padding, self.relu = stride, padding, relu
        self.need_input_grad = need_input_grad

    @property
    def channels_first(self) -> bool:
        _, f, _, c = self.params["weights"].shape
        return f * c < CHANNELS_FIRST_BELOW

    def _chunk(self, ho: int, wo: int, itemsize: int, channels: int) -> int:
        """Images per chunk so that one chunk's columns over `channels` fit COLUMN_BUDGET_BYTES."""
        f = self.params["weights"].shape[1]
        return max(1, COLUMN_BUDGET_BYTES // (ho * wo * f * f * channels * itemsize))

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
            np.copyto(target, _windows(part, f, self.stride, ho, wo, True))
            buf[depth] = 1.0
            return buf.T
        buf = flat.reshape(cells, depth + 1)
        target = flat.reshape(count, ho, wo, depth + 1)[..., :depth].reshape(count, ho, wo, f, -1)
        np.copyto(target, _windows(part, f, self.stride, ho, wo, False))
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
        k, f, _, c = w.shape
        s, p = self.stride, self.padding
        n, h, wd, _ = x.shape
        ho, wo = _output_length(h, f, p, s), _output_length(wd, f, p, s)
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
        self._cache = (xp, x.shape, y if self.relu else None)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, Ho, Wo, K) -> dx (N, H, W, C); fills grads (K, F, F, C) and (K,)."""
        xp, x_shape, y = self._cache  # padded input, (N, H, W, C), (N, Ho, Wo, K) or None
        w = self.params["weights"]  # (K, F, F, C)
        k, f, _, c = w.shape
        s, p = self.stride, self.padding
        n, ho, wo, _ = dy.shape
        dtype = w.dtype
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
                    _windows(dzp[i : i + count], f, 1, h, wd, False),
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
        return dx if as_conv else _unpad(dxp, p)


class ReLU(Layer):
    """max(0, x) on any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, ...) -> y (N, ...)."""
        self._mask = x > 0
        return x * self._mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, ...) -> dx (N, ...)."""
        return dy * self._mask


class MaxPool2D(Layer):
    """Max over size x size windows with stride and -inf padding, channel by channel.

    The gradient goes to the first maximum in scan order (row by row), as argmax would pick.
    """

    # Set during a training step when the layer below is a conv with relu (see
    # Conv2D.relu_done_above): windows whose maximum is <= 0 then pass no gradient at all, which
    # is exactly what that relu's mask would do to it. Off, dL/dx is the plain max-pool gradient.
    drop_dead_windows: bool = False

    def __init__(self, size: int, stride: int | None = None, padding: int = 0) -> None:
        super().__init__()
        self.size, self.stride, self.padding = size, stride or size, padding

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> y (N, Ho, Wo, C)."""
        f, s, p = self.size, self.stride, self.padding
        _, h, w, _ = x.shape
        ho, wo = _output_length(h, f, p, s), _output_length(w, f, p, s)
        xp = _pad(x, p, -np.inf)  # (N, Hp, Wp, C)
        span_h, span_w = s * (ho - 1) + 1, s * (wo - 1) + 1
        y = self._output("output", (len(x), ho, wo, x.shape[3]), x.dtype)  # (N, Ho, Wo, C)
        np.copyto(y, xp[:, 0:span_h:s, 0:span_w:s])
        for dy in range(f):
            for dx in range(f):
                if dy or dx:
                    np.maximum(y, xp[:, dy : dy + span_h : s, dx : dx + span_w : s], out=y)
        self._cache = (xp, y)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, Ho, Wo, C) -> dx (N, H, W, C)."""
        xp, y = self._cache
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
        return _unpad(dxp, p)


class AvgPool2D(Layer):
    """Mean over size x size windows with stride; padded cells count as zeros."""

    def __init__(self, size: int, stride: int | None = None, padding: int = 0) -> None:
        super().__init__()
        self.size, self.stride, self.padding = size, stride or size, padding

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> y (N, Ho, Wo, C)."""
        f, s, p = self.size, self.stride, self.padding
        _, h, w, _ = x.shape
        ho, wo = _output_length(h, f, p, s), _output_length(w, f, p, s)
        xp = _pad(x, p, 0.0)  # (N, Hp, Wp, C)
        span_h, span_w = s * (ho - 1) + 1, s * (wo - 1) + 1
        y = xp[:, 0:span_h:s, 0:span_w:s].copy()  # (N, Ho, Wo, C)
        for dy in range(f):
            for dx in range(f):
                if dy or dx:
                    y += xp[:, dy : dy + span_h : s, dx : dx + span_w : s]
        y *= 1.0 / (f * f)
        self._x_shape = x.shape
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
        return _unpad(dxp, p)


class GlobalMaxPool(Layer):
    """Max over all positions per channel: (N, H, W, C) -> (N, 1, 1, C)."""

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


class GlobalAvgPool(Layer):
    """Mean over all positions per channel: (N, H, W, C) -> (N, 1, 1, C)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> y (N, 1, 1, C)."""
        self._x_shape = x.shape
        return x.mean(axis=(1, 2), keepdims=True)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, 1, 1, C) -> dx (N, H, W, C)."""
        n, h, w, c = self._x_shape
        return np.broadcast_to(dy / (h * w), (n, h, w, c)).copy()


class Flatten(Layer):
    """(N, H, W, C) -> (N, H*W*C), row-major with channel fastest; a flat input passes through."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, ...) -> y (N, D)."""
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, D) -> dx (N, ...)."""
        return dy.reshape(self._x_shape)


class Dense(Layer):
    """z = x W^T + b, optionally followed by relu.

    weights : ndarray of shape (U, D)
    bias    : ndarray of shape (U,)
    """

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        relu: bool = False,
        need_input_grad: bool = True,
    ) -> None:
        super().__init__()
        self.params = {"weights": weights, "bias": bias}
        self.grads = {"weights": np.zeros_like(weights), "bias": np.zeros_like(bias)}
        self.relu, self.need_input_grad = relu, need_input_grad

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, D) -> y (N, U)."""
        w, b = self.params["weights"], self.params["bias"]  # (U, D), (U,)
        x = x.astype(w.dtype, copy=False)
        y = x @ w.T + b  # (N, U)
        if self.relu:
            relu_(y)
        self._cache = (x, y if self.relu else None)
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy (N, U) -> dx (N, D); fills grads (U, D) and (U,)."""
        x, y = self._cache
        if y is not None:
            dy = dy * (y > 0)
        self.grads["weights"] = dy.T @ x  # (U, D)
        self.grads["bias"] = _column_sums(dy)  # (U,)
        if not self.need_input_grad:
            return np.empty(0, dtype=dy.dtype)
        return dy @ self.params["weights"]  # (N, D)


def softmax(z: np.ndarray) -> np.ndarray:
    """Stable softmax over the last axis: z (N, K) -> p (N, K), rows summing to 1."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


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
