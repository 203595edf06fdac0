"""Run stores shared between processes, and `open_run_store`, which picks one from the settings.

    memory               app.storage.runs.memory.MemoryRunStore: this process only
    disk, disk:///path   disk.DiskRunStore: files shared by the workers of one machine
    redis://host:port/db redis_store.RedisRunStore: shared by several machines
    auto                 memory for one worker process, disk for more

Every store keeps the same things (blobs.py: the network with its resolved weights, the input,
every layer's output, labels, model, time; and with each run the gradients of each target and
loss asked of it), is bounded by run_store_max_bytes and run_ttl_seconds, and answers an unknown
or dropped run with the same 404.
"""

from __future__ import annotations

import logging
from pathlib import Path

from app.settings import Settings, server_processes
from app.storage.runs.disk import DiskRunStore
from app.storage.runs.memory import MemoryRunStore, RunStore

log = logging.getLogger("cnn_explorer")

__all__ = ["DiskRunStore", "describe_run_store", "open_run_store", "resolve_run_store"]


def worker_processes(settings: Settings) -> int:
    """How many server processes may share runs (see app.settings.server_processes)."""
    return server_processes(settings.workers)


def resolve_run_store(settings: Settings) -> str:
    """settings.run_store with `auto` and `disk` made explicit: "memory", "disk:///...", a URL."""
    choice = settings.run_store
    if choice == "auto":
        choice = "memory" if worker_processes(settings) == 1 else "disk"
    if choice == "disk":
        choice = f"disk://{(settings.data_dir / 'runs').resolve()}"
    return choice


def describe_run_store(settings: Settings) -> str:
    """Where runs are kept, for a log line, without credentials: "Redis at host:6379/0"."""
    choice = resolve_run_store(settings)
    if choice == "memory":
        return "each worker's memory"
    if choice.startswith("disk://"):
        return f"files under {choice.removeprefix('disk://')}"
    from app.storage.runs.redis_store import redis_address

    return f"Redis at {redis_address(choice)}"


def open_run_store(settings: Settings) -> RunStore:
    """The run store the settings ask for (see the module docstring)."""
    choice = resolve_run_store(settings)
    bounds = {"max_bytes": settings.run_store_max_bytes, "ttl_seconds": settings.run_ttl_seconds}
    if choice == "memory":
        return MemoryRunStore(**bounds)
    if choice.startswith("disk://"):
        root = Path(choice.removeprefix("disk://"))
        if not root.is_absolute():
            raise ValueError(f"run_store {choice!r}: give an absolute path, as disk:///srv/runs")
        return DiskRunStore(root, **bounds)
    # The redis package is imported only by those who use it.
    from app.storage.runs.redis_store import RedisRunStore, RunStoreUnavailableError

    store = RedisRunStore(choice, **bounds)
    try:
        store.ping()
    except RunStoreUnavailableError as e:  # start anyway: requests answer 503 until it does
        log.warning("%s", e.message)
    return store
