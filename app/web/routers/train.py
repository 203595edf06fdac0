"""Training on the server: POST /train starts a job, GET follows it (JSON or server-sent events),
POST .../cancel stops it; DELETE /models/{name} removes a model trained here."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.train_schemas import (
    FINAL_STATES,
    EpochPoint,
    TrainConfigInfo,
    TrainRequest,
    TrainStarted,
    TrainStatus,
)
from app.web.checks import check_training
from app.web.deps import API_PREFIX, JobsDep, RegistryDep, SettingsDep, error_responses
from app.web.training_jobs import TrainingJob

train_router = APIRouter(tags=["training"])
T = TypeVar("T")

EVENT_POLL_SECONDS = 0.25  # how often the event stream looks for news
KEEP_ALIVE_SECONDS = 15  # a comment line this often keeps proxies from closing a quiet stream


def _urls(request: Request, job_id: str) -> dict[str, str]:
    base = f"{request.scope.get('root_path', '')}{API_PREFIX}/train/{job_id}"
    return {"status_url": base, "events_url": f"{base}/events", "cancel_url": f"{base}/cancel"}


def job_status(job: TrainingJob, snap: dict, request: Request) -> TrainStatus:
    """The TrainStatus of a job from one consistent snapshot (TrainingJobs.snapshot)."""
    req = job.request
    end = snap["finished"] or time.time()
    return TrainStatus(
        job_id=job.job_id,
        status=snap["status"],
        message=snap["message"],
        dataset=req.dataset,
        labels=job.labels,
        network=req.network,
        config=TrainConfigInfo.of(req),
        train_examples=job.train_examples,
        test_examples=job.test_examples,
        available_examples=job.available_examples,
        epoch=snap["epoch"],
        epochs=req.epochs,
        step=snap["step"],
        total_steps=job.total_steps,
        loss=_finite_or_none(snap["loss"]),
        history=[EpochPoint(**point) for point in snap["history"]],
        batch_losses=[(s, v) for s, v in snap["batch_losses"] if math.isfinite(v)],
        final_accuracy=snap["final_accuracy"],
        saved_model=snap["saved_model"],
        created=job.created,
        started=snap["started"],
        finished=snap["finished"],
        elapsed_seconds=0.0 if snap["started"] is None else max(0.0, end - snap["started"]),
        **_urls(request, job.job_id),
    )


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@train_router.post(
    "/train",
    status_code=202,
    response_model=TrainStarted,
    responses=error_responses(409, 413, 422, 429, 503),
)
def start_training(
    body: TrainRequest, request: Request, settings: SettingsDep, jobs: JobsDep
) -> TrainStarted:
    """Train the network on a data set in the background; follow it at the URLs returned.

    The network must fit the data set (input size; last layer dense, one unit per class,
    softmax), else 422 saying what to set. When the job ends the model is saved under `name`
    and listed by GET /api/v1/models with source "trained". 429 when train_max_jobs are
    already running; 409 when the name is taken (models are never overwritten).
    """
    plan = check_training(body, settings)
    job = jobs.start(plan.request, plan.network.spec)
    status = job_status(job, jobs.snapshot(job), request)
    return TrainStarted(job_id=job.job_id, status=status, **_urls(request, job.job_id))


@train_router.get("/train", response_model=list[TrainStatus])
def list_training_jobs(request: Request, jobs: JobsDep) -> list[TrainStatus]:
    """The server's training jobs (every worker process's), oldest first; finished ones are
    kept a while."""
    return [job_status(job, jobs.snapshot(job), request) for job in jobs.list()]


@train_router.get("/train/{job_id}", response_model=TrainStatus, responses=error_responses(404))
def training_status(job_id: str, request: Request, jobs: JobsDep) -> TrainStatus:
    """Where the job is: epoch, step, loss and accuracy history, the saved model's name."""
    job = jobs.get(job_id)
    return job_status(job, jobs.snapshot(job), request)


@train_router.get(
    "/train/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`event: progress` with a TrainStatus (JSON) on every change, at most "
            "4 a second; `event: end` with the final TrainStatus; then the stream closes. A "
            "browser's EventSource reconnects when a stream closes: close it on `end`.",
        },
        **error_responses(404),
    },
)
async def training_events(job_id: str, request: Request, jobs: JobsDep) -> StreamingResponse:
    """The job's progress as server-sent events, until it ends."""
    # Once per stream, in a thread: another process's job is found by reading its file.
    job = await asyncio.to_thread(jobs.get, job_id)

    async def read(what: Callable[[TrainingJob], T]) -> T:
        # Another process's job is read from its file (and its owner checked under a file
        # lock): off the event loop.
        return what(job) if job.owned else await asyncio.to_thread(what, job)

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        sent, quiet_since = -1, time.monotonic()
        while True:
            if await read(jobs.version) != sent:
                snap = await read(jobs.snapshot)
                sent, status = snap["version"], job_status(job, snap, request)
                final = status.status in FINAL_STATES
                kind = "end" if final else "progress"
                yield f"event: {kind}\ndata: {status.model_dump_json()}\n\n"
                if final:
                    return
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > KEEP_ALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(EVENT_POLL_SECONDS)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@train_router.post(
    "/train/{job_id}/cancel", response_model=TrainStatus, responses=error_responses(404)
)
def cancel_training(
    job_id: str,
    request: Request,
    jobs: JobsDep,
    save: Annotated[
        bool,
        Query(description="Save the weights reached so far (true) or throw them away (false)."),
    ] = False,
) -> TrainStatus:
    """Stop the job at the end of its current batch (a finished job is left as it is).

    Any worker process may be asked: one that does not run the job passes the request on to
    the one that does, which stops within a batch.

    The status ends "cancelled"; with save=true the weights so far are saved like a finished
    job's (saved_model, final_accuracy measured on the test images).
    """
    job, snap = jobs.cancel(job_id, save=save)
    return job_status(job, snap, request)


@train_router.delete(
    "/models/{name}",
    status_code=204,
    response_class=Response,
    tags=["models"],
    responses=error_responses(403, 404),
)
def delete_model(name: str, catalog: RegistryDep) -> Response:
    """Delete a model trained on this server (shipped models answer 403)."""
    catalog.delete(name)
    return Response(status_code=204)
