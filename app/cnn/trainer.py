"""Mini-batch training of a NetworkSpec, and writing the learned weights back into a spec.

The batched network starts from exactly the weights that app/cnn/network.py draws for the spec
(it builds the single-image Network and copies its resolved weights), so `to_spec()` after zero
steps gives the same numbers, and a trained spec runs unchanged in the single-image engine.

Training uses both cores by data parallelism: the calling thread runs forward and backward on
the first share of the mini-batch, worker processes on the others, each through its own copy of
the layers over parameters in shared memory (app/cnn/share_processes.py), with BLAS held to one
thread each (threadpoolctl). The gradients are summed before the step. Where worker processes
cannot start, worker threads do the same with replicas of the layers in this process (NumPy
releases the GIL in the big array operations, but the threads still wait on each other for it
between operations: a step took 4-12% longer on the digits net in make bench).

X : ndarray of shape (n_ex, height, width, channels), float32 in [0, 1]
y : ndarray of shape (n_ex,), integer class labels in [0, n_classes)
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from .network import build_network
from .optim import SGD, Adam, make_optimizer
from .shapes import resolve_padding
from .share_processes import ShareProcesses, WorkerProcessError
from .spec import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    LayerSpec,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
)
from .train_layers import (
    AvgPool2D,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    Layer,
    MaxPool2D,
    ReLU,
    softmax,
    softmax_cross_entropy,
)

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
log = logging.getLogger(__name__)


class TrainError(ValueError):
    """A network or data set that cannot be trained as asked; the message says what to change."""


def _batched_layer(layer_spec: LayerSpec, engine_layer: object, dtype: np.dtype) -> Layer:
    """One spec layer -> its batched counterpart, starting from the engine's resolved weights."""
    if isinstance(layer_spec, ConvSpec):
        padding = resolve_padding(layer_spec.padding, layer_spec.kernel_size, layer_spec.stride)
        return Conv2D(
            np.array(engine_layer.weights, dtype=dtype),  # (K, F, F, C)
            np.array(engine_layer.bias, dtype=dtype),  # (K,)
            stride=layer_spec.stride,
            padding=padding,
            relu=layer_spec.activation == "relu",
        )
    if isinstance(layer_spec, DenseSpec):
        return Dense(
            np.array(engine_layer.weights, dtype=dtype),  # (U, D)
            np.array(engine_layer.bias, dtype=dtype),  # (U,)
            relu=layer_spec.activation == "relu",
        )
    if isinstance(layer_spec, ReluSpec):
        return ReLU()
    if isinstance(layer_spec, PoolSpec):
        pool = MaxPool2D if layer_spec.kind == "max" else AvgPool2D
        return pool(layer_spec.size, layer_spec.effective_stride, layer_spec.padding)
    if isinstance(layer_spec, GlobalPoolSpec):
        return GlobalMaxPool() if layer_spec.kind == "max" else GlobalAvgPool()
    if isinstance(layer_spec, FlattenSpec):
        return Flatten()
    raise TrainError(f"Layer type {getattr(layer_spec, 'type', layer_spec)!r} cannot be trained.")


# A worker's share below this many images costs more in thread hand-offs than it saves.
MIN_SHARE = 4


def default_workers() -> int:
    """Workers for data-parallel training: up to 2 cores, 1 when BLAS cannot be held to 1."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return 1
    return max(1, min(2, os.cpu_count() or 1))


@contextlib.contextmanager
def blas_single_threaded(enabled: bool = True) -> Iterator[None]:
    """Hold BLAS to one thread inside the block (worker threads supply the parallelism).

    Process-wide while it lasts: single-image forwards running meanwhile get one BLAS thread too.
    """
    if not enabled:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class TrainableNetwork:
    """A NetworkSpec as batched layers with parameters, for learning.

    The network's last output, taken before any softmax, is the logits (N, n_classes): a final
    dense layer with activation "softmax" is trained through softmax_cross_entropy.

    workers  : how many share each batch (1 = all here)
    parallel : "processes" (the default) or "threads" for the shares beyond the first
    """

    def __init__(
        self,
        spec: NetworkSpec,
        dtype: type = np.float32,
        workers: int = 1,
        parallel: str = "processes",
    ) -> None:
        if parallel not in ("processes", "threads"):
            raise ValueError(f"parallel must be 'processes' or 'threads', got {parallel!r}")
        engine = build_network(spec)  # raises SpecError for an impossible network
        for i, layer_spec in enumerate(spec.layers[:-1]):
            if isinstance(layer_spec, DenseSpec) and layer_spec.activation == "softmax":
                raise TrainError(
                    f"Layer {i} (dense) uses softmax but is not the last layer; training supports "
                    "softmax only on the final layer. Use activation 'relu' or 'none' there."
                )
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.layers = [
            _batched_layer(s, e, self.dtype)
            for s, e in zip(spec.layers, engine.layers, strict=True)
        ]
        # dL/dx is only needed below the first layer with parameters: skip the first col2im.
        for layer in self.layers:
            if isinstance(layer, Conv2D | Dense):
                layer.need_input_grad = False
                break
        out_shape = engine.report.layers[-1].output_shape if spec.layers else ()
        self.n_classes = math.prod(out_shape) if out_shape else 0
        self.input_shape = (spec.input.height, spec.input.width, spec.input.channels)
        self.workers = max(1, workers)
        # How shares 1.. of a step run: "processes" (falls back to "threads" for good if they
        # cannot start or one dies).
        self.parallel = parallel
        self._processes: ShareProcesses | None = None
        self._replicas: list[TrainableNetwork] = []
        self._pool: ThreadPoolExecutor | None = None

    def _replica(self) -> TrainableNetwork:
        """Another set of layers over the SAME parameter arrays, with its own caches and grads."""
        twin = copy.copy(self)
        twin.layers = [layer.replica() for layer in self.layers]
        twin.workers, twin._replicas, twin._pool, twin._processes = 1, [], None, None
        return twin

    def loss_and_backward(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean cross-entropy of the batch x (N, H, W, C), y (N,); fills grads; returns logits.

        With workers > 1 the batch is split into shares (each at least MIN_SHARE images): this
        process takes the first, worker processes the others (app/cnn/share_processes.py; threads
        where processes cannot be started), and the gradients are summed in share order, as a
        serial sum would: the result equals the serial one up to float rounding.
        """
        shares = min(self.workers, len(x) // MIN_SHARE)
        if shares <= 1:
            return self.share_loss_and_backward(x, y, 1.0)
        bounds = np.linspace(0, len(x), shares + 1).astype(int)
        parts = [
            # Each share's part of the batch mean: a Python float, not a NumPy float64 (which
            # would turn the float32 gradients, and every layer below, into float64).
            (x[lo:hi], y[lo:hi], (hi - lo) / len(x))
            for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        ]
        if self.parallel == "processes":
            try:
                return self._step_in_processes(parts)
            except WorkerProcessError as exc:
                # Nothing has changed the parameters yet: the step is redone on threads.
                log.warning("%s; training goes on with threads instead", exc)
                self.parallel = "threads"
                self._close_processes()
        return self._step_in_threads(parts)

    def _step_in_processes(
        self, parts: list[tuple[np.ndarray, np.ndarray, float]]
    ) -> tuple[float, np.ndarray]:
        """Share 0 here, shares 1.. in worker processes; sums their gradients into self's."""
        if self._processes is None:
            self._processes = ShareProcesses(self, self.workers - 1, parts[1][0])
        self._processes.sync_params(self.layers)
        self._processes.send(parts[1:])
        try:
            own = self.share_loss_and_backward(*parts[0])
        finally:
            others = self._processes.receive()  # always: keeps the pipes in step
        processes = self._processes
        return self._combined(
            [own, *others],
            lambda i, name: [processes.grads(k, i, name) for k in range(len(parts) - 1)],
        )

    def _step_in_threads(
        self, parts: list[tuple[np.ndarray, np.ndarray, float]]
    ) -> tuple[float, np.ndarray]:
        """Share 0 on this thread, shares 1.. on worker threads with replicas of the layers."""
        if self._pool is None:
            self._replicas = [self] + [self._replica() for _ in range(self.workers - 1)]
            self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="train")
        others = [
            self._pool.submit(self._replicas[k].share_loss_and_backward, *parts[k])
            for k in range(1, len(parts))
        ]
        results = [self.share_loss_and_backward(*parts[0])]
        results += [future.result() for future in others]
        replicas = self._replicas[1 : len(parts)]
        return self._combined(
            results, lambda i, name: [rep.layers[i].grads[name] for rep in replicas]
        )

    def _combined(
        self,
        results: list[tuple[float, np.ndarray]],
        other_grads: Callable[[int, str], list[np.ndarray]],
    ) -> tuple[float, np.ndarray]:
        """Adds the other shares' gradients (other_grads(layer index, name), in share order) to
        this network's; returns the summed loss and the logits (N, K) of all shares in order."""
        for i, layer in enumerate(self.layers):
            for name in layer.grads:
                layer.grads[name] = sum([layer.grads[name], *other_grads(i, name)])
        return sum(r[0] for r in results), np.concatenate([r[1] for r in results])

    def share_loss_and_backward(
        self, x: np.ndarray, y: np.ndarray, weight: float
    ) -> tuple[float, np.ndarray]:
        """weight * mean loss of x (B, H, W, C), y (B,), its gradients, and the logits (B, K).

        Meanwhile the arrays passed between layers live in the layers' kept buffers: nothing
        here hands them out, and fresh multi-MB arrays every step cost page faults and cache
        misses (measured on the digits net: 7% of a step).
        """
        with self._training_step():
            logits = self.forward(x).copy()  # (B, K): a buffer if the last layer is not dense
            loss, dlogits = softmax_cross_entropy(logits, y)
            if weight != 1.0:
                dlogits *= weight
            self.backward(dlogits)
        return loss * weight, logits

    @contextlib.contextmanager
    def _training_step(self) -> Iterator[None]:
        """Within: layers pass arrays in kept buffers, and a max pool right above a conv with
        relu applies that relu's mask for it, on 4x fewer cells (the parameter gradients are the
        same; only the gradients at layer outputs, which layer_gradients reports, would differ)."""
        pairs = [
            (conv, pool)
            for conv, pool in zip(self.layers, self.layers[1:], strict=False)
            if isinstance(conv, Conv2D) and conv.relu and isinstance(pool, MaxPool2D)
        ]
        for layer in self.layers:
            layer.reuse_outputs = True
        for conv, pool in pairs:
            conv.relu_done_above = pool.drop_dead_windows = True
        try:
            yield
        finally:
            for layer in self.layers:
                layer.reuse_outputs = False
            for conv, pool in pairs:
                conv.relu_done_above = pool.drop_dead_windows = False

    def close(self) -> None:
        """Stop the worker processes or threads (a closed network still works: the next
        multi-share step starts them again)."""
        self._close_processes()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool, self._replicas = None, []

    def _close_processes(self) -> None:
        if self._processes is not None:
            self._processes.close()
            self._processes = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> logits (N, n_classes), keeping what backward needs."""
        out = x.astype(self.dtype, copy=False)
        for layer in self.layers:
            out = layer.forward(out)
        self._out_shape = out.shape  # (N, n_classes) or (N, 1, 1, n_classes) after a global pool
        return out.reshape(out.shape[0], -1)

    def backward(self, dlogits: np.ndarray) -> None:
        """dlogits (N, n_classes) -> fills every layer's grads."""
        grad = dlogits.reshape(self._out_shape)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
            if grad.size == 0:  # the first layer with parameters: nothing below needs dL/dx
                break

    def forward_layers(self, x: np.ndarray) -> list[np.ndarray]:
        """x (N, H, W, C) -> every spec layer's output, batched; a final softmax is applied."""
        outputs = []
        out = x.astype(self.dtype, copy=False)
        for layer in self.layers:
            out = layer.forward(out)
            outputs.append(out)
        last = self.spec.layers[-1] if self.spec.layers else None
        if isinstance(last, DenseSpec) and last.activation == "softmax":
            outputs[-1] = softmax(outputs[-1])
        return outputs

    def layer_gradients(
        self, x: np.ndarray, target: int
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Gradients of the target class's logit (before softmax), for saliency and Grad-CAM.

        x : ndarray of shape (N, H, W, C)
        Returns (outputs, output_grads, input_grad): every spec layer's batched output (a final
        softmax layer gives its logits), the
        gradient of logit[target] with respect to each of those outputs (same shapes), and the
        gradient with respect to x (N, H, W, C). Leaves the parameters' grads changed.
        """
        if not 0 <= target < self.n_classes:
            raise TrainError(f"target must be a class index in 0..{self.n_classes - 1}")
        outputs, out = [], x.astype(self.dtype, copy=False)
        for layer in self.layers:
            out = layer.forward(out)
            outputs.append(out)
        grad = np.zeros_like(out).reshape(len(x), -1)
        grad[:, target] = 1.0
        grad = grad.reshape(out.shape)
        grads = [grad]
        first = next((lay for lay in self.layers if isinstance(lay, Conv2D | Dense)), None)
        saved = first.need_input_grad if first is not None else True
        if first is not None:
            first.need_input_grad = True
        try:
            for layer in reversed(self.layers):
                grad = layer.backward(grad)
                grads.append(grad)
        finally:
            if first is not None:
                first.need_input_grad = saved
        grads.reverse()  # grads[i] = dlogit/d(input of layer i); the last is d/d(output)
        return outputs, grads[1:], grads[0]

    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """x (N, H, W, C) -> class probabilities (N, n_classes), in batches."""
        parts = [softmax(self.forward(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_classes), self.dtype)

    def param_groups(self) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """(params, grads) of every layer that learns, in layer order (for the optimisers)."""
        return [(layer.params, layer.grads) for layer in self.layers if layer.params]

    def to_spec(self) -> NetworkSpec:
        """The spec with every conv/dense layer's current weights and bias (float32 copies)."""
        layers = []
        for layer_spec, layer in zip(self.spec.layers, self.layers, strict=True):
            if isinstance(layer_spec, ConvSpec | DenseSpec):
                layer_spec = replace(
                    layer_spec,
                    weights=layer.params["weights"].astype(np.float32),
                    bias=layer.params["bias"].astype(np.float32),
                )
                if isinstance(layer_spec, ConvSpec):
                    layer_spec = replace(layer_spec, init="he")  # weights given: init is moot
            layers.append(layer_spec)
        return replace(self.spec, layers=tuple(layers))


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


def _check_data(net: TrainableNetwork, x: np.ndarray, y: np.ndarray) -> None:
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
    model: NetworkSpec | TrainableNetwork, x: np.ndarray, y: np.ndarray, batch_size: int = 256
) -> Evaluation:
    """Loss, accuracy, predictions and confusion matrix of `model` on x (N, H, W, C), y (N,)."""
    net = model if isinstance(model, TrainableNetwork) else TrainableNetwork(model)
    y = np.asarray(y, dtype=np.int64)
    _check_data(net, x, y)
    total_loss, predictions = 0.0, []
    for i in range(0, len(x), batch_size):
        logits = net.forward(x[i : i + batch_size])
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
    net = TrainableNetwork(spec, workers=workers)
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
        with blas_single_threaded(net.workers > 1):
            cancelled = _epochs(
                net,
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
        net.close()
    return TrainResult(net.to_spec(), history, cancelled=cancelled)


def train_step(
    net: TrainableNetwork, optimizer: SGD | Adam, x: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """One optimisation step on the batch x (B, H, W, C), y (B,); returns (loss, logits (B, K))."""
    loss, logits = net.loss_and_backward(x, y)
    optimizer.step()
    return loss, logits


def _epochs(
    net: TrainableNetwork,
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
            loss, logits = train_step(net, optimizer, xb, yb)  # logits (B, n_classes)
            step += 1
            loss_sum += loss * len(batch)
            correct += int(np.sum(logits.argmax(axis=1) == yb))
            if on_batch is not None:
                on_batch(step, total_steps, loss)
        seconds = time.perf_counter() - started
        test = None
        if x_test is not None and y_test is not None:
            test = evaluate(net, x_test, y_test)
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
