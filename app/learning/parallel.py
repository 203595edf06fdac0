"""Data parallelism for training steps: a batch shared between this thread and worker processes.

`DataParallel(net, workers)` runs a Network's training step (Network.loss_and_backward) with
the first share of each mini-batch in the calling thread and the others in worker processes,
with BLAS held to one thread each (threadpoolctl); the gradients are summed in share order, as a
serial sum would. Where worker processes cannot start, or one dies, worker threads do the same
with replicas of the layers in this process (NumPy releases the GIL in the big array
operations, but the threads still wait on each other for it between operations: a step took
4-12% longer on the digits net in make bench). The network knows nothing of any of this.

Each worker process runs forward and backward on its share of every mini-batch through its own
copy of the layers. The parameters, each worker's gradients and each worker's images live in one
block of memory shared with the trainer, so a step sends only the labels and a few numbers
through a pipe, and the trainer sums the gradients straight from the block. A worker is set up
from the network's spec without its weights (a few KB), so the setup never waits on the pipe:
a worker that fails to come up within _START_WAIT_S is given up on.

Why processes and not threads: two threads sharing a batch in one process also share the GIL,
which each takes back after every NumPy call. On the digits net (batch 128) they collided about
50 times a step, and on this VM each collision is a sleep and a slow wake-up: each thread's share
ran 10% slower beside the other than alone. Two processes run side by side as fast as one alone.

The block is an unlinked file in /dev/shm when that has room (Docker gives 64 MB by default),
else in the temp directory, mapped by both sides. A worker is a fresh interpreter started with
`python -c` (not multiprocessing's spawn, which would re-run the caller's main script in it, and
not a fork: the server has threads). It runs in its own session, so Ctrl-C on the server does not
reach it; it exits when the trainer says so or when its pipe closes, the trainer's death
included.

Layout: every parameter array (layer order, then name order), then per worker its gradients in
the same order and room for `capacity` images; each array starts on a 64-byte boundary.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from app.cnn.network import Network, build_network
from app.cnn.spec import ConvSpec, DenseSpec, NetworkSpec

_ALIGN = 64
# How long close() waits for a worker to exit on its own before killing it, and how long a new
# worker may take to import NumPy and build its layers.
_EXIT_WAIT_S = 2.0
_START_WAIT_S = 120.0
# The directory that holds the `app` package, for the worker's sys.path.
_CODE_ROOT = str(Path(__file__).resolve().parents[2])
_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from app.learning.parallel import serve; serve(int(sys.argv[2]), int(sys.argv[3]))"
)


class WorkerProcessError(RuntimeError):
    """A worker process died, or could not be started; the message says which."""


@dataclass(frozen=True)
class Slot:
    """Where one array lives in the shared block."""

    layer: int  # index in the network's layers
    name: str  # key in that layer's params / grads
    shape: tuple[int, ...]
    offset: int  # bytes from the start of the block


@dataclass(frozen=True)
class Layout:
    """Parameters, then per worker its gradients and its image buffer (capacity images)."""

    dtype: str  # of parameters and gradients
    params: tuple[Slot, ...]
    grads: tuple[tuple[Slot, ...], ...]  # one tuple per worker
    images: tuple[Slot, ...]  # one per worker: shape (capacity, H, W, C)
    image_dtype: str
    size: int  # bytes


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def plan_layout(
    arrays: Sequence[tuple[int, str, tuple[int, ...]]],
    dtype: np.dtype,
    workers: int,
    image_shape: tuple[int, ...],
    image_dtype: np.dtype,
) -> Layout:
    """The block's layout for parameters `arrays` ((layer, name, shape) each), `workers`
    gradient sets and `workers` image buffers of shape image_shape (capacity, H, W, C)."""
    offset = 0

    def place(layer: int, name: str, shape: tuple[int, ...], itemsize: int) -> Slot:
        nonlocal offset
        offset = _aligned(offset)
        slot = Slot(layer, name, tuple(shape), offset)
        offset += int(np.prod(shape, dtype=np.int64)) * itemsize
        return slot

    params = tuple(place(i, n, s, dtype.itemsize) for i, n, s in arrays)
    grads, images = [], []
    for _ in range(workers):
        grads.append(tuple(place(i, n, s, dtype.itemsize) for i, n, s in arrays))
        images.append(place(-1, "images", image_shape, image_dtype.itemsize))
    return Layout(dtype.str, params, tuple(grads), tuple(images), image_dtype.str, _aligned(offset))


def view(block: np.ndarray, slot: Slot, dtype: str) -> np.ndarray:
    """The array of `slot` in block (a flat uint8 array over the shared memory)."""
    return np.ndarray(slot.shape, dtype=np.dtype(dtype), buffer=block, offset=slot.offset)


def skeleton(spec: NetworkSpec) -> NetworkSpec:
    """spec without its weights (a worker's layers get the shared parameters anyway), so the
    setup message is a few KB whatever the network's size and never fills the pipe."""
    layers = tuple(
        replace(layer, weights=None, bias=None, init="he")
        if isinstance(layer, ConvSpec)
        else replace(layer, weights=None, bias=None)
        if isinstance(layer, DenseSpec)
        else layer
        for layer in spec.layers
    )
    return replace(spec, layers=layers)


def _shared_file(size: int) -> int:
    """An unlinked file of `size` bytes, in /dev/shm if it has room, else the temp directory."""
    for directory in ("/dev/shm", tempfile.gettempdir()):
        try:
            if shutil.disk_usage(directory).free < size + (16 << 20):
                continue
            with tempfile.TemporaryFile(dir=directory) as file:
                os.ftruncate(file.fileno(), size)
                return os.dup(file.fileno())
        except OSError:
            continue
    raise WorkerProcessError(f"no room for {size} bytes of shared memory in /dev/shm or tmp")


class ShareProcesses:
    """`workers` processes, each computing one share of every step for a Network.

    net      : the Network; its parameter arrays are moved into the shared block (same
               values; `net.layers[i].params[name]` then is a view of the block)
    images   : an example share (B, H, W, C): shares of up to B images of that shape and dtype go
               through the block, larger or different ones through the pipe
    Raises WorkerProcessError when the block or a process cannot be made.
    """

    def __init__(self, net: Network, workers: int, images: np.ndarray) -> None:
        arrays = [
            (i, name, array.shape)
            for i, layer in enumerate(net.layers)
            for name, array in layer.params.items()
        ]
        self.layout = plan_layout(arrays, net.dtype, workers, images.shape, np.dtype(images.dtype))
        self._processes: list[subprocess.Popen] = []
        self._pipes: list[Connection] = []
        self._sent = 0
        fd = _shared_file(self.layout.size)
        try:
            self._map = mmap.mmap(fd, self.layout.size)
            self._block = np.frombuffer(self._map, dtype=np.uint8)
            self._params = [view(self._block, s, self.layout.dtype) for s in self.layout.params]
            self.sync_params(net.layers)
            spec = skeleton(net.spec)
            for k in range(workers):
                self._start(fd, (spec, self.layout, k))
            for k in range(workers):
                self._wait_ready(k)
        except WorkerProcessError:
            self.close()
            raise
        except Exception as exc:  # OSError (no processes, no memory), pickling errors
            self.close()
            raise WorkerProcessError(f"could not start training worker processes: {exc}") from exc
        finally:
            os.close(fd)  # the mappings keep the memory
        self._grads = [
            {(s.layer, s.name): view(self._block, s, self.layout.dtype) for s in slots}
            for slots in self.layout.grads
        ]
        self._images = [view(self._block, s, self.layout.image_dtype) for s in self.layout.images]

    def _start(self, fd: int, setup: tuple[NetworkSpec, Layout, int]) -> None:
        mine, theirs = Pipe()
        try:
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
            args = [str(theirs.fileno()), str(fd)]
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, _CODE_ROOT, *args],
                pass_fds=(theirs.fileno(), fd),
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._processes.append(process)
        self._pipes.append(mine)
        mine.send(setup)

    def _wait_ready(self, k: int) -> None:
        pipe = self._pipes[k]
        try:
            if not pipe.poll(_START_WAIT_S):
                raise WorkerProcessError(f"training worker {k + 1} did not start in time")
            error = pipe.recv()
        except (OSError, EOFError) as exc:
            raise self._died(k, exc) from exc
        if error is not None:
            raise WorkerProcessError(f"training worker {k + 1} could not start: {error}")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    def sync_params(self, layers: Sequence[Any]) -> None:
        """Make every layers[i].params[name] the block's view, copying in any array that was
        replaced since (the optimisers change parameters in place, so this is usually a no-op)."""
        for slot, shared in zip(self.layout.params, self._params, strict=True):
            params = layers[slot.layer].params
            if params[slot.name] is not shared:
                shared[...] = params[slot.name]
                params[slot.name] = shared

    def send(self, shares: Sequence[tuple[np.ndarray, np.ndarray, float]]) -> None:
        """Start shares (x (B, H, W, C), y (B,), weight) on workers 0.. in order."""
        if len(shares) > len(self._pipes):
            raise ValueError(f"{len(shares)} shares for {len(self._pipes)} worker processes")
        self._sent = 0
        for k, (x, y, weight) in enumerate(shares):
            room = self._images[k]
            fits = x.dtype == room.dtype and x.shape[1:] == room.shape[1:] and len(x) <= len(room)
            if fits:
                room[: len(x)] = x
            message = (len(x), np.asarray(y), float(weight), None if fits else x)
            try:
                self._pipes[k].send(message)
            except (OSError, EOFError) as exc:
                raise self._died(k, exc) from exc
            self._sent += 1

    def receive(self) -> list[tuple[float, np.ndarray]]:
        """Wait for the shares sent: [(weight * loss, logits (B, K))] in order. Their gradients
        are then in grads(k) until the next send."""
        results: list[tuple[float, np.ndarray]] = []
        failure: WorkerProcessError | None = None
        for k in range(self._sent):
            try:
                loss, logits, error = self._pipes[k].recv()
            except (OSError, EOFError) as exc:
                failure = failure or self._died(k, exc)
                continue
            if error is not None:
                failure = failure or WorkerProcessError(f"training worker {k + 1}: {error}")
            results.append((loss, logits))
        self._sent = 0
        if failure is not None:
            raise failure
        return results

    def grads(self, worker: int, layer: int, name: str) -> np.ndarray:
        """Worker `worker`'s gradient of layers[layer].params[name] from its last share."""
        return self._grads[worker][layer, name]

    def _died(self, k: int, exc: BaseException) -> WorkerProcessError:
        process = self._processes[k]
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.5)
        return WorkerProcessError(
            f"training worker process {process.pid} ended unexpectedly "
            f"(exit code {process.returncode}): {exc or type(exc).__name__}"
        )

    def close(self) -> None:
        """Ask the workers to exit and wait for them (killing one that does not)."""
        for pipe in self._pipes:
            with contextlib.suppress(OSError, EOFError):  # already gone
                pipe.send(None)
        for process in self._processes:
            try:
                process.wait(timeout=_EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pipe in self._pipes:
            pipe.close()
        self._pipes, self._processes = [], []


def serve(pipe_fd: int, block_fd: int) -> None:
    """A worker process: build the network from the first message, say None (ready) or what
    went wrong, then run shares until the pipe says None or closes."""
    from threadpoolctl import threadpool_limits

    pipe = Connection(pipe_fd)
    try:
        spec, layout, worker = pipe.recv()
        threadpool_limits(1)  # one core per worker, as the trainer's own share has
        net = build_network(spec, dtype=np.dtype(layout.dtype))
        with open(block_fd, "r+b") as file:
            shared = mmap.mmap(file.fileno(), layout.size)
        block = np.frombuffer(shared, dtype=np.uint8)
        for slot in layout.params:
            net.layers[slot.layer].params[slot.name] = view(block, slot, layout.dtype)
        grads = [(slot, view(block, slot, layout.dtype)) for slot in layout.grads[worker]]
        images = view(block, layout.images[worker], layout.image_dtype)
    except (EOFError, OSError):
        return
    except Exception as exc:
        pipe.send(f"{type(exc).__name__}: {exc}")
        return
    pipe.send(None)
    while True:
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        count, y, weight, x = message
        try:
            share = images[:count] if x is None else x  # (B, H, W, C)
            loss, logits = net.loss_and_backward(share, y, weight)
            for slot, array in grads:
                array[...] = net.layers[slot.layer].grads[slot.name]
            reply = (loss, logits, None)
        except Exception as exc:  # sent back: the trainer raises it with this worker's number
            reply = (0.0, None, f"{type(exc).__name__}: {exc}")
        pipe.send(reply)


log = logging.getLogger(__name__)

# A worker's share below this many images costs more in hand-offs than it saves.
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
    """Hold BLAS to one thread inside the block (the shares supply the parallelism).

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


class DataParallel:
    """A Network's training steps with each batch split into `workers` shares.

    net      : the Network whose parameters the optimiser updates (its grads get the sums)
    workers  : how many share each batch (1 = all in this thread)
    mode     : "processes" (the default) or "threads" for the shares beyond the first
    """

    def __init__(self, net: Network, workers: int = 1, mode: str = "processes") -> None:
        if mode not in ("processes", "threads"):
            raise ValueError(f"mode must be 'processes' or 'threads', got {mode!r}")
        self.net = net
        self.workers = max(1, workers)
        # How shares 1.. of a step run: "processes" (falls back to "threads" for good if they
        # cannot start or one dies).
        self.mode = mode
        self._processes: ShareProcesses | None = None
        self._replicas: list[Network] = []
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pids(self) -> list[int]:
        """The worker processes' PIDs (none before the first shared step or with threads)."""
        return [] if self._processes is None else self._processes.pids

    def loss_and_backward(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean cross-entropy of the batch x (N, H, W, C), y (N,); fills the network's grads;
        returns the loss and the logits (N, K).

        The batch is split into shares of at least MIN_SHARE images: this thread takes the
        first, worker processes the others (threads where processes cannot be started), and the
        gradients are summed in share order: the result equals the serial one up to float
        rounding.
        """
        shares = min(self.workers, len(x) // MIN_SHARE)
        if shares <= 1:
            return self.net.loss_and_backward(x, y, 1.0)
        bounds = np.linspace(0, len(x), shares + 1).astype(int)
        parts = [
            # Each share's part of the batch mean: a Python float, not a NumPy float64 (which
            # would turn the float32 gradients, and every layer below, into float64).
            (x[lo:hi], y[lo:hi], (hi - lo) / len(x))
            for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        ]
        if self.mode == "processes":
            try:
                return self._step_in_processes(parts)
            except WorkerProcessError as exc:
                # Nothing has changed the parameters yet: the step is redone on threads.
                log.warning("%s; training goes on with threads instead", exc)
                self.mode = "threads"
                self._close_processes()
        return self._step_in_threads(parts)

    def _step_in_processes(
        self, parts: list[tuple[np.ndarray, np.ndarray, float]]
    ) -> tuple[float, np.ndarray]:
        """Share 0 here, shares 1.. in worker processes; sums their gradients into net's."""
        if self._processes is None:
            self._processes = ShareProcesses(self.net, self.workers - 1, parts[1][0])
        self._processes.sync_params(self.net.layers)
        self._processes.send(parts[1:])
        try:
            own = self.net.loss_and_backward(*parts[0])
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
            self._replicas = [self.net.replica() for _ in range(self.workers - 1)]
            self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="train")
        others = [
            self._pool.submit(self._replicas[k - 1].loss_and_backward, *parts[k])
            for k in range(1, len(parts))
        ]
        results = [self.net.loss_and_backward(*parts[0])]
        results += [future.result() for future in others]
        replicas = self._replicas[: len(parts) - 1]
        return self._combined(
            results, lambda i, name: [rep.layers[i].grads[name] for rep in replicas]
        )

    def _combined(
        self,
        results: list[tuple[float, np.ndarray]],
        other_grads: Callable[[int, str], list[np.ndarray]],
    ) -> tuple[float, np.ndarray]:
        """Adds the other shares' gradients (other_grads(layer index, name), in share order) to
        the network's; returns the summed loss and the logits (N, K) of all shares in order."""
        for i, layer in enumerate(self.net.layers):
            for name in layer.grads:
                layer.grads[name] = sum([layer.grads[name], *other_grads(i, name)])
        return sum(r[0] for r in results), np.concatenate([r[1] for r in results])

    def close(self) -> None:
        """Stop the worker processes or threads (a closed DataParallel still works: the next
        shared step starts them again)."""
        self._close_processes()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool, self._replicas = None, []

    def _close_processes(self) -> None:
        if self._processes is not None:
            self._processes.close()
            self._processes = None
