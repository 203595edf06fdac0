"""Arrays -> palette PNGs: per-channel normalisation, colour maps, grids and flat strips."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.web.render import (
    DIVERGING_PALETTE,
    GAP_INDEX,
    VIRIDIS_PALETTE,
    encode_channel,
    encode_grid,
    flat_layout,
    grid_layout,
    layer_colours,
    render_channel,
    render_flat,
    render_grid,
    render_image,
)

TOP = 254  # the highest colour index; 255 is the gap


def indices(png: bytes) -> tuple[np.ndarray, bytes]:
    """PNG bytes -> (palette indices (H, W) uint8, palette bytes)."""
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "P"
    return np.asarray(image), bytes(image.getpalette())


def test_a_channel_renders_at_native_size_from_lowest_to_highest_colour():
    a = np.arange(6 * 9, dtype=np.float32).reshape(6, 9) * 0.5 + 3
    idx, palette = indices(render_channel(a))
    assert idx.shape == (6, 9)
    assert idx[0, 0] == 0 and idx[-1, -1] == TOP
    assert np.all(np.diff(idx.reshape(-1).astype(int)) >= 0)  # order is kept
    assert palette == VIRIDIS_PALETTE


def test_the_viridis_palette_runs_from_purple_to_yellow_with_a_white_gap():
    rgb = np.frombuffer(VIRIDIS_PALETTE, np.uint8).reshape(256, 3)
    assert tuple(rgb[0]) == (68, 1, 84) and tuple(rgb[TOP]) == (253, 231, 37)
    assert tuple(rgb[GAP_INDEX]) == (255, 255, 255)
    brightness = rgb[: TOP + 1].astype(int).sum(axis=1)
    assert brightness[-1] > brightness[TOP // 2] > brightness[0]


@pytest.mark.parametrize(("value", "expected"), [(0.0, 0), (5.0, TOP // 2)])
def test_a_constant_channel_is_flat_without_dividing_by_zero(value, expected):
    with np.errstate(all="raise"):
        idx, _ = indices(render_channel(np.full((4, 5), value, np.float32)))
    assert np.all(idx == expected)


def test_negative_values_use_the_diverging_map_with_zero_in_the_middle():
    a = np.array([[-2.0, 0.0, 1.0]], np.float32)
    idx, palette = indices(render_channel(a))
    assert palette == DIVERGING_PALETTE
    assert idx[0, 0] == 0 and idx[0, 1] == TOP // 2
    assert idx[0, 2] == round(TOP / 2 + TOP / 4)  # 1 is half of the largest magnitude 2
    _, forced = indices(render_channel(np.abs(a), diverging=True))
    assert forced == DIVERGING_PALETTE


def test_nan_and_infinity_do_not_break_rendering():
    a = np.array([[np.nan, np.inf], [1.0, 2.0]], np.float32)
    idx, _ = indices(render_channel(a))
    assert idx.shape == (2, 2)


@pytest.mark.parametrize(
    ("n", "h", "w", "expected"),
    [(1, 5, 5, (1, 1)), (10, 8, 8, (3, 4)), (16, 8, 8, (4, 4)), (3, 8, 8, (2, 2)),
     (8, 4, 16, (4, 2))],
)  # fmt: skip
def test_grid_layout_is_about_square(n, h, w, expected):
    rows, cols = grid_layout(n, h, w)
    assert (rows, cols) == expected and rows * cols >= n


def test_a_grid_tiles_every_channel_in_reading_order_each_normalised_alone():
    h, w, c = 5, 7, 10
    rng = np.random.default_rng(0)
    a = rng.random((h, w, c)).astype(np.float32) * np.arange(1, c + 1) * 10  # different ranges
    idx, _ = indices(render_grid(a))
    rows, cols = grid_layout(c, h, w)
    assert idx.shape == (rows * (h + 1) - 1, cols * (w + 1) - 1)
    for k in range(c):
        r, q = divmod(k, cols)
        tile = idx[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w]
        assert tile.min() == 0 and tile.max() == TOP
        np.testing.assert_array_equal(tile, indices(render_channel(a[:, :, k]))[0])
    assert np.all(idx[h, :] == GAP_INDEX) and np.all(idx[:, w] == GAP_INDEX)
    last_row = idx[(rows - 1) * (h + 1) :, (c % cols) * (w + 1) :]
    assert np.all(last_row == GAP_INDEX)  # the cells after the last channel are background


def test_a_grid_of_a_layer_with_negatives_is_diverging_for_every_tile():
    a = np.stack([np.full((3, 3), 1.0), np.full((3, 3), -1.0)], axis=2).astype(np.float32)
    idx, palette = indices(render_grid(a))
    assert palette == DIVERGING_PALETTE
    assert np.all(idx[:3, :3] == TOP) and np.all(idx[:3, 4:] == 0)


@pytest.mark.parametrize(("n", "shape"), [(10, (1, 10)), (64, (1, 64)), (100, (10, 10)),
                                          (101, (10, 11))])  # fmt: skip
def test_a_flat_layer_is_a_strip_or_an_about_square_tile(n, shape):
    assert flat_layout(n) == shape
    a = np.linspace(-1, 1, n).astype(np.float32)
    idx, _ = indices(render_grid(a))
    assert idx.shape == shape
    assert idx.reshape(-1)[0] == 0 and idx.reshape(-1)[n - 1] == TOP
    assert np.all(idx.reshape(-1)[n:] == GAP_INDEX)
    assert render_flat(a) == render_grid(a)


def test_render_image_round_trips_the_input_pixels():
    pixels = np.random.default_rng(1).integers(0, 256, (6, 4, 3)).astype(np.float32) / 255
    image = Image.open(io.BytesIO(render_image(pixels)))
    assert image.mode == "RGB" and image.size == (4, 6)
    np.testing.assert_array_equal(np.asarray(image), np.rint(pixels * 255).astype(np.uint8))
    grey = Image.open(io.BytesIO(render_image(pixels[:, :, :1])))
    assert grey.mode == "L"


def test_wrong_dimensions_are_refused():
    with pytest.raises(ValueError, match="2D"):
        render_channel(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        render_grid(np.zeros((2, 2, 2, 2)))


@pytest.mark.parametrize("offset", [0.0, -0.3])  # all positive (viridis), some negative (diverging)
def test_layer_colours_draw_the_same_pngs_as_rendering_each_map(offset):
    a = (np.random.default_rng(2).random((5, 7, 4)) + offset).astype(np.float32)
    a[:, :, 2] = 0.5  # a constant channel
    colours = layer_colours(a)
    layer_diverging = bool(a.min() < 0)
    assert colours.diverging is layer_diverging and colours.channels == 4
    assert encode_grid(colours) == render_grid(a)
    for c in range(4):
        assert encode_channel(colours, c) == render_channel(a[:, :, c], diverging=layer_diverging)
    # A channel of a mixed-sign layer uses the layer's map even when the channel is all positive.
    if layer_diverging:
        positive = np.abs(a)
        positive[:, :, 0] = -1.0
        assert indices(encode_channel(layer_colours(positive), 1))[1] == DIVERGING_PALETTE


def test_layer_colours_of_a_flat_layer_have_one_map():
    a = np.linspace(-1, 1, 100, dtype=np.float32)
    colours = layer_colours(a)
    assert colours.channels == 1
    assert encode_channel(colours, 0) == encode_grid(colours) == render_flat(a)
    with pytest.raises(IndexError):
        encode_channel(colours, 1)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        layer_colours(np.zeros((2, 2)))
