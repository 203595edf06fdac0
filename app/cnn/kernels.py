"""Named preset kernels and seeded He-normal initialisation."""

from __future__ import annotations

import math

import numpy as np

from .errors import LayerIssue, SpecError

PRESET_KERNELS: dict[str, np.ndarray] = {
    name: np.asarray(k, dtype=np.float32)
    for name, k in {
        "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
        "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
        "sobel_y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
        "blur": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
        "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
        "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
        "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    }.items()
}


def preset_weights(name: str, filters: int, kernel_size: int, channels: int) -> np.ndarray:
    """Conv weights that apply one named 3x3 kernel to every input channel.

    Returns ndarray of shape (K, F, F, C) = (filters, 3, 3, channels), float32. Each filter is the
    kernel divided by C, so a grey image given as RGB responds exactly like one channel of it.
    """
    if name not in PRESET_KERNELS:
        known = ", ".join(sorted(PRESET_KERNELS))
        raise SpecError(
            [
                LayerIssue(
                    None, "init", f"Unknown preset kernel {name!r}.", f"Use 'he' or one of {known}."
                )
            ]
        )
    if kernel_size != 3:
        raise SpecError(
            [
                LayerIssue(
                    None,
                    "kernel_size",
                    f"The preset kernel {name!r} is 3x3, but kernel_size is {kernel_size}.",
                    "Use kernel_size 3 with a preset kernel, or init 'he'.",
                )
            ]
        )
    per_channel = PRESET_KERNELS[name] / np.float32(channels)  # (3, 3)
    w = np.broadcast_to(per_channel[None, :, :, None], (filters, 3, 3, channels))
    return np.ascontiguousarray(w, dtype=np.float32)


# Normals are drawn in float64 (the stream every seed has always given) this many at a time, so a
# 10-million-weight dense layer needs no 80 MB float64 temporaries, only this small block.
_DRAW_BLOCK = 2**15


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """He-normal weights: N(0, 2 / fan_in), float32 of the given shape.

    The same values, bit for bit, as (rng.standard_normal(shape) * scale).astype(float32), and
    rng ends at the same point of its stream.
    """
    scale = np.sqrt(2.0 / fan_in)
    out = np.empty(math.prod(shape), dtype=np.float32)
    block = np.empty(min(out.size, _DRAW_BLOCK))
    for start in range(0, out.size, _DRAW_BLOCK):
        part = block[: min(_DRAW_BLOCK, out.size - start)]
        rng.standard_normal(out=part)
        part *= scale
        out[start : start + part.size] = part
    return out.reshape(shape)
