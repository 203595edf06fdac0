"""Runs in files, shared by every worker process of one machine.

Layout under `root`: `runs/<run_id>.run` and `networks/<key>.net` (blobs.py formats), `tmp/` for
files being written, and `lock`. A file's mtime is its last use: `get` touches the run and its
network, so a network is always at least as recently used as any of its runs and the oldest-first
eviction drops runs before the network they need.

- Never half a run: a blob is written to tmp/ and moved into place with os.replace.
- Bounded by bytes: `put` takes an exclusive flock on `lock`, scans both directories, deletes
  expired files, then the oldest until the new run fits, and moves the run in, all under the lock.
  Files being written in tmp/ are not counted (at most one run per request in flight).
- Bounded by age: a file whose mtime is older than the TTL is expired; `get` refuses and
  deletes it, `put` sweeps them all. Deletion tolerates files that another process removed.
- Reads are zero-copy: a run's arrays are views of an mmap of its file, so a request for one
  layer reads one layer's pages from the page cache that every worker shares. A file deleted
  while mapped stays readable until the last view of it is gone. Each process reuses the runs it
  mapped lately (blobs.RecentRuns) while the file keeps its inode: files are only ever replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from app.cnn import Network
from app.storage.runs.blobs import (
    Blob,
    BlobError,
    NetworkCache,
    NetworkKeys,
    RecentRuns,
    decode_network,
    decode_run,
    encode_for_store,
)
from app.storage.runs.memory import RUN_ID, Clock, Run, run_not_found

log = logging.getLogger("cnn_explorer")

STALE_TMP_SECONDS = 600  # a tmp file this old was left by a writer that died


class _MissingFileError(Exception):
    """A file that is gone, expired or unreadable: the run is not found."""


class DiskRunStore:
    """Runs as files under root, bounded by max_bytes (oldest use first out) and ttl_seconds.

    `clock` (wall-clock seconds, as file mtimes are) is injectable so tests can move time.
    """

    def __init__(
        self, root: Path, max_bytes: int, ttl_seconds: float, clock: Clock = time.time
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._runs = self.root / "runs"
        self._networks = self.root / "networks"
        self._tmp = self.root / "tmp"
        for directory in (self._runs, self._networks, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "lock"
        self._keys = NetworkKeys()
        self._cache = NetworkCache()
        self._recent = RecentRuns()  # reused while the file has the same inode

    def __repr__(self) -> str:
        return f"DiskRunStore({str(self.root)!r})"

    # -- the RunStore interface ----------------------------------------------------------------
    def put(self, run: Run) -> None:
        now = self._clock()
        key, network_blob, run_blob = encode_for_store(self._keys, run, now, self.max_bytes)
        network_path = self._network_path(key)
        run_tmp = self._write_tmp(run_blob)
        network_tmp = None if network_path.exists() else self._write_tmp(network_blob)
        try:
            with self._locked():
                live = self._live(now, sweep=True)
                live.pop(self._run_path(run.run_id), None)  # replaced, not added
                have_network = network_path in live
                incoming = run_blob.nbytes + (0 if have_network else network_blob.nbytes)
                self._evict(live, incoming, keep=network_path)
                if not have_network:
                    if network_tmp is None:  # evicted by another process since we looked
                        network_tmp = self._write_tmp(network_blob)
                    os.replace(network_tmp, network_path)
                    network_tmp = None
                os.utime(network_path, (now, now))
                os.replace(run_tmp, self._run_path(run.run_id))
                os.utime(self._run_path(run.run_id), (now, now))
                run_tmp = None
                inode = self._run_path(run.run_id).stat().st_ino
        finally:
            for leftover in (run_tmp, network_tmp):
                if leftover is not None:
                    _unlink(leftover)
        self._cache.put(key, run.network)
        self._recent.put(run.run_id, inode, key, run, run_blob.nbytes)

    def get(self, run_id: str) -> Run:
        if not RUN_ID.match(run_id):
            raise run_not_found(run_id, self.ttl_seconds)
        now = self._clock()
        path = self._run_path(run_id)
        try:
            inode = self._touch(path, now)
            recent = self._recent.get(run_id, inode)
            if recent is not None:
                self._network(recent[0], now)  # renew the network with its run
                return recent[1]
            network_keys: list[str] = []

            def network_for(key: str) -> Network:
                network_keys.append(key)
                return self._network(key, now)

            buffer = self._open(path)
            run = decode_run(buffer, network_for)
        except (_MissingFileError, BlobError, KeyError) as e:
            self._recent.discard(run_id)
            if not isinstance(e, _MissingFileError):
                log.warning("run %s in %s is unreadable: %s", run_id, self.root, e)
            raise run_not_found(run_id, self.ttl_seconds) from None
        self._recent.put(run_id, inode, network_keys[0], run, len(buffer))
        return run

    def delete(self, run_id: str) -> None:
        if RUN_ID.match(run_id):
            self._recent.discard(run_id)
            _unlink(self._run_path(run_id))

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for path in self._live(now) if path.parent == self._runs)

    @property
    def nbytes(self) -> int:
        """Bytes of every live run and network file."""
        return sum(self._live(self._clock()).values())

    def close(self) -> None:
        """Nothing to release: files are opened per request."""

    # -- files ---------------------------------------------------------------------------------
    def _run_path(self, run_id: str) -> Path:
        return self._runs / f"{run_id}.run"

    def _network_path(self, key: str) -> Path:
        return self._networks / f"{key}.net"

    def _write_tmp(self, blob: Blob) -> Path:
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                for part in blob.parts:
                    f.write(part)
        except BaseException:
            _unlink(Path(name))
            raise
        return Path(name)

    def _touch(self, path: Path, now: float) -> int:
        """Mark path used now and give its inode; _MissingFileError if it is gone or expired
        (then delete it)."""
        try:
            st = path.stat()
            if now - st.st_mtime > self.ttl_seconds:
                _unlink(path)
                raise _MissingFileError(path)
            if st.st_mtime != now:
                os.utime(path, (now, now))
            return st.st_ino
        except FileNotFoundError:
            raise _MissingFileError(path) from None

    def _open(self, path: Path) -> mmap.mmap:
        """path's bytes as a read-only mmap."""
        try:
            with open(path, "rb") as f:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (FileNotFoundError, ValueError):  # ValueError: an empty file cannot be mapped
            raise _MissingFileError(path) from None

    def _network(self, key: str, now: float) -> Network:
        path = self._network_path(key)
        network = self._cache.get(key)
        self._touch(path, now)  # in use: keep it at least as long as its runs
        if network is None:
            network = decode_network(self._open(path))
            self._cache.put(key, network)
        return network

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _live(self, now: float, sweep: bool = False) -> dict[Path, int]:
        """Every unexpired run and network file -> its size, least recently used first.

        sweep: also delete expired files, and tmp files left by writers that died.
        """
        found = []
        for directory in (self._runs, self._networks):
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    if now - st.st_mtime <= self.ttl_seconds:
                        # On a tie a run goes before its network, which must outlast it.
                        is_network = directory == self._networks
                        found.append((st.st_mtime, is_network, Path(entry.path), st.st_size))
                    elif sweep:
                        _unlink(Path(entry.path))
        if sweep:
            wall = time.time()  # tmp files have real mtimes whatever the clock
            with os.scandir(self._tmp) as entries:
                for entry in entries:
                    with contextlib.suppress(FileNotFoundError):
                        if wall - entry.stat().st_mtime > STALE_TMP_SECONDS:
                            _unlink(Path(entry.path))
        found.sort()
        return {path: size for _, _, path, size in found}

    def _evict(self, live: dict[Path, int], incoming: int, keep: Path) -> None:
        """Delete the least recently used files until incoming more bytes fit."""
        total = sum(live.values())
        for path, size in list(live.items()):
            if total + incoming <= self.max_bytes:
                break
            if path == keep:
                continue
            _unlink(path)
            del live[path]
            total -= size


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
