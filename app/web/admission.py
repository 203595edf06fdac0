"""One admission gate for the server's CPU work: a bounded pool, a bounded queue, a time budget.

Decoding, forward passes, rendering, .npy encoding and explanations all run through
`AdmissionGate.run`, on `workers` threads of the gate's own pool (the event loop and its thread
pool stay free, so /api/v1/health answers however busy the gate is). At most `workers + queue`
jobs are admitted at once; the next request is refused with 503 and a Retry-After header at once
instead of piling up (which bounds memory too: only admitted jobs hold decoded images and
activations).

Each request's job has a time budget, counted from admission:
- a job still waiting in the queue when it runs out is cancelled and never runs (503, busy);
- a job still running cannot be stopped (a NumPy call cannot be interrupted from Python): the
  request stops waiting and answers 504, the job runs to its end in the background, its result
  is dropped (a forward pass is not kept as a run), and its worker stays counted as busy until
  then, so abandoned work still limits how much runs at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Request

from app.errors import OverloadedError, TimeBudgetError

log = logging.getLogger("cnn_explorer")

T = TypeVar("T")

# Retry-After bounds, in seconds: never "0", never "come back in an hour".
_MIN_RETRY, _MAX_RETRY = 1, 60


def _seconds(s: float) -> str:
    """60 -> "60 s"; 0.05 -> "0.05 s"; 123.4 -> "123 s"."""
    return f"{s:.3g} s" if s < 1000 else f"{s:.0f} s"


class AdmissionGate:
    """A pool of `workers` threads with room for `queue` more jobs waiting; the rest are refused.

    Thread-safe counters: `in_flight` (admitted, not finished: running or queued), `running`,
    `refused` and `timed_out`. `mean_seconds` is a moving average of job durations, used for
    Retry-After.
    """

    def __init__(self, workers: int, queue: int, budget_seconds: float) -> None:
        if workers < 1 or queue < 0 or budget_seconds <= 0:
            raise ValueError("workers >= 1, queue >= 0 and budget_seconds > 0 are needed")
        self.workers = workers
        self.queue = queue
        self.budget_seconds = budget_seconds
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cnn-cpu")
        self._lock = threading.Lock()
        self.in_flight = 0
        self.running = 0
        self.refused = 0
        self.timed_out = 0
        self.mean_seconds = 0.05

    @property
    def capacity(self) -> int:
        """Jobs admitted at most at once: workers + queue."""
        return self.workers + self.queue

    def retry_after(self) -> int:
        """Seconds until a worker is likely free: the queue ahead divided among the workers."""
        with self._lock:
            ahead = max(self.in_flight - self.workers + 1, 1)
            wait = self.mean_seconds * ahead / self.workers
        return min(max(math.ceil(wait), _MIN_RETRY), _MAX_RETRY)

    def _admit(self) -> None:
        with self._lock:
            if self.in_flight >= self.capacity:
                self.refused += 1
                full = True
            else:
                self.in_flight += 1
                full = False
        if full:
            raise OverloadedError(
                f"The server is busy: {self.workers} computations are running and {self.queue} "
                "more are waiting, the most it takes at once. Try again shortly.",
                retry_after=self.retry_after(),
            )

    def _release(self, _: Future | None = None) -> None:
        # Runs when the job finishes, fails or is cancelled before it started: exactly once.
        with self._lock:
            self.in_flight -= 1

    def _work(self, fn: Callable[[], T]) -> T:
        with self._lock:
            self.running += 1
        started = time.perf_counter()
        try:
            return fn()
        finally:
            took = time.perf_counter() - started
            with self._lock:
                self.running -= 1
                self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * took

    async def run(self, fn: Callable[[], T], budget_seconds: float | None = None) -> T:
        """fn() on a worker thread, once admitted; its result, or its exception re-raised.

        Raises OverloadedError (503) when full or when fn never started within the budget,
        TimeBudgetError (504) when fn started but is still running at the end of the budget.
        """
        budget = self.budget_seconds if budget_seconds is None else budget_seconds
        self._admit()
        try:
            job = self._executor.submit(self._work, fn)
        except BaseException:  # the pool is shut down
            self._release()
            raise
        job.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job), timeout=budget)
        except TimeoutError:
            with self._lock:
                self.timed_out += 1
            if job.cancel():  # still queued: it will never run
                raise OverloadedError(
                    f"The server is busy: this request waited {_seconds(budget)} for a free "
                    "worker without starting. Try again shortly.",
                    retry_after=self.retry_after(),
                ) from None
            log.warning(
                "CPU job over its %s budget; it finishes in the background", _seconds(budget)
            )
            raise TimeBudgetError(
                f"The computation took longer than this server's {_seconds(budget)} budget and "
                "was abandoned. Use a smaller input size, fewer or smaller filters, or a stride "
                "or pooling earlier."
            ) from None

    def shutdown(self) -> None:
        """Stop taking jobs; queued ones are cancelled, running ones finish."""
        self._executor.shutdown(wait=False, cancel_futures=True)


async def get_gate(request: Request) -> AdmissionGate:
    # async: FastAPI would run a sync dependency in the thread pool, a hop on every request.
    return request.app.state.gate


GateDep = Annotated[AdmissionGate, Depends(get_gate)]


def install_admission(app: FastAPI, workers: int, queue: int, budget_seconds: float) -> None:
    """Give the app its gate (app.state.gate); app/web/handlers.py answers its OverloadedError
    with 503 and Retry-After, its TimeBudgetError with 504."""
    app.state.gate = AdmissionGate(workers, queue, budget_seconds)


def limit_blas_threads(threads: int) -> None:
    """Let each BLAS call use `threads` threads (0: leave the library's default).

    Process-wide (OpenBLAS has one setting for all threads), so it is set once per server.
    """
    if threads <= 0:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        log.warning("threadpoolctl is not installed; BLAS keeps its own thread count")
        return
    threadpool_limits(limits=threads, user_api="blas")
