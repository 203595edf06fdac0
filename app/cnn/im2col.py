"""The fast kernels: convolution by im2col + BLAS, pooling by strided slices, ReLU, softmax.

Pure functions on float arrays, no spec objects, no Python loops over pixels. The single-image
kernels (conv2d, pool2d) take (H, W, C); the batch helpers (pad, batch_windows) take
(N, H, W, C) or channels first (N, C, H, W), as app/cnn/layers.py uses them. Output sizes use
floor((N - F + 2P) / S) + 1; shapes.py refuses layers where that is not exact.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

# One image: each chunk of output rows gets a column buffer of at most this many bytes (one row
# at least): big enough that each BLAS call is worth waking its threads for (a 3x512x512 7x7
# stride-2 conv is 10 calls, not 43 as with 1 MiB), small enough that the columns are read back
# from cache.
IMAGE_COLUMN_BUDGET_BYTES = 4 * 2**20

# A batch: images are processed a few at a time so that one chunk's columns stay in the CPU
# cache (a whole batch of columns is tens of MB and every pass over it would go to main memory).
# Measured with two training workers, steps per chunk budget side by side: 2 MB beat 4 MB by 6%
# (digits, batch 32), 2-3% (digits, 128) and 0-5% (shapes); 1 MB and 8 MB were slower than both.
BATCH_COLUMN_BUDGET_BYTES = 2 * 2**20

# Kernel rows shorter than this many values (F*C, e.g. 3x3 or 7x7 over RGB), and inputs of at
# most CHANNELS_FIRST_MAX_CHANNELS channels at stride 1, take the channels-first route: copying
# runs of F*C values from a channels-last image is slow when they are that short, while channels
# first each column row is one long run. With more channels the channels-last columns measured as
# fast or faster (the GEMM on them is better shaped).
CHANNELS_FIRST_BELOW = 32
CHANNELS_FIRST_MAX_CHANNELS = 8


def _channels_first(f: int, c: int, stride: int) -> bool:
    if f == 1:
        return False  # no columns needed (or a strided 1x1 pick): see conv2d
    return f * c < CHANNELS_FIRST_BELOW or (stride == 1 and c <= CHANNELS_FIRST_MAX_CHANNELS)


def output_length(n: int, f: int, p: int, s: int) -> int:
    """floor((N - F + 2P) / S) + 1: one side of a conv or pool output (shapes.py checks it)."""
    return (n - f + 2 * p) // s + 1


def pad(x: np.ndarray, padding: int, fill: float, dtype: np.dtype | None = None) -> np.ndarray:
    """Copy x of shape (..., H, W, C) into a new (..., H + 2P, W + 2P, C) array, the border
    filled with `fill`, in `dtype` (default: x's float dtype); x itself when P is 0 and it is
    already C-contiguous in that dtype."""
    dtype = np.dtype(dtype or (x.dtype if x.dtype.kind == "f" else np.float32))
    if padding == 0:
        return np.ascontiguousarray(x, dtype=dtype)
    *lead, h, w, c = x.shape
    xp = np.empty((*lead, h + 2 * padding, w + 2 * padding, c), dtype=dtype)
    xp[..., :padding, :, :] = fill  # fill only the border: each cell is written once
    xp[..., padding + h :, :, :] = fill
    xp[..., padding : padding + h, :padding, :] = fill
    xp[..., padding : padding + h, padding + w :, :] = fill
    xp[..., padding : padding + h, padding : padding + w, :] = x
    return xp


def unpad(xp: np.ndarray, padding: int) -> np.ndarray:
    """(N, H + 2P, W + 2P, C) -> (N, H, W, C) view of the interior."""
    if padding == 0:
        return xp
    return xp[:, padding:-padding, padding:-padding]


def batch_windows(
    xp: np.ndarray, f: int, s: int, ho: int, wo: int, channels_first: bool
) -> np.ndarray:
    """A read-only view of every output cell's receptive field in a padded batch.

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


def column_sums(a: np.ndarray) -> np.ndarray:
    """a (R, K) -> (K,) sums over rows; a BLAS matrix-vector product is ~20x faster than .sum(0)
    for the tall, narrow matrices that bias gradients are."""
    return np.ones(a.shape[0], dtype=a.dtype) @ a


def _rows_per_chunk(ho: int, row_bytes: int) -> int:
    return max(1, min(ho, IMAGE_COLUMN_BUDGET_BYTES // row_bytes))


_scratch = threading.local()


def _column_buffer(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array for im2col columns, reused by later calls in this thread.

    Reuse matters more than it looks: a fresh multi-megabyte buffer may be page-faulted in anew on
    every call (glibc hands freed blocks of that size back to the kernel depending on what else was
    allocated), which cost more than the whole convolution here. Buffers over twice the budget
    (one huge output row) are not kept.
    """
    count = int(np.prod(shape))
    if count * 4 > 2 * IMAGE_COLUMN_BUDGET_BYTES:
        return np.empty(shape, dtype=np.float32)
    kept = getattr(_scratch, "columns", None)
    if kept is None or kept.size < count:
        kept = np.empty(count, dtype=np.float32)
        _scratch.columns = kept
    return kept[:count].reshape(shape)


def _conv_channels_last(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int, out: np.ndarray
) -> None:
    """im2col with one column row per output cell, values in (fy, fx, c) order, then a 1.

    x (H, W, C), w (K, F, F, C), b (K,); writes out (Ho, Wo, K). The trailing 1 in every column
    row meets the bias row of the weight matrix, so the GEMM adds the bias for free.
    """
    ho, wo, k = out.shape
    f, c = w.shape[1], w.shape[3]
    xp = pad(x, padding, 0.0, np.float32)
    fc = f * c
    depth = f * fc + 1
    # For one output cell and one kernel row fy, the F*C values it reads are contiguous in xp,
    # so the window view is (Ho, Wo, F, F*C). Strides from the shape, not xp.strides: NumPy may
    # report any stride (even 0) for a length-1 axis, and as_strided would read the wrong memory.
    s_item = xp.itemsize
    s_col, s_row = c * s_item, xp.shape[1] * c * s_item
    windows = as_strided(
        xp,
        shape=(ho, wo, f, fc),
        strides=(stride * s_row, stride * s_col, s_row, s_item),
        writeable=False,
    )
    w_aug = np.empty((depth, k), dtype=np.float32)  # (F*F*C + 1, K)
    w_aug[:-1] = w.reshape(k, depth - 1).T
    w_aug[-1] = b
    rows = _rows_per_chunk(ho, wo * depth * 4)
    cols = _column_buffer((rows, wo, depth))  # reused by every chunk
    cols[:, :, -1] = 1.0
    for top in range(0, ho, rows):
        n = min(rows, ho - top)
        np.copyto(cols[:n, :, :-1].reshape(n, wo, f, fc), windows[top : top + n])
        np.matmul(cols[:n].reshape(n * wo, depth), w_aug, out=out[top : top + n].reshape(n * wo, k))


def _phase_planes(
    x: np.ndarray, f: int, stride: int, padding: int, ho: int, wo: int
) -> tuple[np.ndarray, int, int]:
    """The zero-padded input, channels first, split into its S*S stride phases, each flattened.

    x (H, W, C) -> (planes (P, P, C, Hq * Wq + slack), Hq, Wq) with P = min(S, F), where
    planes[py, px, c, i * Wq + j] = xpad[S*i + py, S*j + px, c], and Hq, Wq just cover the
    output. With stride 1 this is simply the padded image transposed to (C, H + 2P, W + 2P).
    The zero slack lets the last column row run past the end of a plane (see below).
    """
    h, w, c = x.shape
    phases = min(stride, f)
    reach = -(-f // stride)  # kernel taps per phase, at most
    hq, wq = ho + reach - 1, wo + reach - 1
    planes = np.zeros((phases, phases, c, hq * wq + reach), dtype=np.float32)
    for py in range(phases):
        i0 = max(0, -(-(padding - py) // stride))  # first phase row that lies inside x
        y0 = stride * i0 + py - padding  # ... and the row of x it holds
        ni = max(0, min(hq - i0, -(-(h - y0) // stride)))
        for px in range(phases):
            j0 = max(0, -(-(padding - px) // stride))
            x0 = stride * j0 + px - padding
            nj = max(0, min(wq - j0, -(-(w - x0) // stride)))
            if ni and nj:
                plane = planes[py, px, :, : hq * wq].reshape(c, hq, wq)
                plane[:, i0 : i0 + ni, j0 : j0 + nj] = x[
                    y0 : y0 + stride * (ni - 1) + 1 : stride,
                    x0 : x0 + stride * (nj - 1) + 1 : stride,
                ].transpose(2, 0, 1)
    return planes, hq, wq


def _conv_channels_first(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int, ho: int, wo: int
) -> np.ndarray:
    """im2col with one column per "wide" output cell, each column row one contiguous copy.

    x (H, W, C), w (K, F, F, C), b (K,) -> (Ho, Wo, K), a view of a (Ho, Wq, K) array.
    Ho, Wo are the output's height and width, as conv2d worked them out.
    Output cells are computed on the phase planes' full width Wq (Wq - Wo more per row, whose
    values are thrown away): then, for the tap (fy, fx) = (S*a + py, S*b + px) and channel c,
    the values that all the cells of output rows top..top+n read form one contiguous run of a
    flat plane, starting at (top + a) * Wq + b. So a chunk's columns are a copy of F*F*C runs of
    n * Wq values rather than one short run per output row. Column rows are grouped by stride
    phase, then (c, a, b); a last row of ones meets the bias row of the weight matrix.
    Returning the view saves copying the output out of the wide array, which cost as much as
    the layout gains.
    """
    k, f, c = w.shape[0], w.shape[1], w.shape[3]
    planes, hq, wq = _phase_planes(x, f, stride, padding, ho, wo)
    phases = planes.shape[0]
    s_item = planes.itemsize
    s_plane = planes.shape[3] * s_item
    w_blocks, sources = [], []
    for py in range(phases):
        for px in range(phases):
            taps = w[:, py::stride, px::stride, :]  # (K, A, B, C)
            na, nb = taps.shape[1:3]
            w_blocks.append(taps.transpose(3, 1, 2, 0).reshape(c * na * nb, k))
            sources.append((planes[py, px], na, nb))
    w_aug = np.concatenate([*w_blocks, b.reshape(1, k)])  # (F*F*C + 1, K)
    depth = w_aug.shape[0]
    out = np.empty((ho, wq, k), dtype=np.float32)
    rows = _rows_per_chunk(ho, wq * depth * 4)
    cols = _column_buffer((depth, rows * wq))  # reused by every chunk
    cols[-1] = 1.0
    for top in range(0, ho, rows):
        n = min(rows, ho - top)
        cells = n * wq
        start = 0
        for plane, na, nb in sources:
            stop = start + c * na * nb
            runs = as_strided(  # (C, A, B, cells): run (c, a, b) starts at (top + a) * Wq + b
                plane[:, top * wq :],
                shape=(c, na, nb, cells),
                strides=(s_plane, wq * s_item, s_item, s_item),
                writeable=False,
            )
            np.copyto(cols[start:stop, :cells].reshape(c, na, nb, cells), runs)
            start = stop
        # cols[:, :cells].T is column-major with a leading dimension BLAS accepts: no copy.
        np.matmul(cols[:, :cells].T, w_aug, out=out[top : top + n].reshape(cells, k))
    return out[:, :wo]


def conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """Cross-correlate an image with K filters (zero padding), before any activation.

    x : ndarray of shape (H, W, C)
    w : ndarray of shape (K, F, F, C)
    b : ndarray of shape (K,)
    Returns ndarray of shape (Ho, Wo, K), float32, Ho = (H - F + 2P) // S + 1 (same for width);
    from the channels-first route a view with a longer row stride, not C-contiguous.
    One BLAS matmul per chunk of output rows; 1x1 kernels without padding need no columns at all.
    """
    k, f, f2, c = w.shape
    if f != f2 or x.shape[2] != c:
        raise ValueError(f"weights {w.shape} do not fit input {x.shape}")
    ho = output_length(x.shape[0], f, padding, stride)
    wo = output_length(x.shape[1], f, padding, stride)
    if ho < 1 or wo < 1:
        hp, wp = x.shape[0] + 2 * padding, x.shape[1] + 2 * padding
        raise ValueError(f"kernel {f} does not fit the padded input {hp}x{wp}")
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32).reshape(k)
    if _channels_first(f, c, stride):
        return _conv_channels_first(x, w, b, stride, padding, ho, wo)
    out = np.empty((ho, wo, k), dtype=np.float32)
    if f == 1 and padding == 0:
        # The input already is the column matrix (one row per pixel): no copy to make.
        cells = x[::stride, ::stride].reshape(ho * wo, c)
        np.matmul(cells, w.reshape(k, c).T, out=out.reshape(ho * wo, k))
        out += b
    else:
        _conv_channels_last(x, w, b, stride, padding, out)
    return out


def pool2d(
    x: np.ndarray, size: int, stride: int, padding: int = 0, kind: str = "max"
) -> np.ndarray:
    """Max or average pooling over size x size windows, channel by channel.

    x : ndarray of shape (H, W, C)
    Returns ndarray of shape (Ho, Wo, C), float32. Max pooling pads with -inf; average pooling
    counts padded cells as zeros and always divides by size * size (count_include_pad).
    """
    if kind not in ("max", "avg"):
        raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}")
    xp = pad(x, padding, -np.inf if kind == "max" else 0.0, np.float32)
    ho = output_length(x.shape[0], size, padding, stride)
    wo = output_length(x.shape[1], size, padding, stride)
    if ho < 1 or wo < 1:
        raise ValueError(f"window {size} does not fit the padded input {xp.shape[0]}x{xp.shape[1]}")
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1

    # Separable: first combine each window's rows (strided slices of whole image rows, long
    # contiguous runs), then its columns: 2(F-1) passes instead of F*F - 1 over short runs.
    combine = np.maximum if kind == "max" else np.add
    if size == 1:
        out = xp[0:span_h:stride, 0:span_w:stride].copy()
    else:
        rows = combine(xp[0:span_h:stride], xp[1 : 1 + span_h : stride])  # (Ho, Wp, C)
        for dy in range(2, size):
            combine(rows, xp[dy : dy + span_h : stride], out=rows)
        out = combine(rows[:, 0:span_w:stride], rows[:, 1 : 1 + span_w : stride])  # (Ho, Wo, C)
        for dx in range(2, size):
            combine(out, rows[:, dx : dx + span_w : stride], out=out)
    if kind == "avg":
        out *= np.float32(1.0 / (size * size))
    return out


# NumPy's maximum against a scalar skips its SIMD loop (about 0.3 ns a value here); against an
# array of zeros it takes it (0.08 ns). So ReLU reads a shared zero block, chunk by chunk.
_ZEROS = np.zeros(2**18, dtype=np.float32)
_ZEROS.flags.writeable = False


def _max_with_zero(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = max(x, 0) element by element (NaN stays NaN, as np.maximum does); x float32."""
    if x.ndim == 0 or x.size == 0:
        return np.maximum(x, np.float32(0), out=out)
    row = x.size // x.shape[0]
    rows = _ZEROS.size // row if row else 0
    if rows == 0:  # one row bigger than the zero block: go one axis deeper, or scalar loop
        if x.ndim > 1:
            for i in range(x.shape[0]):
                _max_with_zero(x[i], out[i])
            return out
        return np.maximum(x, np.float32(0), out=out)
    for top in range(0, x.shape[0], rows):
        part = x[top : top + rows]
        np.maximum(part, _ZEROS[: part.size].reshape(part.shape), out=out[top : top + rows])
    return out


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0) as a new C-contiguous float32 array of x's shape (x float32, any layout)."""
    return _max_with_zero(x, np.empty(x.shape, dtype=np.float32))


def relu_(x: np.ndarray) -> np.ndarray:
    """Clamp negatives to zero in place and return x (float32, any shape)."""
    return _max_with_zero(x, x)


def softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis.

    z : ndarray of shape (n,) or (N, n)
    Returns probabilities of the same shape and float dtype (float32 for other inputs), summing
    to 1 along the last axis.
    """
    z = np.asarray(z, dtype=z.dtype if z.dtype.kind == "f" else np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e
