"""Kept runs (a network, its input and every layer's output, and the gradients asked of it).

`RunStore` is the interface routes depend on; `MemoryRunStore` keeps runs in this process,
bounded by bytes (least recently used dropped first) and by age (a TTL since last use). The
stores shared between worker processes (a directory, Redis) are disk.py and redis_store.py, and
`app.storage.runs.open_run_store(settings)` picks one.

A run's gradients (one app.cnn.backprop.Gradients per target and loss) are kept with it in every
store: charged to the same bytes, each use of them a use of the run, and dropped with the run
(evicted, expired, deleted or replaced) so that no gradients outlive their run.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from app.errors import RunNotFoundError, RunTooLargeError

if TYPE_CHECKING:
    from app.cnn.backprop import Gradients
    from app.cnn.network import Network

Clock = Callable[[], float]
GradientKey = tuple[str, int, str]  # (run_id, target, loss)
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what shared stores accept: a file name, a key


def new_run_id() -> str:
    """16 hex characters: unguessable enough that runs need no other access control."""
    return secrets.token_hex(8)


@dataclass
class Run:
    """One forward pass, kept for the images, arrays and explanations asked of it later.

    input : ndarray (H, W, C) float32, the image as the network saw it.
    outputs : one ndarray per layer, (h, w, c) or (n,) float32.
    nbytes counts the input, the outputs and the network's weights and biases.
    """

    run_id: str
    network: Network
    input: np.ndarray
    outputs: list[np.ndarray]
    labels: list[str] | None = None
    model: str | None = None
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        # Runs are read by many requests at once: make accidental writes fail loudly.
        for a in (self.input, *self.outputs):
            a.flags.writeable = False
        # Each run holds its own Network, so its weights count against the bound too: a
        # 72 MB dense layer on a small image must not pass as a 100 KB run.
        weights = sum(
            a.nbytes
            for layer in self.network.layers
            for a in (getattr(layer, "weights", None), getattr(layer, "bias", None))
            if a is not None
        )
        arrays = sum(_held_bytes(a) for a in (self.input, *self.outputs))
        self.nbytes = int(arrays + weights)


def _base(a: np.ndarray) -> np.ndarray:
    """The array whose buffer `a` is a view of (itself if none)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _held_bytes(a: np.ndarray) -> int:
    """The memory an array keeps alive: a view holds its whole base (a conv output computed on
    the padded width is a view of a wider array)."""
    return max(a.nbytes, _base(a).nbytes)


def gradient_arrays(grads: Gradients) -> list[np.ndarray]:
    """Every array of a Gradients: the image, dL/d(image), each layer's output and dL/d of it,
    and the dL/dW, dL/db and dL/dz of the layers that have them."""
    arrays = [grads.image, grads.input_grad, *grads.outputs, *grads.output_grads]
    for group in (grads.weight_grads, grads.bias_grads, grads.pre_activation_grads):
        arrays += [a for a in group if a is not None]
    return arrays


def gradients_nbytes(grads: Gradients, run: Run | None = None) -> int:
    """The memory a Gradients keeps alive, each buffer counted once (a linear layer's dL/dz is
    its dL/dy), leaving out those `run` holds already (a step's new run has its backward pass's
    outputs)."""
    bases = {id(b): b.nbytes for b in map(_base, gradient_arrays(grads))}
    for a in () if run is None else (run.input, *run.outputs):
        bases.pop(id(_base(a)), None)
    return int(sum(bases.values()))


def describe_ttl(seconds: float) -> str:
    """3600 -> "60 minutes"; 90 -> "90 seconds"."""
    if seconds >= 120 and seconds % 60 == 0:
        return f"{int(seconds // 60)} minutes"
    return f"{seconds:g} seconds"


class RunStore(Protocol):
    """Where runs live between the forward pass and the requests for their images."""

    ttl_seconds: float

    def put(self, run: Run) -> None:
        """Keep a run; may drop older ones. Raises RunTooLargeError if it can never fit."""

    def get(self, run_id: str) -> Run:
        """The run, or RunNotFoundError (unknown, expired or dropped)."""

    def delete(self, run_id: str) -> None:
        """Forget a run and its gradients (no error when unknown)."""

    def put_gradients(self, run_id: str, grads: Gradients) -> bool:
        """Keep a run's gradients for (grads.target, grads.loss), charged to the store's bytes
        (may drop older runs, never this one) and counted as a use of the run. False when they
        are not kept: the run is gone, they do not fit beside it, or the store failed (logged);
        never raises, so a caller that computed them can still answer with them."""

    def get_gradients(self, run_id: str, target: int, loss: str) -> Gradients | None:
        """The gradients kept for (run, target, loss), renewing the run; None when the run or
        they are not kept."""

    def __len__(self) -> int: ...

    def close(self) -> None:
        """Release connections or files (the app's shutdown)."""


def run_not_found(run_id: str, ttl_seconds: float) -> RunNotFoundError:
    """The 404 every store gives for an unknown, expired or dropped run."""
    return RunNotFoundError(
        f"Run {run_id} is unknown or expired (runs are kept {describe_ttl(ttl_seconds)} after "
        "their last use, less when the run store is full); POST /api/v1/forward again."
    )


def run_too_large(nbytes: int, max_bytes: int) -> RunTooLargeError:
    """The 413 for a run bigger than a whole store."""
    return RunTooLargeError(
        f"This run's arrays take {nbytes / 2**20:.1f} MB, more than the "
        f"{max_bytes / 2**20:.1f} MB the server keeps for all runs. Use a smaller "
        "input size or fewer filters."
    )


@dataclass
class _Kept:
    """A run in the memory store with its gradients by (target, loss), and their bytes."""

    run: Run
    used: float
    gradients: dict[tuple[int, str], tuple[Gradients, int]] = field(default_factory=dict)
    nbytes: int = 0


class MemoryRunStore:
    """Runs in this process's memory, least recently used first out. Thread-safe.

    max_bytes bounds the sum of Run.nbytes and of their gradients' (gradients_nbytes); a run and
    its gradients are one entry, dropped together. ttl_seconds bounds the time since a run (or
    one of its gradients) was last put or got. `clock` (monotonic seconds) is injectable so
    tests can move time instead of sleeping.
    """

    def __init__(self, max_bytes: int, ttl_seconds: float, clock: Clock = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: OrderedDict[str, _Kept] = OrderedDict()  # oldest use first
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._runs)

    def put(self, run: Run) -> None:
        if run.nbytes > self.max_bytes:
            raise run_too_large(run.nbytes, self.max_bytes)
        with self._lock:
            now = self._clock()
            self._expire(now)
            self._remove(run.run_id)
            while self._runs and self._bytes + run.nbytes > self.max_bytes:
                self._remove(next(iter(self._runs)))
            self._runs[run.run_id] = _Kept(run, now, nbytes=run.nbytes)
            self._bytes += run.nbytes

    def get(self, run_id: str) -> Run:
        with self._lock:
            kept = self._use(run_id)
            if kept is None:
                raise run_not_found(run_id, self.ttl_seconds)
            return kept.run

    def delete(self, run_id: str) -> None:
        with self._lock:
            self._remove(run_id)

    def put_gradients(self, run_id: str, grads: Gradients) -> bool:
        if gradients_nbytes(grads) > self.max_bytes:
            return False
        with self._lock:
            kept = self._use(run_id)
            if kept is None:
                return False
            size = gradients_nbytes(grads, kept.run)
            old = kept.gradients.pop((grads.target, grads.loss), None)
            if old is not None:
                kept.nbytes -= old[1]
                self._bytes -= old[1]
            if kept.nbytes + size > self.max_bytes:
                return False  # it does not fit beside its run: drop nothing for it
            # The run was just used, so it is the last in line and never goes for its gradients.
            while self._bytes + size > self.max_bytes:
                self._remove(next(iter(self._runs)))
            kept.gradients[(grads.target, grads.loss)] = (grads, size)
            kept.nbytes += size
            self._bytes += size
            return True

    def get_gradients(self, run_id: str, target: int, loss: str) -> Gradients | None:
        with self._lock:
            kept = self._use(run_id)
            entry = None if kept is None else kept.gradients.get((target, loss))
            return None if entry is None else entry[0]

    def _use(self, run_id: str) -> _Kept | None:
        """The kept run, marked used now (None when unknown or expired)."""
        now = self._clock()
        self._expire(now)
        kept = self._runs.get(run_id)
        if kept is not None:
            kept.used = now
            self._runs.move_to_end(run_id)
        return kept

    def _remove(self, run_id: str) -> None:
        kept = self._runs.pop(run_id, None)
        if kept is not None:
            self._bytes -= kept.nbytes

    def _expire(self, now: float) -> None:
        # Ordered by last use, so expired runs are all at the front.
        while self._runs:
            run_id, kept = next(iter(self._runs.items()))
            if now - kept.used <= self.ttl_seconds:
                break
            self._remove(run_id)
