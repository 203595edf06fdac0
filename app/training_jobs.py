"""Training jobs: each runs app.cnn.trainer.train on its own background thread.

The jobs do not go through the admission gate (a training run takes minutes; the gate's
budget is for requests). Instead at most `train_max_jobs` run at once and the next start is
refused with 429 and a Retry-After. A job's progress lives in this process's memory: the
finished records are kept (the newest `train_jobs_kept`) for their status pages, the trained
models are files (app/saved_models.py) and outlive the process.

Every change bumps the job's `version`, so the event stream (routers/train.py) sends an update
only when there is something new, and readers take a consistent `snapshot()` under the lock.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from app.admission import OverloadedError
from app.cnn.spec import ConvSpec, DenseSpec, NetworkSpec
from app.cnn.trainer import EpochReport, TrainConfig, TrainError, evaluate, train
from app.datasets import (
    DIGIT_LABELS,
    SHAPE_LABELS,
    Dataset,
    DatasetUnavailableError,
    load_dataset,
)
from app.errors import AppError, IssueDict, NotFoundError, issue
from app.saved_models import ModelCatalog
from app.schemas import DenseLayer, NetworkSpecModel
from app.settings import Settings
from app.train_schemas import FINAL_STATES, TrainRequest

log = logging.getLogger("cnn_explorer")

# (height, width, channels), class names of each data set: what a network must fit.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "digits": ((28, 28, 1), DIGIT_LABELS),
    "shapes": ((32, 32, 3), SHAPE_LABELS),
}
BATCH_SAMPLES = 400  # most per-batch loss samples kept (thinned evenly beyond that)


class TooManyJobsError(OverloadedError):
    """train_max_jobs jobs are already running (429, with Retry-After)."""

    status_code = 429


class JobNotFoundError(NotFoundError):
    pass


class DatasetMissingError(AppError):
    """The data set's files are not installed on the server (503)."""

    status_code = 503


def fit_issues(spec: NetworkSpecModel, dataset: str) -> list[IssueDict]:
    """Why a network cannot learn `dataset` as it stands (input size, last layer), or []."""
    (h, w, c), labels = DATASET_SHAPES[dataset]
    n = len(labels)
    fix = (
        f"The {dataset} dataset is {h}x{w}x{c} with {n} classes; set the input to {h}x{w}x{c} "
        f"and the last dense layer to {n} units with softmax."
    )
    found: list[IssueDict] = []
    inp = spec.input
    if (inp.height, inp.width, inp.channels) != (h, w, c):
        found.append(
            issue(
                None,
                "input",
                f"The input is {inp.height}x{inp.width}x{inp.channels}, but the {dataset} images "
                f"are {h}x{w}x{c}.",
                fix,
            )
        )
    last_index = len(spec.layers) - 1
    last = spec.layers[last_index]
    if not isinstance(last, DenseLayer):
        found.append(
            issue(
                last_index,
                "type",
                f"Layer {last_index} ({last.type}) is last, but training needs a dense layer "
                "last, with one unit per class.",
                fix,
            )
        )
    else:
        if last.units != n:
            found.append(
                issue(
                    last_index,
                    "units",
                    f"Layer {last_index} (dense) has {last.units} units, but {dataset} has {n} "
                    "classes.",
                    fix,
                )
            )
        if last.activation != "softmax":
            found.append(
                issue(
                    last_index,
                    "activation",
                    f"Layer {last_index} (dense) has activation {last.activation!r}; training "
                    "needs softmax on the last layer (its outputs become class probabilities).",
                    fix,
                )
            )
    for index, layer in enumerate(spec.layers[:-1]):
        if isinstance(layer, DenseLayer) and layer.activation == "softmax":
            found.append(
                issue(
                    index,
                    "activation",
                    f"Layer {index} (dense) uses softmax but is not the last layer.",
                    "Use activation relu or none there; only the last layer may use softmax.",
                )
            )
    return found


def bare_spec(spec: NetworkSpecModel) -> NetworkSpec:
    """The engine spec without inline weights: training starts from the seeded initialisation."""
    engine = spec.to_engine()
    layers = tuple(
        dataclasses.replace(layer, weights=None, bias=None)
        if isinstance(layer, ConvSpec | DenseSpec)
        else layer
        for layer in engine.layers
    )
    return dataclasses.replace(engine, layers=layers)


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


@dataclass
class TrainingJob:
    """One training run and everything its status page shows (guarded by TrainingJobs' lock)."""

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
        if self.started is None or self.step == 0:
            return None
        spent = time.time() - self.started
        return spent * (self.total_steps - self.step) / self.step


class TrainingJobs:
    """Starts, tracks and cancels training jobs for one app; saves what they learn."""

    def __init__(self, settings: Settings, catalog: ModelCatalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, TrainingJob] = OrderedDict()

    # -- reading -----------------------------------------------------------------------------
    def get(self, job_id: str) -> TrainingJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(
                f"There is no training job {job_id!r} (finished jobs are kept until "
                f"{self.settings.train_jobs_kept} newer ones have ended, and not across a "
                "restart; the saved model stays in GET /api/v1/models)."
            )
        return job

    def list(self) -> list[TrainingJob]:
        with self._lock:
            return list(self._jobs.values())

    def snapshot(self, job: TrainingJob) -> dict:
        """A consistent copy of the job's changing fields (read it without holding the lock)."""
        with self._lock:
            return {
                "version": job.version,
                "status": job.status,
                "message": job.message,
                "started": job.started,
                "finished": job.finished,
                "epoch": job.epoch,
                "step": job.step,
                "loss": job.loss,
                "history": list(job.history),
                "batch_losses": list(job.batch_losses),
                "final_accuracy": job.final_accuracy,
                "saved_model": job.saved_model,
            }

    def version(self, job: TrainingJob) -> int:
        with self._lock:
            return job.version

    # -- starting ----------------------------------------------------------------------------
    def _pending_names(self) -> set[str]:
        return {j.name for j in self._jobs.values() if j.active}

    def start(self, request: TrainRequest) -> TrainingJob:
        """Check the limits and the name, then train on a new thread; the job, status queued.

        Raises TooManyJobsError (429), ModelNameTakenError (409), SavedModelsFullError (409),
        DatasetMissingError (503).
        """
        settings = self.settings
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
        with self._lock:
            running = [j for j in self._jobs.values() if j.active]
            if len(running) >= settings.train_max_jobs:
                waits = [j.remaining_seconds() for j in running]
                known = [w for w in waits if w is not None]
                retry = min(known) if known else 30
                raise TooManyJobsError(
                    f"{len(running)} training job(s) are running, the most this server runs at "
                    f"once ({settings.train_max_jobs}). Wait for one to finish (about "
                    f"{math.ceil(retry)} s) or cancel it, then start again.",
                    retry_after=min(max(math.ceil(retry), 1), 600),
                )
            pending = self._pending_names()
            if request.name is not None:
                self.catalog.check_new_name(request.name, pending)
                name = request.name
            else:
                name = self.catalog.saved.free_name(f"my-{request.dataset}", pending)
            self.catalog.saved.check_room(pending=len(pending))
            job_id = secrets.token_hex(8)
            job = TrainingJob(
                job_id=job_id,
                request=request,
                name=name,
                labels=list(data.labels),
                train_examples=train_examples,
                test_examples=test_examples,
                available_examples=len(data.x_train),
                total_steps=steps,
            )
            self._jobs[job_id] = job
            self._forget_old()
        job.thread = threading.Thread(
            target=self._run, args=(job, data), name=f"train-{job_id}", daemon=True
        )
        job.thread.start()
        return job

    def _forget_old(self) -> None:
        """Drop the oldest finished records beyond train_jobs_kept (under the lock)."""
        finished = [j for j in self._jobs.values() if not j.active]
        for job in finished[: max(0, len(finished) - self.settings.train_jobs_kept)]:
            del self._jobs[job.job_id]

    # -- stopping ----------------------------------------------------------------------------
    def cancel(self, job_id: str, save: bool = False) -> TrainingJob:
        """Ask the job to stop at its next batch; with save, keep the weights reached so far."""
        job = self.get(job_id)
        with self._lock:
            if job.active:
                job.save_on_cancel = save
                job.stop_reason = "cancelled"
                job.message = "Stopping at the end of the current batch…"
                job.version += 1
                job.cancel.set()
        return job

    def shutdown(self, wait_seconds: float = 0.0) -> None:
        """Cancel every running job (the app is stopping; nothing more is saved) and wait up to
        wait_seconds for their threads to end."""
        with self._lock:
            running = [job for job in self._jobs.values() if job.active]
            for job in running:
                job.save_on_cancel = False
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

    def _run(self, job: TrainingJob, data: Dataset) -> None:
        try:
            self._train(job, data)
        except (TrainError, ValueError) as e:
            self._update(job, status="failed", message=str(e), finished=time.time())
        except Exception:  # a bug: say so on the job rather than lose the thread silently
            log.exception("Training job %s failed", job.job_id)
            self._update(
                job,
                status="failed",
                message="Training failed with an internal error; the server log has details.",
                finished=time.time(),
            )
        finally:
            with self._lock:
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
            momentum=0.9 if req.momentum is None else req.momentum,
        )
        budget = settings.train_max_seconds
        self._update(job, status="running", started=time.time(), message=None)
        started = time.monotonic()

        def on_batch(step: int, total: int, loss: float) -> None:
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

        result = train(
            bare_spec(req.network),
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
            self._update(
                job,
                status="failed",
                finished=time.time(),
                message=f"The loss became infinite or NaN at step {job.step}: the learning rate "
                f"{req.learning_rate:g} is too high for this network. Try "
                f"{req.learning_rate / 10:g}.",
            )
            return
        if result.cancelled and (not save or job.step == 0):
            self._update(
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
            why = (
                f"the {budget:g} s training time limit was reached"
                if reason == "time"
                else "it was stopped"
            )
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
        self._update(
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
        optimiser = (
            "Adam"
            if req.optimizer == "adam"
            else f"SGD (momentum {0.9 if req.momentum is None else req.momentum:g})"
        )
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
