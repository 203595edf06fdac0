"""Runs in files, shared by every worker process of one machine.

Layout under `root`: `runs/<run_id>.run`, `networks/<key>.net` and
`gradients/<run_id>.<target>.<loss>.grad` (blobs.py formats), `tmp/` for files being written,
and `lock`. A file's mtime is its last use: `get` touches the run and its network, so a network
is always at least as recently used as any of its runs and the oldest-first eviction drops runs
before the network they need.

A run's gradient files belong to it: they count towards its bytes, their use touches the run
(`get_gradients` is a `get` first), and they go when it goes (evicted, expired, deleted or
replaced). Gradient files whose run file is gone are not counted and are swept at the next put;
`get_gradients` serves none whose run is not kept.

- Never half a run: a blob is written to tmp/ and moved into place with os.replace.
- Bounded by bytes: `put` (and `put_gradients`) takes an exclusive flock on `lock`, scans the
  directories, deletes expired files, then the oldest until the new run fits, and moves the run
  in, all under the lock.
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
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from app.cnn import Network
from app.cnn.backprop import Gradients
from app.errors import RunNotFoundError
from app.storage.runs.blobs import (
    RUN_MAGIC,
    Blob,
    BlobError,
    NetworkCache,
    NetworkKeys,
    RecentGradients,
    RecentRuns,
    decode_gradients,
    decode_network,
    decode_run,
    encode_for_store,
    encode_gradients,
    unpack,
)
from app.storage.runs.memory import RUN_ID, Clock, Run, run_not_found

log = logging.getLogger("cnn_explorer")

STALE_TMP_SECONDS = 600  # a tmp file this old was left by a writer that died
LOSS_NAME = re.compile(r"^[a-z_]{1,32}$")  # part of a gradient file's name


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
        self._gradients = self.root / "gradients"
        self._tmp = self.root / "tmp"
        for directory in (self._runs, self._networks, self._gradients, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "lock"
        self._keys = NetworkKeys()
        self._cache = NetworkCache()
        self._recent = RecentRuns()  # reused while the file has the same inode
        self._recent_gradients = RecentGradients()

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
                if live.pop(self._run_path(run.run_id), None) is not None:  # replaced, not added
                    self._drop_gradients(run.run_id)  # they were of the run it replaces
                have_network = network_path in live
                incoming = run_blob.nbytes + (0 if have_network else network_blob.nbytes)
                self._evict(live, incoming, keep={network_path})
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
            elif e.args[0] == path:  # the run itself is gone or expired: so are its gradients
                self._drop_gradients(run_id)
            raise run_not_found(run_id, self.ttl_seconds) from None
        self._recent.put(run_id, inode, network_keys[0], run, len(buffer))
        return run

    def delete(self, run_id: str) -> None:
        if RUN_ID.match(run_id):
            self._recent.discard(run_id)
            with self._locked():  # so that no put_gradients adds to the run meanwhile
                _unlink(self._run_path(run_id))
                self._drop_gradients(run_id)

    def put_gradients(self, run_id: str, grads: Gradients) -> bool:
        path = self._gradient_path(run_id, grads.target, grads.loss)
        if path is None:
            return False
        blob = encode_gradients(grads)
        if blob.nbytes > self.max_bytes:
            return False
        now = self._clock()
        tmp = None
        try:
            tmp = self._write_tmp(blob)
            with self._locked():
                live = self._live(now, sweep=True)
                run_path = self._run_path(run_id)
                if run_path not in live:
                    return False  # gone: its gradients would outlive it
                keep = {run_path, self._network_path(self._network_key_of(run_path))}
                with contextlib.suppress(FileNotFoundError):
                    live[run_path] -= path.stat().st_size  # replaced, not added
                if sum(live.get(p, 0) for p in keep) + blob.nbytes > self.max_bytes:
                    return False  # it does not fit beside its run: drop nothing for it
                self._evict(live, blob.nbytes, keep=keep)
                for used in keep:  # a use of the run, and of its network with it
                    os.utime(used, (now, now))
                os.replace(tmp, path)
                tmp = None
                inode = path.stat().st_ino
        except (OSError, _MissingFileError, BlobError, KeyError) as e:
            log.warning("gradients of run %s not kept in %s: %s", run_id, self.root, e)
            return False
        finally:
            if tmp is not None:
                _unlink(tmp)
        self._recent_gradients.put((run_id, grads.target, grads.loss), inode, grads, blob.nbytes)
        return True

    def get_gradients(self, run_id: str, target: int, loss: str) -> Gradients | None:
        path = self._gradient_path(run_id, target, loss)
        if path is None:
            return None
        try:
            self.get(run_id)  # kept, and renewed with its network: a use of the run
        except RunNotFoundError:
            self._recent_gradients.discard_run(run_id)
            return None
        key = (run_id, target, loss)
        try:
            inode = path.stat().st_ino
            recent = self._recent_gradients.get(key, inode)
            if recent is not None:
                return recent
            buffer = self._open(path)
            grads = decode_gradients(buffer)
        except (FileNotFoundError, _MissingFileError):
            return None
        except (BlobError, KeyError, TypeError) as e:
            log.warning("gradients %s in %s are unreadable: %s", path.name, self.root, e)
            return None
        self._recent_gradients.put(key, inode, grads, len(buffer))
        return grads

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for path in self._live(now) if path.parent == self._runs)

    @property
    def nbytes(self) -> int:
        """Bytes of every live run, gradient and network file."""
        return sum(self._live(self._clock()).values())

    def close(self) -> None:
        """Nothing to release: files are opened per request."""

    # -- files ---------------------------------------------------------------------------------
    def _run_path(self, run_id: str) -> Path:
        return self._runs / f"{run_id}.run"

    def _network_path(self, key: str) -> Path:
        return self._networks / f"{key}.net"

    def _gradient_path(self, run_id: str, target: int, loss: str) -> Path | None:
        """gradients/<run_id>.<target>.<loss>.grad, or None when the names are no file name."""
        if not (RUN_ID.match(run_id) and LOSS_NAME.match(loss)) or int(target) < 0:
            return None
        return self._gradients / f"{run_id}.{int(target)}.{loss}.grad"

    def _drop_gradients(self, run_id: str) -> None:
        """Delete every gradient file of run_id (a RUN_ID: no glob pattern in it)."""
        self._recent_gradients.discard_run(run_id)
        for path in self._gradients.glob(f"{run_id}.*.grad"):
            _unlink(path)

    def _network_key_of(self, run_path: Path) -> str:
        """The key of the network a run file names (its header only is read)."""
        meta, _ = unpack(self._open(run_path), RUN_MAGIC)
        return meta["network"]

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
        """Every unexpired run and network file -> its size (a run's with its gradient files'),
        least recently used first.

        sweep: also delete expired files, gradient files whose run is not live, and tmp files
        left by writers that died.
        """
        found: dict[Path, list] = {}  # path -> [mtime, rank, size]
        for rank, directory in enumerate((self._runs, self._networks)):
            for path, st in _scan(directory):
                if now - st.st_mtime <= self.ttl_seconds:
                    # On a tie a run goes before its network, which must outlast it.
                    found[path] = [st.st_mtime, rank, st.st_size]
                elif sweep:
                    _unlink(path)
        for path, st in _scan(self._gradients):
            owner = found.get(self._run_path(path.name.split(".", 1)[0]))
            if owner is not None and owner[1] == 0:
                owner[2] += st.st_size
            elif sweep:
                _unlink(path)
        if sweep:
            wall = time.time()  # tmp files have real mtimes whatever the clock
            for path, st in _scan(self._tmp):
                if wall - st.st_mtime > STALE_TMP_SECONDS:
                    _unlink(path)
        order = sorted(found.items(), key=lambda item: (item[1][0], item[1][1], item[0]))
        return {path: size for path, (_, _, size) in order}

    def _evict(self, live: dict[Path, int], incoming: int, keep: set[Path]) -> None:
        """Delete the least recently used files (a run with its gradients) but those in keep
        until incoming more bytes fit."""
        total = sum(live.values())
        for path, size in list(live.items()):
            if total + incoming <= self.max_bytes:
                break
            if path in keep:
                continue
            _unlink(path)
            if path.parent == self._runs:
                self._drop_gradients(path.stem)
            del live[path]
            total -= size


def _scan(directory: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """(path, stat) of each file in directory, leaving out those removed meanwhile."""
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                yield Path(entry.path), entry.stat()
            except FileNotFoundError:
                continue


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
