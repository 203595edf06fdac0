"""The fast kernels against the slow loop references in tests/reference.py."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.cnn import im2col
from app.cnn.im2col import conv2d, pool2d, relu_, softmax
from tests import reference as ref


@st.composite
def conv_cases(draw):
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    c, k = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    p = draw(st.integers(0, 3))
    f = draw(st.integers(1, min(h, w) + 2 * p))
    s = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    return h, w, c, k, f, s, p, seed


@settings(max_examples=150, deadline=None)
@given(conv_cases())
def test_conv2d_matches_the_loop_reference_for_any_stride_padding_and_shape(case):
    h, w, c, k, f, s, p, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((h, w, c)).astype(np.float32)
    wt = rng.standard_normal((k, f, f, c)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    out = conv2d(x, wt, b, s, p)
    assert out.dtype == np.float32
    ref.assert_matches(out, ref.conv(x, wt, b, s, p))


@pytest.mark.parametrize("budget", [1, 200, 5000])
def test_conv2d_gives_the_same_result_when_chunked_over_output_rows(monkeypatch, budget):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((13, 10, 3)).astype(np.float32)
    wt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    whole = conv2d(x, wt, b, 2, 1)
    monkeypatch.setattr(im2col, "IMAGE_COLUMN_BUDGET_BYTES", budget)
    np.testing.assert_array_equal(conv2d(x, wt, b, 2, 1), whole)
    ref.assert_matches(whole, ref.conv(x, wt, b, 2, 1))


def _conv_by_offsets(x, w, stride, padding):
    """An independent vectorised conv: one shifted slice per kernel offset, in float64."""
    k, f, _, _ = w.shape
    xp = np.pad(x.astype(np.float64), ((padding, padding), (padding, padding), (0, 0)))
    ho = (x.shape[0] - f + 2 * padding) // stride + 1
    wo = (x.shape[1] - f + 2 * padding) // stride + 1
    out = np.zeros((ho, wo, k))
    for fy in range(f):
        for fx in range(f):
            cells = xp[fy : fy + stride * ho : stride, fx : fx + stride * wo : stride]
            out += cells @ w[:, fy, fx, :].T.astype(np.float64)
    return out


def test_a_512x512_rgb_image_through_8_7x7_stride_2_filters_is_right_in_every_chunk():
    # (512 - 7 + 2*3)/2 + 1 = 256.5: conv2d floors like other frameworks (networks refuse it).
    rng = np.random.default_rng(1)
    image = rng.random((512, 512, 3), dtype=np.float32)
    wt = rng.standard_normal((8, 7, 7, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    out = conv2d(image, wt, b, 2, 3)
    assert out.shape == (256, 256, 8)
    ref.assert_matches(out, _conv_by_offsets(image, wt, 2, 3) + b)


def test_conv2d_accepts_float64_and_non_contiguous_input():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8, 2))[:, ::-1]  # float64, negative strides
    wt = rng.standard_normal((2, 3, 3, 2))
    out = conv2d(x, wt, np.zeros(2), 1, 1)
    assert out.dtype == np.float32
    ref.assert_matches(out, ref.conv(x, wt, np.zeros(2), 1, 1))


@pytest.mark.parametrize(
    "x",
    [
        np.tile(np.arange(6, dtype=np.float32), (5, 1))[:, :, None],  # length-1 axis, stride 0
        np.broadcast_to(np.arange(6, dtype=np.float32)[None, :, None], (5, 6, 2)),
        np.arange(30, dtype=np.float32).reshape(1, 30, 1)[:, ::3],
    ],
)
def test_conv2d_reads_unusually_strided_inputs_correctly(x):
    for f, p in [(1, 0), (1, 1)]:
        w_f = np.random.default_rng(f).standard_normal((2, f, f, x.shape[2])).astype(np.float32)
        ref.assert_matches(conv2d(x, w_f, np.zeros(2), 1, p), ref.conv(x, w_f, np.zeros(2), 1, p))
    if min(x.shape[:2]) >= 3:
        w3 = np.random.default_rng(3).standard_normal((2, 3, 3, x.shape[2])).astype(np.float32)
        ref.assert_matches(conv2d(x, w3, np.zeros(2), 1, 0), ref.conv(x, w3, np.zeros(2), 1, 0))


def test_conv2d_refuses_weights_with_the_wrong_channel_count():
    with pytest.raises(ValueError, match="do not fit"):
        conv2d(
            np.zeros((4, 4, 3), np.float32), np.zeros((1, 3, 3, 2), np.float32), np.zeros(1), 1, 0
        )


@st.composite
def pool_cases(draw):
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    size = draw(st.integers(1, 4))
    p = draw(st.integers(0, size // 2))
    if size > min(h, w) + 2 * p:
        size = min(h, w) + 2 * p
        p = min(p, size // 2)
    return (
        h,
        w,
        draw(st.integers(1, 4)),
        size,
        draw(st.integers(1, 4)),
        p,
        draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=150, deadline=None)
@given(pool_cases(), st.sampled_from(["max", "avg"]))
def test_pool2d_matches_the_loop_reference_for_both_kinds_with_padding(case, kind):
    h, w, c, size, s, p, seed = case
    x = np.random.default_rng(seed).standard_normal((h, w, c)).astype(np.float32)
    out = pool2d(x, size, s, p, kind)
    assert out.dtype == np.float32
    ref.assert_matches(out, ref.pool(x, size, s, p, kind))


def test_max_pool_padding_never_wins_even_when_every_value_is_negative():
    x = -np.ones((4, 4, 1), np.float32) - np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    out = pool2d(x, 3, 2, 1, "max")
    assert out.max() < 0
    ref.assert_matches(out, ref.pool(x, 3, 2, 1, "max"))


def test_avg_pool_counts_padding_as_zeros():
    out = pool2d(np.ones((2, 2, 1), np.float32), 2, 2, 1, "avg")
    np.testing.assert_allclose(out[:, :, 0], np.full((2, 2), 0.25))


def test_pool2d_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="max"):
        pool2d(np.zeros((2, 2, 1), np.float32), 2, 2, 0, "median")


def test_relu_works_in_place_and_matches_the_reference():
    x = np.random.default_rng(1).standard_normal((5, 4, 3)).astype(np.float32)
    expected = ref.relu(x)
    y = relu_(x)
    assert y is x
    ref.assert_matches(x, expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-80, 80, width=32), min_size=1, max_size=12))
def test_softmax_matches_the_reference_and_sums_to_one(values):
    z = np.array(values, np.float32)
    p = softmax(z)
    ref.assert_matches(p, ref.softmax(z))
    assert abs(float(p.sum()) - 1.0) < 1e-5


def test_softmax_is_stable_for_huge_logits():
    p = softmax(np.array([1000.0, 1001.0, -1000.0], np.float32))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, ref.softmax(np.array([0.0, 1.0, -2000.0])), rtol=1e-6)


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (3, 0)])
@pytest.mark.parametrize("budget", [1, 5000, im2col.IMAGE_COLUMN_BUDGET_BYTES])
def test_channels_first_and_channels_last_columns_give_the_same_conv(
    monkeypatch, stride, padding, budget
):
    # Each input takes one route by default; forcing the other must not change the result.
    rng = np.random.default_rng(11)
    x = rng.standard_normal((17, 12, 6)).astype(np.float32)
    wt = rng.standard_normal((5, 3, 3, 6)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    monkeypatch.setattr(im2col, "IMAGE_COLUMN_BUDGET_BYTES", budget)
    routes = {}
    for first in (True, False):
        monkeypatch.setattr(im2col, "CHANNELS_FIRST_BELOW", 10**6 if first else 0)
        monkeypatch.setattr(im2col, "CHANNELS_FIRST_MAX_CHANNELS", 10**6 if first else 0)
        routes[first] = conv2d(x, wt, b, stride, padding)
    expected = ref.conv(x, wt, b, stride, padding)
    ref.assert_matches(routes[True], expected)
    ref.assert_matches(routes[False], expected)
    assert routes[True].shape == routes[False].shape == expected.shape


def test_a_channels_first_result_is_a_view_that_behaves_like_an_array():
    # Stride 1 over 3 channels: computed on the padded width, returned as a view of it.
    rng = np.random.default_rng(12)
    x = rng.standard_normal((9, 7, 3)).astype(np.float32)
    wt = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    out = conv2d(x, wt, np.zeros(4, np.float32), 1, 1)
    assert out.shape == (9, 7, 4)
    expected = ref.conv(x, wt, np.zeros(4), 1, 1)
    buf = io.BytesIO()
    np.save(buf, out)
    buf.seek(0)
    ref.assert_matches(np.load(buf), expected)
    ref.assert_matches(out.reshape(-1), expected.reshape(-1))
    relu_(out)
    ref.assert_matches(out, np.maximum(expected, 0))


@pytest.mark.parametrize(
    "shape",
    [(), (0, 3), (7,), (5, 4, 3), (300, 300, 4), (1, 2**18 + 5), (3, 2**18 + 1, 1)],
)
def test_relu_matches_the_definition_for_any_shape_and_layout(shape):
    # The chunked route, a row bigger than the zero block, empty and 0-d arrays, and a view.
    rng = np.random.default_rng(13)
    x = rng.standard_normal(shape).astype(np.float32)
    expected = np.where(x > 0, x, np.float32(0))
    got = im2col.relu(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got, expected)
    if x.ndim >= 2 and x.shape[1] > 1:
        view = x[:, ::2]
        np.testing.assert_array_equal(im2col.relu(view), np.where(view > 0, view, 0))
    inplace = x.copy()
    assert relu_(inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)


def test_relu_keeps_nan_and_infinities_as_max_does():
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, -1.0, 2.5], np.float32)
    got = im2col.relu(x)
    np.testing.assert_array_equal(got, np.maximum(x, np.float32(0)))
    assert np.isnan(got[:2]).all() and got[2] == np.inf and got[3] == 0
