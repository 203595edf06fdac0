"""The backward passes of kept runs: taken from the run store, else computed once and put there.

A run never changes, so its gradients for one target and loss never do either: the first request
that needs them (/gradients, a gradient map or array, an explanation, a step) computes them
through the admission gate and puts them into the run store, which keeps them with the run,
charged to the same bytes, and drops them with it (app/storage/runs/memory.py). Every later
request, in this worker process or in another one sharing the store, takes them from there.

Requests that arrive in this process while they are being computed wait for that one
computation instead of starting their own (the page asks for every layer's map at once). That is
all this module keeps: no gradients of its own, so that whether a run's gradients are kept, and
for how long, is the run store's decision alone (a copy here would outlive a run that another
process dropped, and its uses would not count as uses of the run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from app.cnn.backprop import Gradients
from app.storage.runs.memory import GradientKey, RunStore


class BackwardPasses:
    """The gradients of (run_id, target, loss): the run store's, else `await compute()` once for
    every request of this process that asks meanwhile. Runs on the event loop."""

    def __init__(self) -> None:
        # Computations in progress, by event loop and key (tasks belong to one loop).
        self._pending: dict[tuple[int, GradientKey], asyncio.Task[Gradients]] = {}

    async def get(
        self, store: RunStore, key: GradientKey, compute: Callable[[], Awaitable[Gradients]]
    ) -> Gradients:
        """The gradients `store` keeps for key, else computed once and put there.

        The computation's exception (such as the gate's 503) goes to each waiting request, and
        the next request tries again; a request that goes away does not cancel the others'
        computation. A store that cannot keep them (too big, full, failing: it logs why) does
        not fail the requests: they get them all the same.
        """
        grads = store.get_gradients(*key)
        if grads is not None:
            return grads
        pending = (id(asyncio.get_running_loop()), key)
        task = self._pending.get(pending)
        if task is None:
            task = asyncio.ensure_future(self._compute(store, key, compute))
            self._pending[pending] = task
            task.add_done_callback(lambda done: self._finished(pending, done))
        return await asyncio.shield(task)

    async def _compute(
        self, store: RunStore, key: GradientKey, compute: Callable[[], Awaitable[Gradients]]
    ) -> Gradients:
        grads = await compute()
        store.put_gradients(key[0], grads)
        return grads

    def _finished(self, pending: tuple[int, GradientKey], task: asyncio.Task) -> None:
        self._pending.pop(pending, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away
