"""Training jobs as files, shared by every worker process of one machine.

Layout under `root` (data_dir/jobs); nothing else is ever written or deleted there:
- `<job_id>.json`: the job's latest snapshot, written by the process that runs it (its owner) to
  a temporary file and moved into place with os.replace, so a reader sees the old snapshot or the
  new one, never half of one.
- `<job_id>.cancel`: another process asks the owner to stop the job (`{"save": bool}`); the owner
  looks for it between batches (one stat) and removes it.
- `slot-<i>.lock`: held with flock by the owner for the job's whole life, the job's id written in
  it. There are train_max_jobs slots, so at most that many jobs run on the machine. A process that
  dies drops its flocks with its file descriptors: a job whose file says running while its slot is
  free (or its owner's pid is gone) had its owner die.
- `lock`: a short exclusive flock around taking or releasing a slot together with the job's file,
  and around checking an owner, so each of these sees the other whole.

flock locks belong to an open file, not to a process, so two JobFiles in one process exclude each
other like two processes do (the tests rely on it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

JOB_ID = re.compile(r"^[0-9a-f]{16}$")
STALE_TMP_SECONDS = 600  # a temporary file this old was left by a writer that died
HOST = socket.gethostname()


@dataclass
class Slot:
    """One of the machine's train_max_jobs running places, held (flock) until release()."""

    index: int
    file: IO[bytes] | None

    def release(self) -> None:
        """Let another job have the slot (idempotent)."""
        if self.file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()
            self.file = None


def owner_info(slot: Slot) -> dict:
    """What a job's file says about the process running it: {"pid", "host", "slot"}."""
    return {"pid": os.getpid(), "host": HOST, "slot": slot.index}


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class JobFiles:
    """The files of training jobs under root: snapshots, cancel requests and running slots."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"JobFiles({str(self.root)!r})"

    # -- snapshots -------------------------------------------------------------------------------
    def path(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / f"{job_id}.json"

    def write(self, job_id: str, record: dict) -> None:
        """Replace the job's snapshot with record (JSON; NaN allowed) in one step."""
        self._replace(self.path(job_id), json.dumps(record).encode())

    def read(self, job_id: str) -> dict | None:
        """The job's latest snapshot, or None when there is no (readable) file.

        Parsed on every call (a few kB): caching by inode and mtime could miss an update, as
        inodes are reused and mtimes are coarse.
        """
        if not JOB_ID.match(job_id):
            return None
        try:
            return json.loads((self.root / f"{job_id}.json").read_bytes())
        except (OSError, ValueError):  # gone, or (never, given os.replace) unreadable
            return None

    def job_ids(self) -> list[str]:
        """Ids of every job with a snapshot file."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return [n[:-5] for n in names if n.endswith(".json") and JOB_ID.match(n[:-5])]

    def remove(self, job_id: str) -> None:
        """Delete the job's snapshot and any cancel request for it."""
        for suffix in (".json", ".cancel"):
            _unlink(self.root / f"{job_id}{suffix}")

    # -- cancel requests -------------------------------------------------------------------------
    def request_cancel(self, job_id: str, save: bool) -> None:
        """Ask the job's owner (another process) to stop it; save: keep the weights so far."""
        self._replace(self.root / f"{self.path(job_id).stem}.cancel", json.dumps({"save": save}))

    def take_cancel_request(self, job_id: str) -> dict | None:
        """{"save": bool} when another process asked to cancel the job (the request is then
        removed), else None. Costs one failed open when there is none."""
        path = self.root / f"{job_id}.cancel"
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        _unlink(path)
        try:
            request = json.loads(text)
        except ValueError:
            request = {}
        return {"save": bool(request.get("save", False))}

    def remove_cancel_request(self, job_id: str) -> None:
        """Delete a cancel request the job ended before reading."""
        if JOB_ID.match(job_id):
            _unlink(self.root / f"{job_id}.cancel")

    # -- slots and the directory lock ------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock (not re-entrant: never nest it in one thread)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def take_slot(self, count: int, job_id: str) -> Slot | None:
        """The first free one of `count` slots, now held for job_id; None when all are taken.
        Call it under locked()."""
        self.root.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            f = open(self._slot_path(index), "a+b")  # noqa: SIM115 (held until release)
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            f.seek(0)
            f.truncate()
            f.write(job_id.encode())
            f.flush()
            return Slot(index, f)
        return None

    def owner_alive(self, record: dict) -> bool:
        """Whether the process that runs the job of `record` is still there. Call it under
        locked(): a slot being taken or released at the same time would read wrongly."""
        owner = record.get("owner") or {}
        pid, index = owner.get("pid"), owner.get("slot")
        if not isinstance(pid, int) or not isinstance(index, int):
            return False
        # The pid means something only on this machine (a shared volume has others).
        if owner.get("host") == HOST and not pid_alive(pid):
            return False
        path = self._slot_path(index)
        try:
            with open(path, "rb") as f:
                if f.read().decode(errors="replace") != record.get("job_id"):
                    return False  # the slot went to another job: this one's owner let it go
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True  # held, by the owner
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
                return False
        except FileNotFoundError:
            return False

    def sweep_tmp(self) -> None:
        """Delete temporary files left by writers that died."""
        now = time.time()
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        if now - entry.stat().st_mtime > STALE_TMP_SECONDS:
                            _unlink(Path(entry.path))

    # -- files -----------------------------------------------------------------------------------
    def _slot_path(self, index: int) -> Path:
        return self.root / f"slot-{index}.lock"

    def _replace(self, path: Path, data: bytes | str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.root, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            os.replace(name, path)
        except BaseException:
            _unlink(Path(name))
            raise


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
