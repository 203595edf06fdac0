"""Training jobs: each runs app.learning.trainer.train on a background thread of one worker process.

The jobs do not go through the admission gate (a training run takes minutes; the gate's
budget is for requests). Instead at most `train_max_jobs` run at once on the machine (a slot
lock each, app/storage/jobs.py) and the next start is refused with 429 and a Retry-After.

A job lives in the memory of the process that runs it (its owner) and in data_dir/jobs/<id>.json,
which the owner rewrites on every change of state, every epoch and at most every
WRITE_EVERY_SECONDS for batches. Every worker process answers for every job: from memory if it
owns the job, else from the file; a cancel asked of another process is passed on as a request
file that the owner reads between batches. A job whose file says running after its owner died
reads as failed. The newest `train_jobs_kept` finished jobs are kept (files, so across restarts
too); the trained models are files of their own (app/storage/models.py), never touched here.
Every request is checked before it gets here (app/web/checks.py check_training).

Every change bumps the job's `version`, so the event stream (routers/train.py) sends an update
only when there is something new, and readers take a consistent `snapshot()` under the lock.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.cnn.spec import NetworkSpec
from app.errors import DatasetMissingError, JobNotFoundError, TooManyJobsError
from app.learning.datasets import Dataset, DatasetUnavailableError, load_dataset
from app.learning.trainer import EpochReport, TrainConfig, TrainError, evaluate, train
from app.settings import Settings
from app.storage.jobs import JobFiles, Slot, owner_info
from app.storage.models import ModelCatalog
from app.train_schemas import FINAL_STATES, TrainRequest
from app.web.checks import without_weights

log = logging.getLogger("cnn_explorer")

BATCH_SAMPLES = 400  # most per-batch loss samples kept (thinned evenly beyond that)
WRITE_EVERY_SECONDS = 0.25  # batch progress reaches the job's file at most this often
STOPPING = "Stopping at the end of the current batch…"
# The fields of TrainingJobs.snapshot(), which the job's file holds under "state".
STATE_FIELDS = (
    "version",
    "status",
    "message",
    "started",
    "finished",
    "epoch",
    "step",
    "loss",
    "history",
    "batch_losses",
    "final_accuracy",
    "saved_model",
)


@functools.lru_cache(maxsize=2)
def cached_dataset(name: str) -> Dataset:
    """load_dataset(name), once per process (the shapes set is generated: about a second)."""
    return load_dataset(name)


def sample(x: np.ndarray, y: np.ndarray, most: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `most` of the images x (N, H, W, C) and labels y (N,): a seeded sample, in order."""
    if most >= len(x):
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:most])
    return x[keep], y[keep]


def remaining_seconds(started: float | None, step: int, total_steps: int) -> float | None:
    """A guess at a job's time left, from its pace so far (None before its first step)."""
    if started is None or step == 0:
        return None
    return (time.time() - started) * (total_steps - step) / step


def stopped_owner_message(step: int, total_steps: int) -> str:
    return (
        f"The server process running this job stopped at step {step} of {total_steps}, so the "
        "job ended there and no model was saved. Start it again."
    )


@dataclass
class TrainingJob:
    """One training run and everything its status page shows (guarded by TrainingJobs' lock).

    A job run by another process is a TrainingJob too (owned False), rebuilt from its file; its
    changing fields are then read from the file by TrainingJobs.snapshot(), not from here.
    """

    job_id: str
    request: TrainRequest
    name: str  # the name it will be saved under (may gain a suffix if taken meanwhile)
    labels: list[str]
    train_examples: int
    test_examples: int
    available_examples: int
    total_steps: int
    created: float = field(default_factory=time.time)
    status: str = "queued"
    message: str | None = None
    started: float | None = None
    finished: float | None = None
    epoch: int = 0
    step: int = 0
    loss: float | None = None
    history: list[dict] = field(default_factory=list)
    batch_losses: list[tuple[int, float]] = field(default_factory=list)
    batch_stride: int = 1
    final_accuracy: float | None = None
    saved_model: str | None = None
    version: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    save_on_cancel: bool = False
    stop_reason: str | None = None
    thread: threading.Thread | None = None
    owned: bool = True  # run by this process (else: read from its file)
    slot: Slot | None = None  # the running place it holds while active (owned jobs)
    owner: dict = field(default_factory=dict)  # {"pid", "host", "slot"}: who runs it
    spec: NetworkSpec | None = None  # owned jobs: the checked engine spec it trains
    written: float = 0.0  # time.monotonic() of the last write of its file
    last_state: dict | None = None  # not owned: the snapshot last read from its file

    @property
    def active(self) -> bool:
        return self.status not in FINAL_STATES

    def record_batch(self, step: int, loss: float) -> None:
        """Keep every batch_stride-th loss; halve the samples when there are too many."""
        self.step, self.loss = step, loss
        if step % self.batch_stride == 0:
            self.batch_losses.append((step, loss))
            if len(self.batch_losses) > BATCH_SAMPLES:
                self.batch_stride *= 2
                self.batch_losses = [s for s in self.batch_losses if s[0] % self.batch_stride == 0]

    def remaining_seconds(self) -> float | None:
        """A guess at the time left, from the pace so far."""
        return remaining_seconds(self.started, self.step, self.total_steps)

    def state(self) -> dict:
        """The changing fields (STATE_FIELDS), copied; take TrainingJobs' lock around it."""
        state = {name: getattr(self, name) for name in STATE_FIELDS}
        state["history"] = list(self.history)
        state["batch_losses"] = list(self.batch_losses)
        return state

    def record(self) -> dict:
        """Everything a status reply shows, for the job's file (JSON-ready)."""
        return {
            "job_id": self.job_id,
            "request": self.request.model_dump(mode="json"),
            "name": self.name,
            "labels": self.labels,
            "train_examples": self.train_examples,
            "test_examples": self.test_examples,
            "available_examples": self.available_examples,
            "total_steps": self.total_steps,
            "created": self.created,
            "owner": self.owner,
            "state": self.state(),
        }

    @classmethod
    def from_record(cls, record: dict) -> TrainingJob:
        """A job of another process from its file's record (owned False)."""
        state = record["state"]
        return cls(
            job_id=record["job_id"],
            request=TrainRequest.model_validate(record["request"]),
            name=record["name"],
            labels=list(record["labels"]),
            train_examples=record["train_examples"],
            test_examples=record["test_examples"],
            available_examples=record["available_examples"],
            total_steps=record["total_steps"],
            created=record["created"],
            status=state["status"],
            owned=False,
            owner=dict(record.get("owner") or {}),
            last_state=state,
        )


class TrainingJobs:
    """Starts, tracks and cancels training jobs for one app; saves what they learn.

    Jobs of the other worker processes (same data_dir) are read, cancelled and counted through
    their files, so any process answers for any job.
    """

    def __init__(self, settings: Settings, catalog: ModelCatalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.files = JobFiles(settings.data_dir / "jobs")
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, TrainingJob] = OrderedDict()
        self._others: OrderedDict[str, TrainingJob] = OrderedDict()  # parsed requests, reused

    # -- reading -----------------------------------------------------------------------------
    def get(self, job_id: str) -> TrainingJob:
        """The job, run here or by another process; JobNotFoundError (404) when unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            record = self._read(job_id)
            if record is not None:
                job = self._other(record)
        if job is None:
            raise JobNotFoundError(
                f"There is no training job {job_id!r} (finished jobs are kept until "
                f"{self.settings.train_jobs_kept} newer ones have ended; the saved model stays "
                "in GET /api/v1/models)."
            )
        return job

    def list(self) -> list[TrainingJob]:
        """Every worker process's jobs, oldest first."""
        with self._lock:
            jobs = dict(self._jobs)
        for job_id in self.files.job_ids():
            if job_id not in jobs:
                record = self._read(job_id)
                if record is not None:
                    jobs[job_id] = self._other(record)
        return sorted(jobs.values(), key=lambda j: (j.created, j.job_id))

    def snapshot(self, job: TrainingJob) -> dict:
        """A consistent copy of the job's changing fields (STATE_FIELDS): from memory under the
        lock for a job run here, else from its file (a stopped owner reads as failed)."""
        if job.owned:
            with self._lock:
                return job.state()
        record = self._read(job.job_id)
        if record is not None:
            job.last_state = record["state"]
            job.status = job.last_state["status"]
        elif job.active:  # the file went while we watched: it cannot go on unseen
            state = dict(job.last_state or {})
            state.update(
                version=state.get("version", 0) + 1,
                status="failed",
                finished=time.time(),
                message="This job's record was removed from the server before it ended.",
            )
            job.last_state, job.status = state, "failed"
        return dict(job.last_state or {})

    def version(self, job: TrainingJob) -> int:
        if job.owned:
            with self._lock:
                return job.version
        return self.snapshot(job)["version"]

    def _other(self, record: dict) -> TrainingJob:
        """Another process's job from its record, reusing the parsed request."""
        job = self._others.get(record["job_id"])
        if job is None or job.created != record["created"]:
            job = TrainingJob.from_record(record)
            self._others[job.job_id] = job
            while len(self._others) > 4 * self.settings.train_jobs_kept + 16:
                self._others.popitem(last=False)
        job.last_state, job.status = record["state"], record["state"]["status"]
        return job

    def _read(self, job_id: str) -> dict | None:
        """The job's file's record; one whose owner stopped is marked failed first."""
        record = self.files.read(job_id)
        if record is None or record["state"]["status"] in FINAL_STATES:
            return record
        with self._lock:
            if job_id in self._jobs:  # ours: the file may lag behind memory, never stop
                return record
        with self.files.locked():
            return self._settle(self.files.read(job_id))

    def _settle(self, record: dict | None) -> dict | None:
        """record, or when it says active but its owner is gone, record rewritten as failed
        (under files.locked())."""
        if record is None or record["state"]["status"] in FINAL_STATES:
            return record
        if self.files.owner_alive(record):
            return record
        state = record["state"]
        state.update(
            version=state["version"] + 1,
            status="failed",
            finished=time.time(),
            message=stopped_owner_message(state["step"], record["total_steps"]),
        )
        try:
            self.files.write(record["job_id"], record)
        except OSError as e:  # read as failed all the same
            log.warning("Could not mark training job %s failed: %s", record["job_id"], e)
        return record

    def _live_records(self) -> list[dict]:
        """Records of every job on the machine, owners checked (under files.locked())."""
        with self._lock:
            mine = {job_id: job.record() for job_id, job in self._jobs.items()}
        records = list(mine.values())
        for job_id in self.files.job_ids():
            if job_id not in mine:
                record = self._settle(self.files.read(job_id))
                if record is not None:
                    records.append(record)
        return records

    # -- writing -----------------------------------------------------------------------------
    def _write(self, job: TrainingJob) -> None:
        """Write the job's file (under self._lock, so writes of one job keep their order)."""
        try:
            self.files.write(job.job_id, job.record())
        except OSError as e:  # the job goes on; other processes see its last file
            log.warning("Could not write training job %s to %s: %s", job.job_id, self.files, e)
        job.written = time.monotonic()

    # -- starting ----------------------------------------------------------------------------
    def start(self, request: TrainRequest, spec: NetworkSpec | None = None) -> TrainingJob:
        """Check the running jobs and the name, then train on a new thread; the job, queued.

        request : checked by app/web/checks.check_training, its network without weights
        spec : that network's engine spec, as checked; None converts request.network here
        Raises TooManyJobsError (429), ModelNameTakenError (409), SavedModelsFullError (409),
        DatasetMissingError (503).
        """
        settings = self.settings
        if spec is None:
            spec = without_weights(request.network).to_engine()
        try:
            data = cached_dataset(request.dataset)
        except DatasetUnavailableError as e:
            raise DatasetMissingError(
                f"The {request.dataset} data set is not installed: {e}"
            ) from e
        cap = settings.train_max_examples or len(data.x_train)
        if request.max_examples is not None:
            cap = min(cap, request.max_examples)
        train_examples = min(cap, len(data.x_train))
        test_examples = min(cap, len(data.x_test))
        steps = request.epochs * math.ceil(train_examples / request.batch_size)
        job_id = secrets.token_hex(8)
        # Under the directory lock: the slot, the names being trained and the new job's file
        # change together for every process.
        with self.files.locked():
            running = [r for r in self._live_records() if r["state"]["status"] not in FINAL_STATES]
            slot = self.files.take_slot(settings.train_max_jobs, job_id)
            if slot is None:
                raise self._too_many(running)
            try:
                pending = {r["name"] for r in running}
                if request.name is not None:
                    self.catalog.check_new_name(request.name, pending)
                    name = request.name
                else:
                    name = self.catalog.saved.free_name(f"my-{request.dataset}", pending)
                self.catalog.saved.check_room(pending=len(pending))
            except BaseException:
                slot.release()
                raise
            job = TrainingJob(
                job_id=job_id,
                request=request,
                name=name,
                labels=list(data.labels),
                train_examples=train_examples,
                test_examples=test_examples,
                available_examples=len(data.x_train),
                total_steps=steps,
                slot=slot,
                owner=owner_info(slot),
                spec=spec,
            )
            with self._lock:
                self._jobs[job_id] = job
                self._write(job)
            self._forget_old()
        job.thread = threading.Thread(
            target=self._run, args=(job, data), name=f"train-{job_id}", daemon=True
        )
        job.thread.start()
        return job

    def _too_many(self, running: list[dict]) -> TooManyJobsError:
        most = self.settings.train_max_jobs
        waits = [
            remaining_seconds(r["state"]["started"], r["state"]["step"], r["total_steps"])
            for r in running
        ]
        known = [w for w in waits if w is not None]
        retry = min(known) if known else 30
        return TooManyJobsError(
            f"{len(running) or most} training job(s) are running, the most this server runs "
            f"at once ({most}). Wait for one to finish (about {math.ceil(retry)} s) or cancel "
            "it, then start again.",
            retry_after=min(max(math.ceil(retry), 1), 600),
        )

    def _forget_old(self) -> None:
        """Keep the newest train_jobs_kept finished jobs (by end time) of the whole machine:
        delete older files, and forget own finished jobs whose file is gone (under
        files.locked())."""
        finished: list[tuple[float, float, str]] = []
        for record in self._live_records():
            state = record["state"]
            if state["status"] in FINAL_STATES:
                finished.append((state["finished"] or 0.0, record["created"], record["job_id"]))
        finished.sort()
        for _, _, job_id in finished[: max(0, len(finished) - self.settings.train_jobs_kept)]:
            self.files.remove(job_id)
        kept = set(self.files.job_ids())
        with self._lock:
            for job_id in [j for j, job in self._jobs.items() if not job.active]:
                if job_id not in kept:
                    del self._jobs[job_id]
        self.files.sweep_tmp()

    # -- stopping ----------------------------------------------------------------------------
    def cancel(self, job_id: str, save: bool = False) -> tuple[TrainingJob, dict]:
        """Ask the job to stop at its next batch; with save, keep the weights reached so far.

        A job run by another process is asked through a request file its owner reads between
        batches. Returns the job and its snapshot (a finished job is left as it was).
        """
        job = self.get(job_id)
        if job.owned:
            self._cancel_here(job, save)
            return job, self.snapshot(job)
        state = self.snapshot(job)
        if state["status"] in FINAL_STATES:
            return job, state
        # Asked again under the lock the owner holds when it clears the job's cancel request at
        # the end: a request written after that would lie there unread until the job is pruned.
        with self.files.locked():
            record = self._settle(self.files.read(job_id))
            running = record is not None and record["state"]["status"] not in FINAL_STATES
            if running:
                self.files.request_cancel(job_id, save)
        if not running:
            return job, self.snapshot(job)
        state["message"] = STOPPING
        return job, state

    def _cancel_here(self, job: TrainingJob, save: bool) -> None:
        with self._lock:
            if job.active:
                job.save_on_cancel = save
                job.stop_reason = "cancelled"
                job.message = STOPPING
                job.version += 1
                job.cancel.set()
                self._write(job)

    def shutdown(self, wait_seconds: float = 0.0) -> None:
        """Stop every running job at its next batch, keeping the weights it reached (saved like
        Cancel & save, so a restart does not throw the training away), and wait up to
        wait_seconds for their threads to end."""
        with self._lock:
            running = [job for job in self._jobs.values() if job.active]
            for job in running:
                job.save_on_cancel = True
                job.stop_reason = "shutdown"
                job.cancel.set()
        deadline = time.monotonic() + wait_seconds
        for job in running:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    # -- the thread --------------------------------------------------------------------------
    def _update(self, job: TrainingJob, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)
            job.version += 1
            self._write(job)

    def _end(self, job: TrainingJob, **changes: Any) -> None:
        """The job's final state: in memory and in its file, and its slot given back, all at
        once for every reader (so a reader that sees it ended can start the next job)."""
        with self.files.locked(), self._lock:
            for key, value in changes.items():
                setattr(job, key, value)
            job.version += 1
            self._write(job)
            self._release(job)

    def _release(self, job: TrainingJob) -> None:
        if job.slot is not None:
            job.slot.release()
            job.slot = None

    def _take_cancel_request(self, job: TrainingJob) -> None:
        """Cancel the job if another process asked to (a failed open when none did)."""
        asked = self.files.take_cancel_request(job.job_id)
        if asked is not None:
            self._cancel_here(job, asked["save"])

    def _run(self, job: TrainingJob, data: Dataset) -> None:
        try:
            self._train(job, data)
        except (TrainError, ValueError) as e:
            self._end(job, status="failed", message=str(e), finished=time.time())
        except Exception:  # a bug: say so on the job rather than lose the thread silently
            log.exception("Training job %s failed", job.job_id)
            self._end(
                job,
                status="failed",
                message="Training failed with an internal error; the server log has details.",
                finished=time.time(),
            )
        finally:
            with self._lock:
                self._release(job)  # already given back unless _end itself failed
            with self.files.locked():
                self.files.remove_cancel_request(job.job_id)
                self._forget_old()

    def _train(self, job: TrainingJob, data: Dataset) -> None:
        req, settings = job.request, self.settings
        x, y = sample(data.x_train, data.y_train, job.train_examples, req.seed)
        x_test, y_test = sample(data.x_test, data.y_test, job.test_examples, req.seed)
        config = TrainConfig(
            epochs=req.epochs,
            batch_size=req.batch_size,
            optimizer=req.optimizer,
            learning_rate=req.learning_rate,
            schedule=req.schedule,
            seed=req.seed,
            workers=settings.train_threads or None,
            momentum=req.sgd_momentum,
        )
        budget = settings.train_max_seconds
        self._update(job, status="running", started=time.time(), message=None)
        self._take_cancel_request(job)
        started = time.monotonic()

        def on_batch(step: int, total: int, loss: float) -> None:
            self._take_cancel_request(job)
            with self._lock:
                job.record_batch(step, float(loss))
                job.version += 1
                if not math.isfinite(loss):
                    job.stop_reason = "diverged"
                    job.cancel.set()
                elif time.monotonic() - started > budget and not job.cancel.is_set():
                    job.stop_reason = "time"
                    job.save_on_cancel = True
                    job.cancel.set()
                if time.monotonic() - job.written >= WRITE_EVERY_SECONDS:
                    self._write(job)

        def on_epoch(report: EpochReport) -> None:
            point = {
                "epoch": report.epoch,
                "loss": report.loss,
                "accuracy": report.accuracy,
                "test_loss": report.test_loss,
                "test_accuracy": report.test_accuracy,
                "seconds": report.seconds,
            }
            with self._lock:
                job.epoch = report.epoch
                job.history.append(point)
                job.version += 1
                self._write(job)

        assert job.spec is not None  # set by start() on every job this process runs
        result = train(
            job.spec,
            x,
            y,
            config,
            x_test=x_test,
            y_test=y_test,
            on_epoch=on_epoch,
            on_batch=on_batch,
            cancel=job.cancel,
        )
        with self._lock:
            reason, save = job.stop_reason, job.save_on_cancel
        if reason == "diverged":
            self._end(
                job,
                status="failed",
                finished=time.time(),
                message=f"The loss became infinite or NaN at step {job.step}: the learning rate "
                f"{req.learning_rate:g} is too high for this network. Try "
                f"{req.learning_rate / 10:g}.",
            )
            return
        if result.cancelled and (not save or job.step == 0):
            self._end(
                job,
                status="cancelled",
                finished=time.time(),
                message=f"Cancelled after {job.step} of {job.total_steps} steps; nothing was "
                "saved.",
            )
            return
        if result.history and not result.cancelled:
            accuracy = result.history[-1].test_accuracy
        else:  # stopped mid-epoch: measure the weights actually saved
            accuracy = evaluate(result.spec, x_test, y_test).accuracy
        name = self._save(job, result.spec, accuracy, len(result.history))
        if result.cancelled:
            why = {
                "time": f"the {budget:g} s training time limit was reached",
                "shutdown": "the server was stopping",
            }.get(reason or "", "it was stopped")
            message = (
                f"Stopped after {job.step} of {job.total_steps} steps because {why}; the weights "
                f"so far were saved as {name!r} (test accuracy {accuracy:.1%})."
            )
            status = "cancelled"
        else:
            message = f"Saved as {name!r} (test accuracy {accuracy:.1%})."
            status = "done"
        if name != job.name:
            message += f" ({job.name!r} was taken meanwhile.)"
        self._end(
            job,
            status=status,
            finished=time.time(),
            final_accuracy=accuracy,
            saved_model=name,
            message=message,
        )

    def _save(self, job: TrainingJob, spec: NetworkSpec, accuracy: float, epochs: int) -> str:
        req = job.request
        data = cached_dataset(req.dataset)
        used = (
            f"{job.train_examples} of {job.available_examples} training images"
            if job.train_examples < job.available_examples
            else f"all {job.train_examples} training images"
        )
        optimiser = "Adam" if req.optimizer == "adam" else f"SGD (momentum {req.sgd_momentum:g})"
        description = (
            f"Trained on this server on the {req.dataset} data set ({used}) for {epochs} "
            f"epoch(s) with {optimiser}, learning rate {req.learning_rate:g}, batch size "
            f"{req.batch_size}; test accuracy {accuracy:.1%} on {job.test_examples} held-out "
            "images."
        )
        split = data.split
        if job.test_examples < len(data.x_test):
            split += f", then a seeded sample of {job.test_examples} (seed {req.seed})"
        command = "POST /api/v1/train " + json.dumps(
            req.model_dump(exclude={"network", "name"}) | {"network": "(this architecture)"}
        )
        return self.catalog.saved.save(
            job.name,
            spec,
            description=description,
            labels=list(data.labels),
            accuracy=accuracy,
            test_split=split,
            dataset=data.description,
            command=command,
        )
