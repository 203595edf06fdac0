"""The backward passes of kept runs, per server process: each (run, target, loss) computed once.

A run never changes, so its gradients for one target and loss never do either: the first request
that needs them (/gradients, a gradient map or array, an explanation, a step) computes them
through the admission gate, and the others reuse them. Requests that arrive while they are being
computed wait for that one computation instead of starting their own (the page asks for every
layer's map at once). Bounded by bytes like the render cache, least recently used dropped first;
a dropped entry is recomputed on request. Like the render cache it is per process: with several
worker processes each computes the gradients it is asked for itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from app.cnn.backprop import Gradients
from app.schemas import GradientStats

GradientKey = tuple[str, int, str]  # (run_id, target, loss)


def _base(a: np.ndarray) -> np.ndarray:
    """The array whose buffer `a` is a view of (itself if none)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


@dataclass(frozen=True)
class KeptGradients:
    """One backward pass as the API serves it.

    grads : the engine's Gradients (every array float32, in the layouts of API.md)
    stats : min, max, mean and mean |g| of dL/d(output) of each layer
    input_stats : the same of dL/d(input)
    scales, input_scale : max |g| of each, the -scale..scale of their diverging PNGs
    nbytes : the memory its arrays hold (each underlying buffer counted once)
    """

    grads: Gradients
    stats: list[GradientStats]
    input_stats: GradientStats
    scales: list[float]
    input_scale: float
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        g = self.grads
        arrays = [g.image, g.input_grad, *g.outputs, *g.output_grads]
        for group in (g.weight_grads, g.bias_grads, g.pre_activation_grads):
            arrays += [a for a in group if a is not None]
        # Arrays share buffers (a linear layer's dL/dz is its dL/dy): count each buffer once.
        bases = {id(b): b.nbytes for b in map(_base, arrays)}
        object.__setattr__(self, "nbytes", int(sum(bases.values())))


class GradientCache:
    """KeptGradients by (run_id, target, loss), least recently used dropped first beyond
    max_bytes (0 keeps nothing). get/put are thread-safe; get_or_compute runs on the event loop.
    `computed` counts the backward passes it has had computed.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[GradientKey, KeptGradients] = OrderedDict()
        self._bytes = 0
        # Computations in progress, by event loop and key (tasks belong to one loop).
        self._pending: dict[tuple[int, GradientKey], asyncio.Task[KeptGradients]] = {}
        self.computed = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: GradientKey) -> KeptGradients | None:
        with self._lock:
            kept = self._items.get(key)
            if kept is not None:
                self._items.move_to_end(key)
            return kept

    def put(self, key: GradientKey, kept: KeptGradients) -> None:
        if kept.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            while self._items and self._bytes + kept.nbytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes
            self._items[key] = kept
            self._bytes += kept.nbytes

    async def get_or_compute(
        self, key: GradientKey, compute: Callable[[], Awaitable[KeptGradients]]
    ) -> KeptGradients:
        """The kept gradients for key, else `await compute()` once for every request that asks
        meanwhile (its exception, such as the gate's 503, goes to each of them; the next request
        tries again). A request that goes away does not cancel the others' computation."""
        kept = self.get(key)
        if kept is not None:
            return kept
        pending = (id(asyncio.get_running_loop()), key)
        task = self._pending.get(pending)
        if task is None:
            task = asyncio.ensure_future(self._compute(key, compute))
            self._pending[pending] = task
            task.add_done_callback(lambda done: self._finished(pending, done))
        return await asyncio.shield(task)

    async def _compute(
        self, key: GradientKey, compute: Callable[[], Awaitable[KeptGradients]]
    ) -> KeptGradients:
        kept = await compute()
        self.computed += 1
        self.put(key, kept)
        return kept

    def _finished(self, pending: tuple[int, GradientKey], task: asyncio.Task) -> None:
        self._pending.pop(pending, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away
