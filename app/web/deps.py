"""Shared dependencies of the routers: settings, the run store, the render cache, the backward
passes, models, the training jobs."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, NamedTuple

from fastapi import Depends, Request

from app.schemas import ErrorResponse
from app.settings import Settings
from app.storage.models import ModelCatalog
from app.storage.runs.memory import RunStore
from app.web.admission import AdmissionGate
from app.web.backward_passes import BackwardPasses
from app.web.render_cache import RenderCache
from app.web.training_jobs import TrainingJobs

API_PREFIX = "/api/v1"


@cache
def package_version() -> str:
    """The installed cnn-explorer version (package metadata, read once: parsing it costs a
    fraction of a millisecond, and /health is polled)."""
    try:
        return version("cnn-explorer")
    except PackageNotFoundError:
        return "0.0.0+unknown"


async def get_run_store(request: Request) -> RunStore:
    return request.app.state.run_store


async def get_render_cache(request: Request) -> RenderCache:
    return request.app.state.render_cache


async def get_model_registry(request: Request) -> ModelCatalog:
    return request.app.state.model_registry


async def app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_training_jobs(request: Request) -> TrainingJobs:
    return request.app.state.training_jobs


# The getters are async on purpose: FastAPI runs a sync dependency in the thread pool, and four
# hand-offs per request cost about 1 ms (make bench, server_forward).
SettingsDep = Annotated[Settings, Depends(app_settings)]
StoreDep = Annotated[RunStore, Depends(get_run_store)]
CacheDep = Annotated[RenderCache, Depends(get_render_cache)]
RegistryDep = Annotated[ModelCatalog, Depends(get_model_registry)]
JobsDep = Annotated[TrainingJobs, Depends(get_training_jobs)]


class RunContext(NamedTuple):
    """What the run routes need, as one dependency: FastAPI solves each dependency on every
    request, and these routes are the ones a page calls a hundred times per run."""

    store: RunStore
    cache: RenderCache
    settings: Settings
    gate: AdmissionGate


async def run_context(request: Request) -> RunContext:
    state = request.app.state
    return RunContext(state.run_store, state.render_cache, state.settings, state.gate)


RunContextDep = Annotated[RunContext, Depends(run_context)]


class BackwardContext(NamedTuple):
    """What the backward-pass routes need, as one dependency: a RunContext and the backward
    passes (the run store's gradients, computed once when missing)."""

    store: RunStore
    cache: RenderCache
    settings: Settings
    gate: AdmissionGate
    backward: BackwardPasses


async def backward_context(request: Request) -> BackwardContext:
    state = request.app.state
    return BackwardContext(
        state.run_store, state.render_cache, state.settings, state.gate, state.backward_passes
    )


BackwardContextDep = Annotated[BackwardContext, Depends(backward_context)]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}
