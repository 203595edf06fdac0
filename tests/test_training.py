"""The optimisers and the mini-batch trainer, on tiny data (seconds, not minutes)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.cnn.layers import softmax_cross_entropy
from app.cnn.network import Network, build_network
from app.cnn.spec import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    InputSpec,
    NetworkSpec,
    PoolSpec,
)
from app.learning.optim import SGD, Adam, make_optimizer
from app.learning.parallel import DataParallel
from app.learning.trainer import TrainConfig, TrainError, evaluate, train

TINY = NetworkSpec(
    InputSpec(12, 12, 1),
    (
        ConvSpec(8, 3, padding=1),
        PoolSpec("max", 2),
        ConvSpec(4, 3, padding=1),
        GlobalPoolSpec("max"),
        FlattenSpec(),
        DenseSpec(2, "softmax"),
    ),
    seed=1,
)

# Tests marked slow start worker processes (workers=2, or the trainer's default on a machine
# of 2 or more cores); make test-quick leaves them out.


def bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 12x12 images with one bright bar: horizontal (class 0) or vertical (class 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.uniform(0, 0.4, (n, 12, 12, 1)).astype(np.float32)
    for i, at in enumerate(rng.integers(1, 10, n)):
        if y[i]:
            x[i, :, at : at + 2] += 0.6
        else:
            x[i, at : at + 2, :] += 0.6
    return x, y


@pytest.fixture(scope="module")
def tiny_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (*bars(240, seed=0), *bars(100, seed=1))


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimisers_walk_to_the_minimum_of_a_quadratic(name: str) -> None:
    target = np.array([[1.5, -2.0], [0.5, 3.0]])
    params = {"weights": np.zeros((2, 2)), "bias": np.zeros(2)}
    grads = {"weights": np.zeros((2, 2)), "bias": np.zeros(2)}
    optimizer = make_optimizer(name, [(params, grads)], learning_rate=0.05)
    weights = params["weights"]
    for _ in range(600):
        grads["weights"] = 2 * (params["weights"] - target)  # d/dw ||w - target||^2
        grads["bias"] = 2 * (params["bias"] - 1.0)
        optimizer.step()
    assert params["weights"] is weights  # updated in place: layers keep their arrays
    np.testing.assert_allclose(params["weights"], target, atol=1e-3)
    np.testing.assert_allclose(params["bias"], 1.0, atol=1e-3)


def test_sgd_momentum_accumulates_velocity() -> None:
    params, grads = {"weights": np.zeros(1)}, {"weights": np.ones(1)}
    sgd = SGD([(params, grads)], learning_rate=0.1, momentum=0.9)
    sgd.step()
    sgd.step()  # v = 1, then 0.9 * 1 + 1 = 1.9
    np.testing.assert_allclose(params["weights"], [-(0.1 + 0.19)])


def test_adam_first_step_moves_each_weight_by_the_learning_rate() -> None:
    params = {"weights": np.zeros(3)}
    grads = {"weights": np.array([0.05, -5.0, 300.0])}
    Adam([(params, grads)], learning_rate=0.01).step()
    np.testing.assert_allclose(params["weights"], [-0.01, 0.01, -0.01], rtol=1e-4)


def test_weight_decay_shrinks_weights_but_not_biases() -> None:
    params = {"weights": np.ones(2), "bias": np.ones(2)}
    grads = {"weights": np.zeros(2), "bias": np.zeros(2)}
    SGD([(params, grads)], learning_rate=0.1, momentum=0.0, weight_decay=0.5).step()
    np.testing.assert_allclose(params["weights"], [0.95, 0.95])
    np.testing.assert_allclose(params["bias"], [1.0, 1.0])


def test_adam_weight_decay_is_decoupled_from_the_gradient_scale() -> None:
    # With zero gradients Adam's own step is 0; decoupled decay still shrinks by lr * decay.
    params = {"weights": np.array([2.0, -4.0]), "bias": np.array([3.0])}
    grads = {"weights": np.zeros(2), "bias": np.zeros(1)}
    Adam([(params, grads)], learning_rate=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(params["weights"], [1.9, -3.8])
    np.testing.assert_allclose(params["bias"], [3.0])


def test_training_learns_bar_directions_and_reports_every_epoch(tiny_data) -> None:
    x, y, x_test, y_test = tiny_data
    reports = []
    result = train(
        TINY,
        x,
        y,
        TrainConfig(epochs=8, batch_size=16, learning_rate=1e-2, workers=1),
        x_test=x_test,
        y_test=y_test,
        on_epoch=reports.append,
    )
    assert [r.epoch for r in reports] == list(range(1, 9)) and result.history == reports
    assert not result.cancelled
    assert reports[-1].loss < 0.3 * reports[0].loss
    assert reports[-1].test_accuracy >= 0.9  # chance is 0.5
    assert all(r.images_per_second > 0 and r.epochs == 8 for r in reports)
    again = evaluate(result.spec, x_test, y_test)
    assert again.accuracy == pytest.approx(reports[-1].test_accuracy)


@pytest.mark.slow
def test_trained_spec_runs_in_the_single_image_engine_with_the_same_answers(tiny_data) -> None:
    x, y, x_test, y_test = tiny_data
    result = train(TINY, x, y, TrainConfig(epochs=2, batch_size=32))
    engine = build_network(result.spec)  # weights come from the spec, not the seed
    batched = evaluate(result.spec, x_test, y_test)
    for i in range(len(x_test)):
        probabilities = engine.forward(x_test[i])[-1]
        assert int(np.argmax(probabilities)) == batched.predictions[i]
    untrained = build_network(TINY)
    assert not np.allclose(engine.layers[0].weights, untrained.layers[0].weights)


@pytest.mark.slow
def test_same_seeds_give_the_same_weights(tiny_data) -> None:
    x, y, _, _ = tiny_data
    config = TrainConfig(epochs=1, batch_size=50, optimizer="sgd", learning_rate=0.05)
    first, second = train(TINY, x, y, config), train(TINY, x, y, config)
    other = train(TINY, x, y, TrainConfig(epochs=1, batch_size=50, optimizer="sgd", seed=9))
    np.testing.assert_allclose(first.spec.layers[0].weights, second.spec.layers[0].weights)
    assert not np.allclose(first.spec.layers[0].weights, other.spec.layers[0].weights)


@pytest.mark.slow
def test_cancel_stops_at_the_next_batch_and_keeps_the_weights_so_far(tiny_data) -> None:
    x, y, _, _ = tiny_data
    cancel = threading.Event()
    steps = []

    def on_batch(step: int, total: int, loss: float) -> None:
        steps.append(step)
        if step == 3:
            cancel.set()

    result = train(
        TINY, x, y, TrainConfig(epochs=5, batch_size=10), on_batch=on_batch, cancel=cancel
    )
    assert result.cancelled and steps == [1, 2, 3] and result.history == []
    assert result.spec.layers[0].weights is not None
    build_network(result.spec)  # the partial model is still a valid network


def test_evaluate_counts_a_confusion_matrix(tiny_data) -> None:
    _, _, x_test, y_test = tiny_data
    ev = evaluate(TINY, x_test, y_test, batch_size=7)
    assert ev.confusion.shape == (2, 2) and ev.confusion.sum() == len(y_test)
    assert ev.confusion.sum(axis=1).tolist() == np.bincount(y_test, minlength=2).tolist()
    assert np.trace(ev.confusion) / len(y_test) == pytest.approx(ev.accuracy)
    assert ev.loss > 0


def test_softmax_before_the_last_layer_is_refused() -> None:
    spec = NetworkSpec(
        InputSpec(4, 4, 1), (FlattenSpec(), DenseSpec(3, "softmax"), DenseSpec(2)), seed=0
    )
    with pytest.raises(TrainError, match="softmax only on the final layer"):
        train(spec, np.zeros((2, 4, 4, 1), np.float32), np.array([0, 1]))


def test_labels_beyond_the_outputs_are_refused_with_the_fix(tiny_data) -> None:
    x, y, _, _ = tiny_data
    with pytest.raises(TrainError, match="make the last layer output 7 values"):
        train(TINY, x[:4], np.array([0, 1, 2, 6]))


def test_images_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(TrainError, match=r"expects \(12, 12, 1\)"):
        train(TINY, np.zeros((2, 28, 28, 1), np.float32), np.array([0, 1]))


@pytest.mark.slow
def test_two_workers_sum_to_the_same_gradients_as_one() -> None:
    x, y = bars(21, seed=3)  # an odd batch: shares of 10 and 11 images
    serial = build_network(TINY, np.float64)
    split = DataParallel(build_network(TINY, np.float64), 2)
    loss1, logits1 = serial.loss_and_backward(x.astype(np.float64), y)
    loss2, logits2 = split.loss_and_backward(x.astype(np.float64), y)
    split.close()
    assert loss2 == pytest.approx(loss1, rel=1e-12)
    np.testing.assert_allclose(logits2, logits1, rtol=1e-12)
    for (_, g1), (_, g2) in zip(serial.param_groups(), split.net.param_groups(), strict=True):
        for name in g1:
            np.testing.assert_allclose(g2[name], g1[name], rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_two_workers_keep_float32_gradients_float32() -> None:
    x, y = bars(20, seed=4)
    steps = DataParallel(build_network(TINY), 2)
    steps.loss_and_backward(x, y)
    steps.close()
    for _, grads in steps.net.param_groups():
        assert all(g.dtype == np.float32 for g in grads.values())


POOLS_OF_EVERY_KIND = NetworkSpec(
    InputSpec(14, 14, 2),
    (
        ConvSpec(4, 3, padding=1),
        PoolSpec("max", 2),  # windows that tile the input
        ConvSpec(6, 3, padding=1),
        PoolSpec("max", 3, 2, 1),  # overlapping, padded windows
        ConvSpec(5, 2, stride=2, activation="none"),  # col2im for dL/dx
        GlobalPoolSpec("avg"),
        FlattenSpec(),
        DenseSpec(3, "softmax"),
    ),
    seed=2,
)


def pool_net(bias_shift: float) -> Network:
    """POOLS_OF_EVERY_KIND in float64 with every conv bias moved by bias_shift: a negative shift
    leaves many pooling windows whose relu outputs are all 0 (dead windows)."""
    net = build_network(POOLS_OF_EVERY_KIND, np.float64)
    for params, _ in net.param_groups()[:-1]:
        params["bias"] += bias_shift
    return net


def plain_gradients(
    x: np.ndarray, y: np.ndarray, bias_shift: float
) -> tuple[float, list[dict[str, np.ndarray]]]:
    """Loss and grads of a fresh network by forward + backward, no training step involved."""
    net = pool_net(bias_shift)
    loss, dlogits = softmax_cross_entropy(net.logits(x), y)
    net.backward_logits(dlogits)
    return loss, [{k: g.copy() for k, g in grads.items()} for _, grads in net.param_groups()]


@pytest.mark.parametrize("bias_shift", [0.0, -0.4])
def test_training_steps_give_the_plain_gradients_at_any_batch_size(bias_shift: float) -> None:
    # A training step keeps its arrays in buffers and lets each max pool apply the relu mask of
    # the conv below it; neither may change a single bit of the loss or the gradients.
    rng = np.random.default_rng(5)
    net = pool_net(bias_shift)
    for n in (6, 3, 9, 9):  # grow, shrink, grow past the first size, repeat
        x, y = rng.random((n, 14, 14, 2)), rng.integers(0, 3, n)
        first_conv_output = net.layers[0].forward(x)
        dead = first_conv_output.reshape(n, 7, 2, 7, 2, 4).max(axis=(2, 4)) == 0
        assert 0.05 < dead.mean() < 0.95 or bias_shift == 0.0  # dead windows really occur
        loss, _ = net.loss_and_backward(x, y)
        expected_loss, expected = plain_gradients(x, y, bias_shift)
        assert loss == expected_loss
        for (_, grads), want in zip(net.param_groups(), expected, strict=True):
            for name, g in grads.items():
                np.testing.assert_array_equal(g, want[name])
    assert not any(layer.reuse_outputs for layer in net.layers)
    assert not any(getattr(layer, "drop_dead_windows", False) for layer in net.layers)


def test_outputs_handed_out_survive_later_training_steps() -> None:
    rng = np.random.default_rng(6)
    net = build_network(POOLS_OF_EVERY_KIND, np.float64)
    x = rng.random((4, 14, 14, 2))
    outputs = net.forward_batch(x)
    kept = [out.copy() for out in outputs]
    _, grads, input_grad = net.gradients(x, target=1)
    kept_grads = [g.copy() for g in grads]
    for _ in range(2):
        net.loss_and_backward(rng.random((4, 14, 14, 2)), rng.integers(0, 3, 4))
    for out, want in zip(outputs + grads, kept + kept_grads, strict=True):
        np.testing.assert_array_equal(out, want)


@pytest.mark.slow
def test_training_with_two_workers_learns_like_one(tiny_data) -> None:
    x, y, x_test, y_test = tiny_data
    config = TrainConfig(epochs=8, batch_size=16, learning_rate=1e-2, workers=2)
    result = train(TINY, x, y, config, x_test=x_test, y_test=y_test)
    assert result.history[-1].test_accuracy >= 0.9
