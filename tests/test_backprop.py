"""The backward pass of one image (app/cnn/backprop.py) against central differences of the slow
loop references (tests/reference.py) in float64, on many random stacks and both losses."""

from __future__ import annotations

import numpy as np
import pytest

from app.cnn import build_network
from app.cnn.backprop import LossError, gradient_check, gradients, loss_of, sgd_step
from app.cnn.errors import ExplainError
from app.cnn.explain_gradient import explain_gradient
from app.cnn.spec import ConvSpec, DenseSpec, FlattenSpec, InputSpec, NetworkSpec, PoolSpec
from tests import reference as ref

STEP = 1e-5
# float32 gradients against float64 differences: the relative error of the sampled vector.
FLOAT32_TOLERANCE = 1e-4
FLOAT64_TOLERANCE = 1e-6
SAMPLES = 10  # elements of each array checked by central differences


def ref_loss(network, start: int, x: np.ndarray, target: int, loss: str) -> float:
    """L computed by the loop references from x entering layer `start`."""
    out = ref.forward_from(network, start, x)[-1].reshape(-1)
    return float(out[target]) if loss == "score" else float(-np.log(out[target]))


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if scale < 1e-12 else float(np.linalg.norm(a - b) / scale)


def sampled_central_differences(
    loss, array: np.ndarray, rng: np.random.Generator, leave_out_ties: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices, (L(a + h) - L(a - h)) / 2h at them) for a few elements of a float64 array
    (changed in place and restored).

    Exact zeros are left out: a layer output that a relu made 0 sits on the kink of any relu or
    max pool after it, where the two one-sided slopes differ and a central difference gives
    their mean (the backward pass gives the subgradient 0, as every framework does).
    """
    flat = array.reshape(-1)
    keep = flat != 0.0
    if leave_out_ties:  # values that occur twice: see tests/test_gradients_api.central_differences
        values, counts = np.unique(flat, return_counts=True)
        keep &= ~np.isin(flat, values[counts > 1])
    allowed = np.flatnonzero(keep)
    if allowed.size == 0:
        return allowed, np.zeros(0)
    picks = rng.choice(allowed, size=min(SAMPLES, allowed.size), replace=False)
    numeric = []
    for i in picks:
        old = flat[i]
        flat[i] = old + STEP
        up = loss()
        flat[i] = old - STEP
        down = loss()
        flat[i] = old
        numeric.append((up - down) / (2 * STEP))
    return picks, np.array(numeric)


def stacks(count: int, seed: int) -> list[NetworkSpec]:
    """Random valid stacks (tests/reference.random_network_spec): strides, paddings, both pools,
    global pools, given weights and presets, 1 to 4 channels, every dense activation."""
    rng = np.random.default_rng(seed)
    return [ref.random_network_spec(rng) for _ in range(count)]


def check_every_gradient(spec: NetworkSpec, loss: str, dtype: type, tolerance: float) -> None:
    rng = np.random.default_rng(abs(hash((spec.seed, loss))) % 2**32)
    network = build_network(spec, dtype)
    reference = build_network(spec, np.float64)  # the same weights, for the loop references
    image = rng.random(network.input_shape)
    target = int(rng.integers(0, network.n_classes))
    got = gradients(network, image.astype(dtype), target, loss)
    assert got.loss_value == pytest.approx(ref_loss(reference, 0, image, target, loss), rel=1e-4)
    # dL/d(input), then dL/d(each layer's output), dL/dW, dL/db
    checks = [(got.input_grad, image.copy(), lambda x: ref_loss(reference, 0, x, target, loss))]
    outputs = ref.forward(reference, image)
    for i in range(len(network.layers) - 1):
        checks.append(
            (
                got.output_grads[i],
                outputs[i].copy(),
                lambda x, i=i: ref_loss(reference, i + 1, x, target, loss),
            )
        )
    for i, layer in enumerate(reference.layers):
        if got.weight_grads[i] is None:
            continue
        for analytic, param in (
            (got.weight_grads[i], layer.weights),
            (got.bias_grads[i], layer.bias),
        ):
            checks.append((analytic, param, lambda _: ref_loss(reference, 0, image, target, loss)))
    for analytic, array, loss_at in checks:
        assert analytic.shape == array.shape
        assert analytic.dtype == np.dtype(dtype)
        picks, numeric = sampled_central_differences(lambda a=array, f=loss_at: f(a), array, rng)
        assert rel_error(analytic.reshape(-1)[picks].astype(np.float64), numeric) < tolerance


def ends_in_softmax(spec: NetworkSpec) -> bool:
    last = spec.layers[-1]
    return isinstance(last, DenseSpec) and last.activation == "softmax"


RANDOM = stacks(40, seed=2026)


@pytest.mark.parametrize("spec", RANDOM, ids=[f"stack{i}" for i in range(len(RANDOM))])
def test_every_gradient_of_the_score_matches_central_differences_in_float32(spec) -> None:
    check_every_gradient(spec, "score", np.float32, FLOAT32_TOLERANCE)


@pytest.mark.parametrize(
    "spec", [s for s in RANDOM if ends_in_softmax(s)], ids=lambda s: f"seed{s.seed}"
)
def test_every_gradient_of_the_cross_entropy_matches_central_differences(spec) -> None:
    check_every_gradient(spec, "cross_entropy", np.float32, FLOAT32_TOLERANCE)
    check_every_gradient(spec, "cross_entropy", np.float64, FLOAT64_TOLERANCE)


POST = NetworkSpec(
    InputSpec(32, 32, 3),
    (ConvSpec(10, 5, 1, 2), PoolSpec("max", 2), FlattenSpec(), DenseSpec(10, "softmax")),
    seed=0,
)


def test_cross_entropy_is_minus_log_p_and_its_logit_gradient_is_p_minus_onehot() -> None:
    network = build_network(POST)
    image = np.random.default_rng(1).random((32, 32, 3), dtype=np.float32)
    got = gradients(network, image, 3, "cross_entropy")
    p = network.forward(image)[-1].astype(np.float64)
    assert got.loss_value == pytest.approx(-np.log(p[3]), rel=1e-5)
    onehot = np.eye(10)[3]
    np.testing.assert_allclose(got.pre_activation_grads[-1], p - onehot, atol=1e-6)
    assert got.output_grads[-1][3] == pytest.approx(-1 / p[3], rel=1e-4)
    assert loss_of(network, image, 3, "cross_entropy") == pytest.approx(got.loss_value, rel=1e-6)


def test_a_shared_network_is_left_as_it_was() -> None:
    network = build_network(POST)
    image = np.random.default_rng(2).random((32, 32, 3), dtype=np.float32)
    weights = network.layers[0].weights.copy()
    first_needs_dx = network.layers[0].need_input_grad
    before = network.forward(image)
    gradients(network, image, 1, "cross_entropy")
    np.testing.assert_array_equal(network.layers[0].weights, weights)
    assert network.layers[0].need_input_grad == first_needs_dx
    for a, b in zip(network.forward(image), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cross_entropy_needs_a_softmax_end_and_targets_must_exist() -> None:
    plain = build_network(
        NetworkSpec(InputSpec(4, 4, 1), (FlattenSpec(), DenseSpec(3, "relu")), seed=0)
    )
    image = np.zeros((4, 4, 1), np.float32)
    with pytest.raises(LossError, match="loss=score"):
        gradients(plain, image, 0, "cross_entropy")
    with pytest.raises(LossError, match=r"use 0\.\.2"):
        gradients(plain, image, 3, "score")
    with pytest.raises(LossError, match="cross_entropy' or 'score"):
        gradients(plain, image, 0, "hinge")


def assert_terms_add_up(found: dict, value: float) -> None:
    assert found["value"] == pytest.approx(value, rel=1e-6, abs=1e-12)
    total = sum(term["product"] for term in found["terms"])
    scale = sum(abs(term["product"]) for term in found["terms"]) + abs(value)
    assert abs(total - value) <= 1e-5 * scale + 1e-9, (found["formula"], total, value)


@pytest.mark.parametrize("loss", ["score", "cross_entropy"])
@pytest.mark.parametrize("case", range(12))
def test_each_gradient_explained_is_terms_that_add_up_to_it(case: int, loss: str) -> None:
    specs = [s for s in RANDOM if loss == "score" or ends_in_softmax(s)]
    spec = specs[case % len(specs)]
    rng = np.random.default_rng(case)
    network = build_network(spec)
    image = rng.random(network.input_shape, dtype=np.float32)
    target = int(rng.integers(0, network.n_classes))
    got = gradients(network, image, target, loss)
    for index, layer in enumerate(network.layers):
        shape = layer.output_shape
        for _ in range(3):
            pos = tuple(int(rng.integers(0, n)) for n in shape)
            where = {"i": pos[0]} if len(shape) == 1 else dict(zip("yxc", pos, strict=True))
            found = explain_gradient(network, got, index, **where)
            assert_terms_add_up(found, float(got.output_grads[index][pos]))
        if got.weight_grads[index] is None:
            continue
        for _ in range(3):
            w = tuple(int(rng.integers(0, n)) for n in layer.weights.shape)
            found = explain_gradient(network, got, index, weight=w)
            assert_terms_add_up(found, float(got.weight_grads[index][w]))
        k = int(rng.integers(0, layer.bias.shape[0]))
        assert_terms_add_up(
            explain_gradient(network, got, index, bias=k), float(got.bias_grads[index][k])
        )


def test_explaining_a_gradient_that_does_not_exist_says_what_exists() -> None:
    network = build_network(POST)
    got = gradients(network, np.zeros((32, 32, 3), np.float32), 0, "cross_entropy")
    with pytest.raises(ExplainError, match=r"y must be in 0\.\.31"):
        explain_gradient(network, got, 0, y=32, x=0, c=0)
    with pytest.raises(ExplainError, match="has no weights"):
        explain_gradient(network, got, 1, weight=(0, 0, 0, 0))
    with pytest.raises(ExplainError, match="k,fy,fx,c"):
        explain_gradient(network, got, 0, weight=(0, 0))
    with pytest.raises(ExplainError, match=r"Layer index must be in 0\.\.3"):
        explain_gradient(network, got, 4, i=0)


def test_the_gradient_check_agrees_with_backprop_for_weights_and_biases() -> None:
    network = build_network(POST)
    image = np.random.default_rng(3).random((32, 32, 3), dtype=np.float32)
    before = network.layers[0].weights.copy()
    for index, where in ((0, {"weight": (2, 1, 3, 0)}), (0, {"bias": 4}), (3, {"weight": (1, 7)})):
        check = gradient_check(network, image, 5, "cross_entropy", index, **where, h=1e-4)
        assert check.relative_error < 1e-6, check
    np.testing.assert_array_equal(network.layers[0].weights, before)
    with pytest.raises(LossError, match="conv or dense"):
        gradient_check(network, image, 5, "cross_entropy", 1, weight=(0, 0, 0, 0))


@pytest.mark.parametrize("loss", ["cross_entropy", "score"])
def test_one_small_sgd_step_lowers_the_loss(loss: str) -> None:
    network = build_network(POST)
    image = np.random.default_rng(4).random((32, 32, 3), dtype=np.float32)
    for target in range(3):
        got = gradients(network, image, target, loss)
        stepped = build_network(sgd_step(network, got, 1e-3))
        after = loss_of(stepped, image, target, loss)
        # a descent step lowers L for either loss (for score: the raw output value itself)
        assert after < got.loss_value
        changed = stepped.layers[0].weights - network.layers[0].weights
        np.testing.assert_allclose(changed, -1e-3 * got.weight_grads[0], atol=1e-7)
