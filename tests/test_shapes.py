"""Shape arithmetic: worked examples, explanations, refusals with suggestions, and properties."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.cnn import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    InputSpec,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
    SpecError,
    build_network,
    conv_params,
    dense_params,
    infer_shapes,
    output_size,
    resolve_padding,
)
from app.cnn.errors import Fix
from app.cnn.shapes import fitting_kernel_sizes, fitting_paddings, fitting_strides
from tests.reference import random_network_spec


def net(h, w, c, *layers, seed=0):
    return NetworkSpec(InputSpec(h, w, c), tuple(layers), seed=seed)


def only_issue(report):
    assert not report.valid
    assert len(report.issues) == 1, report.issues
    return report.issues[0]


# Worked examples ---------------------------------------------------------------------------


def test_3x3_filter_with_stride_2_on_7x7_gives_3x3():
    report = infer_shapes(net(7, 7, 1, ConvSpec(1, 3, stride=2)))
    assert report.valid
    assert report.layers[0].output_shape == (3, 3, 1)
    assert report.layers[0].formula.startswith("(7 - 3 + 2*0)/2 + 1 = 3 -> 3x3x1")


def test_stride_5_on_7x7_is_refused_with_the_arithmetic():
    issue = only_issue(infer_shapes(net(7, 7, 1, ConvSpec(1, 3, stride=5))))
    assert (issue.layer, issue.field) == (0, "stride")
    assert "(7 - 3 + 2*0)/5 + 1 = 1.8" in issue.message
    assert issue.message.startswith("Layer 0 (conv)")
    assert "stride 1, 2 or 4" in issue.suggestion
    assert "Padding (F-1)/2 = 1 with stride 1 keeps the size 7x7" in issue.suggestion
    for s in (1, 2, 4):
        assert infer_shapes(net(7, 7, 1, ConvSpec(1, 3, stride=s))).valid
    with pytest.raises(SpecError) as caught:
        build_network(net(7, 7, 1, ConvSpec(1, 3, stride=5)))
    assert caught.value.issues == [issue]
    assert "1.8" in caught.value.message


def test_stride_5_on_7x7_carries_the_fix_the_largest_stride_that_fits():
    issue = only_issue(infer_shapes(net(7, 7, 1, ConvSpec(1, 3, stride=5))))
    # (7 - 3)/S + 1 is whole for S = 1, 2, 4: the largest up to 5 is 4, giving 2x2.
    assert issue.fix == Fix.set_to("stride", 4)
    assert issue.fix.to_dict() == {
        "label": "set stride to 4",
        "set": {"stride": 4},
        "insert_before": None,
        "drop": None,
    }
    assert infer_shapes(net(7, 7, 1, ConvSpec(1, 3, stride=4))).valid


def test_a_prebuilt_report_is_used_as_given():
    spec = net(7, 7, 1, ConvSpec(1, 3, stride=2))
    report = infer_shapes(spec)
    assert build_network(spec, report=report).report is report


def test_ten_5x5_filters_on_32x32x3_with_padding_2_give_32x32x10_and_760_params():
    report = infer_shapes(net(32, 32, 3, ConvSpec(10, 5, stride=1, padding=2)))
    (layer,) = report.layers
    assert layer.output_shape == (32, 32, 10)
    assert layer.params == 760 == report.total_params
    assert layer.formula == "(32 - 5 + 2*2)/1 + 1 = 32 -> 32x32x10; params (5*5*3 + 1)*10 = 760"


def test_flattening_4x4x3_gives_48_and_a_dense_layer_counts_its_params():
    report = infer_shapes(net(4, 4, 3, FlattenSpec(), DenseSpec(10)))
    assert report.valid
    assert [s.output_shape for s in report.layers] == [(48,), (10,)]
    assert report.layers[0].formula == "4*4*3 = 48"
    assert report.layers[1].formula == "(48 + 1)*10 = 490 params"
    assert report.total_params == 490


@pytest.mark.parametrize(("h", "w", "f"), [(32, 32, 5), (9, 14, 3), (5, 3, 1), (6, 7, 7)])
def test_same_padding_keeps_the_height_and_width(h, w, f):
    report = infer_shapes(net(h, w, 2, ConvSpec(4, f, padding="same")))
    assert report.valid
    assert report.layers[0].output_shape == (h, w, 4)


def test_pooling_halves_the_size_and_explains_it():
    report = infer_shapes(net(32, 32, 10, PoolSpec("max", 2), ReluSpec(), GlobalPoolSpec("avg")))
    assert [s.formula for s in report.layers] == [
        "(32 - 2 + 2*0)/2 + 1 = 16 -> 16x16x10",
        "same shape 16x16x10",
        "16x16x10 -> 1x1x10",
    ]
    assert [s.type for s in report.layers] == ["maxpool", "relu", "globalavgpool"]


def test_non_square_input_explains_height_and_width_separately():
    report = infer_shapes(net(9, 7, 3, ConvSpec(2, 3, stride=2)))
    assert report.layers[0].output_shape == (4, 3, 2)
    assert report.layers[0].formula.startswith(
        "height (9 - 3 + 2*0)/2 + 1 = 4, width (7 - 3 + 2*0)/2 + 1 = 3 -> 4x3x2"
    )


def test_width_is_checked_even_when_the_height_fits():
    issue = only_issue(infer_shapes(net(7, 8, 1, ConvSpec(1, 3, stride=2))))
    assert "output width (8 - 3 + 2*0)/2 + 1 = 3.5 is not a whole number" in issue.message
    assert "height" not in issue.message


def test_height_and_width_both_failing_are_both_shown():
    issue = only_issue(infer_shapes(net(8, 10, 1, ConvSpec(1, 3, stride=4))))
    assert "(8 - 3 + 2*0)/4 + 1 = 2.25" in issue.message
    assert "(10 - 3 + 2*0)/4 + 1 = 2.75" in issue.message


def test_a_repeating_fraction_is_rounded_in_the_message():
    issue = only_issue(infer_shapes(net(8, 8, 1, ConvSpec(1, 3, stride=3))))
    assert "(8 - 3 + 2*0)/3 + 1 = 2.667" in issue.message


def test_dense_on_a_3d_input_asks_for_a_flatten_layer():
    issue = only_issue(infer_shapes(net(4, 4, 3, DenseSpec(10))))
    assert issue.layer == 0
    assert "4x4x3" in issue.message
    assert "add a flatten layer before it" in issue.suggestion.lower()
    assert "4*4*3 = 48" in issue.suggestion


def test_conv_after_flatten_is_refused():
    issue = only_issue(infer_shapes(net(4, 4, 3, FlattenSpec(), ConvSpec(1, 3))))
    assert issue.layer == 1 and "3D input" in issue.message


def test_kernel_larger_than_the_padded_input_suggests_a_smaller_kernel_or_more_padding():
    issue = only_issue(infer_shapes(net(3, 4, 1, ConvSpec(1, 5))))
    assert issue.field == "kernel_size"
    assert "5x5 window is larger than the padded input 3x4" in issue.message
    assert "height 3 + 2*0 = 3" in issue.message
    (k,) = re.findall(r"kernel_size (\d+)", issue.suggestion)
    (p,) = re.findall(r"padding (\d+)", issue.suggestion)
    assert infer_shapes(net(3, 4, 1, ConvSpec(1, int(k)))).valid
    assert infer_shapes(net(3, 4, 1, ConvSpec(1, 5, padding=int(p)))).valid


def test_pool_window_larger_than_the_input_is_refused():
    issue = only_issue(infer_shapes(net(2, 2, 1, PoolSpec("avg", 3))))
    assert issue.field == "size" and "larger than the padded input 2x2" in issue.message


def test_pool_padding_more_than_half_the_window_is_refused():
    issue = only_issue(infer_shapes(net(8, 8, 1, PoolSpec("max", 2, padding=2))))
    assert issue.field == "padding" and "at most 1" in issue.message


def test_same_padding_with_an_even_kernel_or_a_stride_is_refused():
    even = only_issue(infer_shapes(net(8, 8, 1, ConvSpec(1, 4, padding="same"))))
    assert even.field == "padding" and "(4 - 1)/2 = 1.5" in even.message
    assert "kernel_size 3 or 5" in even.suggestion
    strided = only_issue(infer_shapes(net(8, 8, 1, ConvSpec(1, 3, stride=2, padding="same"))))
    assert strided.field == "padding" and "stride 1" in strided.suggestion


def test_resolve_padding_turns_names_into_numbers():
    assert resolve_padding("same", 5, 1) == 2
    assert resolve_padding("valid", 5, 3) == 0
    assert resolve_padding(3, 5, 2) == 3
    for bad in [("same", 4, 1), ("same", 3, 2), ("full", 3, 1)]:
        with pytest.raises(SpecError) as caught:
            resolve_padding(*bad)
        assert caught.value.issues[0].field == "padding"


def test_flatten_of_an_already_flat_input_keeps_it():
    report = infer_shapes(net(2, 3, 4, FlattenSpec(), FlattenSpec()))
    assert report.valid and report.layers[1].output_shape == (24,)


# Structural sanity -------------------------------------------------------------------------

STRUCTURAL = [
    (ConvSpec(0, 3), "filters"),
    (ConvSpec(2, 0), "kernel_size"),
    (ConvSpec(2, 3, stride=0), "stride"),
    (ConvSpec(2, 3, padding=-1), "padding"),
    (ConvSpec(2, 3, padding="full"), "padding"),
    (ConvSpec(2, 3, activation="tanh"), "activation"),
    (ConvSpec(2, 3, init="gabor"), "init"),
    (ConvSpec(2, 5, init="sobel_x"), "kernel_size"),
    (ConvSpec(2.5, 3), "filters"),
    (ConvSpec(True, 3), "filters"),
    (PoolSpec("median", 2), "kind"),
    (PoolSpec("max", 0), "size"),
    (PoolSpec("max", 2, stride=0), "stride"),
    (PoolSpec("avg", 2, padding=-1), "padding"),
    (GlobalPoolSpec("sum"), "kind"),
    (DenseSpec(0), "units"),
    (DenseSpec(3, activation="sigmoid"), "activation"),
    ("conv", "type"),
]


@pytest.mark.parametrize(("layer", "field"), STRUCTURAL)
def test_impossible_field_values_are_issues_naming_the_layer_and_field(layer, field):
    report = infer_shapes(net(8, 8, 3, ReluSpec(), layer))
    issue = only_issue(report)
    assert (issue.layer, issue.field) == (1, field)
    assert issue.message.startswith("Layer 1 (")
    assert issue.suggestion
    assert [s.type for s in report.layers] == ["relu"]


@pytest.mark.parametrize("field", ["height", "width", "channels"])
def test_an_empty_input_is_an_issue_of_the_whole_network(field):
    sizes = {"height": 4, "width": 4, "channels": 1, field: 0}
    issue = only_issue(infer_shapes(NetworkSpec(InputSpec(**sizes), (ReluSpec(),))))
    assert (issue.layer, issue.field) == (None, field)


def test_a_negative_seed_is_an_issue_but_shapes_are_still_shown():
    report = infer_shapes(net(4, 4, 1, ReluSpec(), seed=-1))
    assert only_issue(report).field == "seed"
    assert len(report.layers) == 1


def test_field_problems_in_later_layers_are_reported_after_a_shape_problem():
    report = infer_shapes(net(7, 7, 1, ConvSpec(1, 3, stride=5), ReluSpec(), DenseSpec(0)))
    assert [(i.layer, i.field) for i in report.issues] == [(0, "stride"), (2, "units")]
    assert report.layers == [] and report.total_params == 0


def test_layers_are_listed_up_to_the_first_impossible_one():
    report = infer_shapes(net(8, 8, 1, ConvSpec(2, 3), PoolSpec("max", 4), DenseSpec(3)))
    assert [s.index for s in report.layers] == [0]
    assert report.total_params == 20
    assert report.issues[0].layer == 1


@pytest.mark.parametrize(
    ("layer", "field", "expected"),
    [
        (ConvSpec(2, 3, weights=np.zeros((2, 3, 3, 1))), "weights", "(2, 3, 3, 3)"),
        (ConvSpec(2, 3, bias=np.zeros(3)), "bias", "(2,)"),
        (ConvSpec(2, 3, weights=np.full((2, 3, 3, 3), np.nan)), "weights", "NaN"),
        (ConvSpec(1, 1, weights=[[[[1, 2, 3]]], [[[1]]]]), "weights", "rectangular"),
    ],
)
def test_given_conv_weights_of_the_wrong_shape_name_expected_and_got(layer, field, expected):
    issue = only_issue(infer_shapes(net(5, 5, 3, layer)))
    assert issue.field == field and expected in issue.message


def test_given_dense_weights_of_the_wrong_shape_name_expected_and_got():
    spec = net(2, 2, 1, FlattenSpec(), DenseSpec(3, weights=np.zeros((4, 3))))
    issue = only_issue(infer_shapes(spec))
    assert (issue.layer, issue.field) == (1, "weights")
    assert "(4, 3)" in issue.message and "(3, 4)" in issue.message


# Properties --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12), st.integers(0, 6), st.integers(1, 6))
def test_output_size_counts_the_window_positions(n, f, p, s):
    positions = len([t for t in range(n + 2 * p) if t * s + f <= n + 2 * p])
    size = output_size(n, f, p, s)
    if f <= n + 2 * p:
        assert int(size) == positions  # floor of the formula is the count
        if size.denominator == 1:
            assert size == positions
    else:
        assert positions == 0 and size < 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=2), st.integers(1, 9), st.integers(0, 4))
def test_every_fitting_stride_padding_and_kernel_really_fits(sizes, f, p):
    sizes = tuple(sizes)

    def fits(f_, p_, s_):
        return all(
            output_size(n, f_, p_, s_).denominator == 1 and output_size(n, f_, p_, s_) >= 1
            for n in sizes
        )

    for s in fitting_strides(sizes, f, p):
        assert fits(f, p, s)
    for s in (1, 2, 3):
        for p2 in fitting_paddings(sizes, f, s, 4):
            assert fits(f, p2, s)
        for f2 in fitting_kernel_sizes(sizes, p, s):
            assert fits(f2, p, s)
    if f <= min(sizes) + 2 * p:
        assert 1 in fitting_strides(sizes, f, p)


@st.composite
def non_whole_convs(draw):
    h, w = draw(st.integers(2, 20)), draw(st.integers(2, 20))
    p = draw(st.integers(0, 2))
    f = draw(st.integers(1, min(h, w) + 2 * p))
    s = draw(st.integers(2, 6))
    return h, w, f, s, p


@settings(max_examples=150, deadline=None)
@given(non_whole_convs())
def test_every_value_a_stride_suggestion_names_actually_works(case):
    h, w, f, s, p = case
    report = infer_shapes(net(h, w, 1, ConvSpec(1, f, stride=s, padding=p)))
    if report.valid:
        return
    text = report.issues[0].suggestion
    strides = re.match(r"Use stride ([\d, or]+)", text)
    assert strides, text
    for s2 in re.findall(r"\d+", strides.group(1)):
        assert infer_shapes(net(h, w, 1, ConvSpec(1, f, stride=int(s2), padding=p))).valid
    keep = re.search(r"keep stride \d+ with padding ([\d, or]+)", text)
    for p2 in re.findall(r"\d+", keep.group(1)) if keep else []:
        assert infer_shapes(net(h, w, 1, ConvSpec(1, f, stride=s, padding=int(p2)))).valid
    same = re.search(r"Padding \(F-1\)/2 = (\d+) with stride 1 keeps the size (\d+)x(\d+)", text)
    if same:
        shape = infer_shapes(net(h, w, 1, ConvSpec(1, f, padding=int(same.group(1))))).layers
        assert shape[0].output_shape == (int(same.group(2)), int(same.group(3)), 1) == (h, w, 1)


@st.composite
def raw_layers(draw):
    """Layers with arbitrary small settings; many stacks made of them are impossible."""
    kind = draw(st.sampled_from(["conv", "pool", "global", "relu", "flatten", "dense"]))
    if kind == "conv":
        padding = draw(st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"])))
        f, s, k = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
        return ConvSpec(k, f, s, padding, activation=draw(st.sampled_from(["relu", "none"])))
    if kind == "pool":
        size = draw(st.integers(1, 4))
        stride = draw(st.one_of(st.none(), st.integers(1, 4)))
        return PoolSpec(
            draw(st.sampled_from(["max", "avg"])), size, stride, draw(st.integers(0, 2))
        )
    if kind == "global":
        return GlobalPoolSpec(draw(st.sampled_from(["max", "avg"])))
    if kind == "dense":
        return DenseSpec(
            draw(st.integers(1, 5)), draw(st.sampled_from(["none", "relu", "softmax"]))
        )
    return ReluSpec() if kind == "relu" else FlattenSpec()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(1, 3),
    st.lists(raw_layers(), min_size=1, max_size=5),
    st.integers(0, 1000),
)
def test_whenever_shapes_say_valid_forward_produces_exactly_those_shapes(h, w, c, layers, seed):
    spec = net(h, w, c, *layers, seed=seed)
    report = infer_shapes(spec)
    if not report.valid:
        assert report.issues and len(report.layers) < len(layers)
        with pytest.raises(SpecError) as caught:
            build_network(spec)
        assert caught.value.issues == report.issues
        return
    network = build_network(spec)
    image = np.random.default_rng(seed).random((h, w, c), dtype=np.float32)
    outputs = network.forward(image)
    assert [o.shape for o in outputs] == [s.output_shape for s in report.layers]
    assert all(o.dtype == np.float32 for o in outputs)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_params_formula_equals_the_weights_and_biases_actually_created(seed):
    network = build_network(random_network_spec(np.random.default_rng(seed)))
    for layer, shape in zip(network.layers, network.report.layers, strict=True):
        created = layer.weights.size + layer.bias.size if hasattr(layer, "weights") else 0
        assert created == shape.params == layer.param_count
    assert network.report.total_params == sum(s.params for s in network.report.layers)


def test_params_formulas():
    assert conv_params(5, 3, 10) == 760
    assert conv_params(1, 1, 1) == 2
    assert dense_params(48, 10) == 490


def test_absurd_numbers_are_refused_with_suggestions_that_work():
    spec = net(32, 32, 3, ConvSpec(2, 5, stride=3, padding=10**9))
    issue = only_issue(infer_shapes(spec))
    assert "keep stride 3 with padding 0 or 3" in issue.suggestion
    for p in (0, 3):
        assert infer_shapes(net(32, 32, 3, ConvSpec(2, 5, stride=3, padding=p))).valid
    huge_kernel = only_issue(infer_shapes(net(32, 32, 3, ConvSpec(2, 10**9))))
    assert huge_kernel.suggestion == "Use kernel_size 32."


def test_numpy_integers_count_as_whole_numbers():
    spec = NetworkSpec(InputSpec(np.int64(8), 8, 3), (ConvSpec(np.int32(2), 3),))
    assert infer_shapes(spec).valid
