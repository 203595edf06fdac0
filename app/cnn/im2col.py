"""The fast kernels: convolution by im2col + BLAS, pooling by strided slices.

Pure functions on float32 arrays of shape (H, W, C); no spec objects, no Python loops over pixels.
Output sizes use floor((N - F + 2P) / S) + 1; shapes.py refuses layers where that is not exact.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

# The im2col column buffer for one chunk of output rows stays under this many bytes, so a large
# image (3x512x512 through 7x7 filters) streams through the cache instead of one 38 MB matrix.
COLUMN_BUDGET_BYTES = 4 * 2**20


def _output_length(n: int, f: int, p: int, s: int) -> int:
    return (n - f + 2 * p) // s + 1


def _pad(x: np.ndarray, padding: int, fill: float) -> np.ndarray:
    """Copy x of shape (H, W, C) into a (H + 2P, W + 2P, C) float32 array filled with `fill`."""
    if padding == 0:
        return np.ascontiguousarray(x, dtype=np.float32)
    h, w, c = x.shape
    xp = np.full((h + 2 * padding, w + 2 * padding, c), fill, dtype=np.float32)
    xp[padding : padding + h, padding : padding + w] = x
    return xp


def conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """Cross-correlate an image with K filters (zero padding), before any activation.

    x : ndarray of shape (H, W, C)
    w : ndarray of shape (K, F, F, C)
    b : ndarray of shape (K,)
    Returns ndarray of shape (Ho, Wo, K), float32, Ho = (H - F + 2P) // S + 1 (same for width).
    """
    k, f, f2, c = w.shape
    if f != f2 or x.shape[2] != c:
        raise ValueError(f"weights {w.shape} do not fit input {x.shape}")
    xp = _pad(x, padding, 0.0)
    hp, wp, _ = xp.shape
    ho, wo = (
        _output_length(x.shape[0], f, padding, stride),
        _output_length(x.shape[1], f, padding, stride),
    )
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {f} does not fit the padded input {hp}x{wp}")
    out = np.empty((ho, wo, k), dtype=np.float32)
    row_bytes = wo * f * f * c * 4

    # For one output cell and one kernel row fy, the F*C values it reads are contiguous in xp,
    # so the window view is (Ho, Wo, F, F*C): a long contiguous inner run makes the copy fast.
    # Strides from the shape, not xp.strides: NumPy may report any stride (even 0) for a length-1
    # axis of a C-contiguous array, and as_strided would then read the wrong memory.
    s_item = xp.itemsize
    s_col, s_row = c * s_item, xp.shape[1] * c * s_item
    windows = as_strided(
        xp,
        shape=(ho, wo, f, f * c),
        strides=(stride * s_row, stride * s_col, s_row, s_item),
        writeable=False,
    )
    w_mat = np.ascontiguousarray(w, dtype=np.float32).reshape(k, f * f * c).T  # (F*F*C, K)
    rows = max(1, min(ho, COLUMN_BUDGET_BYTES // row_bytes))
    cols = np.empty((rows, wo, f, f * c), dtype=np.float32)  # reused by every chunk
    for top in range(0, ho, rows):
        n = min(rows, ho - top)
        np.copyto(cols[:n], windows[top : top + n])
        np.matmul(
            cols[:n].reshape(n * wo, f * f * c), w_mat, out=out[top : top + n].reshape(n * wo, k)
        )
    out += np.asarray(b, dtype=np.float32)
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
    xp = _pad(x, padding, -np.inf if kind == "max" else 0.0)
    ho = _output_length(x.shape[0], size, padding, stride)
    wo = _output_length(x.shape[1], size, padding, stride)
    if ho < 1 or wo < 1:
        raise ValueError(f"window {size} does not fit the padded input {xp.shape[0]}x{xp.shape[1]}")
    span_h, span_w = stride * (ho - 1) + 1, stride * (wo - 1) + 1

    # One strided slice per window offset (F*F of them), each covering every output cell at once.
    out = xp[0:span_h:stride, 0:span_w:stride].copy()
    combine = np.maximum if kind == "max" else np.add
    for dy in range(size):
        for dx in range(size):
            if dy or dx:
                combine(out, xp[dy : dy + span_h : stride, dx : dx + span_w : stride], out=out)
    if kind == "avg":
        out *= np.float32(1.0 / (size * size))
    return out


def relu_(x: np.ndarray) -> np.ndarray:
    """Clamp negatives to zero in place and return x (any shape)."""
    return np.maximum(x, 0, out=x)


def softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis.

    z : ndarray of shape (n,) (or (..., n))
    Returns float32 probabilities of the same shape, summing to 1 along the last axis.
    """
    z = np.asarray(z, dtype=np.float32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e
