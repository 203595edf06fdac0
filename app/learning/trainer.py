"""Mini-batch training of a NetworkSpec, and writing the learned weights back into a spec.

Training runs on the same app.cnn.network.Network the explorer uses, built from the spec (so
`to_spec()` after zero steps gives the same numbers, and a trained spec runs unchanged in the
explorer). Each batch is shared between this thread and worker processes by
app/learning/parallel.py; the network knows nothing of it.

X : ndarray of shape (n_ex, height, width, channels), float32 in [0, 1]
y : ndarray of shape (n_ex,), integer class labels in [0, n_classes)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.cnn.layers import softmax_cross_entropy
from app.cnn.network import Network, build_network
from app.cnn.spec import DenseSpec, NetworkSpec
from app.learning.optim import SGD, Adam, make_optimizer
from app.learning.parallel import DataParallel, blas_single_threaded, default_workers

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class TrainError(ValueError):
    """A network or data set that cannot be trained as asked; the message says what to change."""


def check_trainable(spec: NetworkSpec) -> None:
    """TrainError unless the spec can be trained here: softmax only on the final layer."""
    for i, layer_spec in enumerate(spec.layers[:-1]):
        if isinstance(layer_spec, DenseSpec) and layer_spec.activation == "softmax":
            raise TrainError(
                f"Layer {i} (dense) uses softmax but is not the last layer; training supports "
                "softmax only on the final layer. Use activation 'relu' or 'none' there."
            )


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `seed` fixes shuffling and augmentation; the spec's seed fixes the weights."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"  # "adam" | "sgd" (momentum 0.9)
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"  # "cosine" (decay to 0 over all steps) | "constant"
    seed: int = 0
    workers: int | None = None  # processes sharing each batch; None = default_workers()
    momentum: float = 0.9  # SGD only


@dataclass(frozen=True)
class EpochReport:
    """Progress after one epoch (test_* are None when no test set was given)."""

    epoch: int  # 1-based
    epochs: int
    loss: float  # mean training loss over the epoch's batches
    accuracy: float  # training accuracy over the epoch (on augmented images, if any)
    test_loss: float | None
    test_accuracy: float | None
    seconds: float
    images_per_second: float


@dataclass(frozen=True)
class TrainResult:
    """The trained spec (weights filled in), one report per finished epoch, and whether stopped."""

    spec: NetworkSpec
    history: list[EpochReport] = field(default_factory=list)
    cancelled: bool = False


@dataclass(frozen=True)
class Evaluation:
    """Loss and accuracy of a network on labelled images.

    predictions : ndarray of shape (n_ex,), the arg-max class
    confusion : ndarray of shape (n_classes, n_classes), rows = true class, columns = predicted
    """

    loss: float
    accuracy: float
    predictions: np.ndarray
    confusion: np.ndarray


def trainable_network(spec: NetworkSpec, dtype: type = np.float32) -> Network:
    """The spec's network for training: SpecError if impossible, TrainError if untrainable."""
    check_trainable(spec)
    return build_network(spec, dtype)


def _check_data(net: Network, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != net.input_shape:
        raise TrainError(
            f"Images have shape {x.shape[1:]}, but the network expects {net.input_shape}."
        )
    if len(x) != len(y) or len(x) == 0:
        raise TrainError(f"Need as many labels as images (and at least one): {len(x)} vs {len(y)}.")
    if y.min() < 0 or y.max() >= net.n_classes:
        raise TrainError(
            f"Labels go up to {int(y.max())}, but the network has {net.n_classes} outputs; make "
            f"the last layer output {int(y.max()) + 1} values."
        )


def evaluate(
    model: NetworkSpec | Network, x: np.ndarray, y: np.ndarray, batch_size: int = 256
) -> Evaluation:
    """Loss, accuracy, predictions and confusion matrix of `model` on x (N, H, W, C), y (N,)."""
    net = model if isinstance(model, Network) else trainable_network(model)
    y = np.asarray(y, dtype=np.int64)
    _check_data(net, x, y)
    total_loss, predictions = 0.0, []
    for i in range(0, len(x), batch_size):
        logits = net.logits(x[i : i + batch_size])
        loss, _ = softmax_cross_entropy(logits, y[i : i + batch_size])
        total_loss += loss * len(logits)
        predictions.append(logits.argmax(axis=1))
    pred = np.concatenate(predictions)
    confusion = np.zeros((net.n_classes, net.n_classes), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    return Evaluation(total_loss / len(x), float(np.mean(pred == y)), pred, confusion)


def train(
    spec: NetworkSpec,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig = TrainConfig(),
    *,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    augment: Augment | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    on_batch: Callable[[int, int, float], None] | None = None,
    cancel: threading.Event | None = None,
) -> TrainResult:
    """Train `spec` on x (N, H, W, C), y (N,) with mini-batches; return the trained spec.

    on_epoch(report) runs after every epoch; on_batch(step, total_steps, loss) after every batch.
    Setting `cancel` stops at the next batch and returns the weights reached so far with
    cancelled=True (the unfinished epoch gets no report).
    """
    workers = default_workers() if config.workers is None else config.workers
    net = trainable_network(spec)
    steps = DataParallel(net, workers)
    y = np.asarray(y, dtype=np.int64)
    _check_data(net, x, y)
    if config.epochs < 1 or config.batch_size < 1:
        raise TrainError("epochs and batch_size must both be at least 1.")
    optimizer = make_optimizer(
        config.optimizer,
        net.param_groups(),
        config.learning_rate,
        config.weight_decay,
        momentum=config.momentum,
    )
    history: list[EpochReport] = []
    try:
        with blas_single_threaded(steps.workers > 1):
            cancelled = _epochs(
                steps,
                optimizer,
                x,
                y,
                config,
                history,
                x_test,
                y_test,
                augment,
                on_epoch,
                on_batch,
                cancel,
            )
    finally:
        steps.close()
    return TrainResult(net.to_spec(), history, cancelled=cancelled)


def train_step(
    steps: Network | DataParallel, optimizer: SGD | Adam, x: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """One optimisation step on the batch x (B, H, W, C), y (B,); returns (loss, logits (B, K)).

    steps : the network, or the DataParallel that shares its batches out
    """
    loss, logits = steps.loss_and_backward(x, y)
    optimizer.step()
    return loss, logits


def _epochs(
    steps: DataParallel,
    optimizer: SGD | Adam,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    history: list[EpochReport],
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    augment: Augment | None,
    on_epoch: Callable[[EpochReport], None] | None,
    on_batch: Callable[[int, int, float], None] | None,
    cancel: threading.Event | None,
) -> bool:
    """The epoch loop of train(); appends to history; returns True when cancelled."""
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    total_steps, step = config.epochs * steps_per_epoch, 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(len(x))
        loss_sum, correct = 0.0, 0
        for first in range(0, len(x), config.batch_size):
            if cancel is not None and cancel.is_set():
                return True
            batch = order[first : first + config.batch_size]
            xb, yb = x[batch], y[batch]  # (B, H, W, C), (B,)
            if augment is not None:
                xb = augment(xb, rng)
            if config.schedule == "cosine":
                optimizer.learning_rate = (
                    config.learning_rate * 0.5 * (1 + math.cos(math.pi * step / total_steps))
                )
            loss, logits = train_step(steps, optimizer, xb, yb)  # logits (B, n_classes)
            step += 1
            loss_sum += loss * len(batch)
            correct += int(np.sum(logits.argmax(axis=1) == yb))
            if on_batch is not None:
                on_batch(step, total_steps, loss)
        seconds = time.perf_counter() - started
        test = None
        if x_test is not None and y_test is not None:
            test = evaluate(steps.net, x_test, y_test)
        report = EpochReport(
            epoch=epoch,
            epochs=config.epochs,
            loss=loss_sum / len(x),
            accuracy=correct / len(x),
            test_loss=None if test is None else test.loss,
            test_accuracy=None if test is None else test.accuracy,
            seconds=seconds,
            images_per_second=len(x) / seconds if seconds > 0 else float("inf"),
        )
        history.append(report)
        if on_epoch is not None:
            on_epoch(report)
    return False
