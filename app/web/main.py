"""The app factory and the `cnn-explorer` command: wiring, static files, templates, settings."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import Settings, get_settings
from app.storage.models import ModelCatalog, ModelRegistry, SavedModels
from app.storage.runs import describe_run_store, open_run_store
from app.web.admission import install_admission, limit_blas_threads
from app.web.backward_passes import BackwardPasses
from app.web.deps import package_version
from app.web.handlers import error_reply, install_error_handlers
from app.web.render_cache import RenderCache
from app.web.routers import include_api
from app.web.security import install_security
from app.web.training_jobs import TrainingJobs
from app.web.validation import file_size

log = logging.getLogger("cnn_explorer")

DESCRIPTION = """
See what a convolutional neural network does to an image, stage by stage.

Describe a network (`POST /api/v1/shapes` checks its arithmetic), send an image through it
(`POST /api/v1/forward`), then fetch each layer's maps as PNGs, its raw values as .npy and the
computation of any single value (`.../explain`). Arrays are `[height, width, channels]`.
"""

# Multipart framing around the image and the network field.
_MULTIPART_SLACK = 64 * 1024


class BodySizeLimit:
    """Refuse request bodies over max_bytes with a JSON 413, before they are read.

    Multipart bodies (an upload) may have max_bytes; any other body (a network spec in JSON) may
    have max_json_bytes. A declared Content-Length is refused at once; a streamed body is counted
    as it arrives and cut off with HTTPException(413), which the error handler turns into the
    same JSON. (FastAPI's own max_body_size answers in plain text, which the API contract does
    not allow.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_bytes if max_json_bytes is None else max_json_bytes

    def message(self, multipart: bool = True) -> str:
        if not multipart:
            return (
                "The request body is larger than this server accepts for a network spec "
                f"({file_size(self.max_json_bytes)}). Leave out inline weights, or use a preset "
                "model."
            )
        return (
            f"The request body is larger than this server accepts ({file_size(self.max_bytes)} "
            "including the image and the network). Send a smaller image."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        multipart = headers.get("content-type", "").lower().startswith("multipart/")
        limit = self.max_bytes if multipart else self.max_json_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = error_reply(413, {"message": self.message(multipart)})
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, self.message(multipart))
            return message

        await self.app(scope, counted, send)


class WorkerPidHeader:
    """Say in an X-Worker-PID header which process answered (workers share runs via the store)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_pid(message: Message) -> None:
            if message["type"] == "http.response.start":
                pid = (b"x-worker-pid", str(os.getpid()).encode())
                message = {**message, "headers": [*message.get("headers", []), pid]}
            await send(message)

        await self.app(scope, receive, send_with_pid)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A CNN Explorer app with its own settings, run store (which keeps runs and their
    gradients), render cache and model registry."""
    settings = settings or get_settings()
    max_body = settings.max_upload_bytes + settings.max_network_bytes + _MULTIPART_SLACK

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # Stop training threads at their next batch rather than leaving them to die mid-write,
        # and release the run store's connections.
        app.state.training_jobs.shutdown(wait_seconds=10)
        app.state.run_store.close()

    app = FastAPI(
        title="CNN Explorer",
        version=package_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        form_limits={"max_part_size": settings.max_network_bytes, "max_files": 1},
    )
    app.state.settings = settings
    app.state.run_store = open_run_store(settings)
    app.state.render_cache = RenderCache(settings.render_cache_max_bytes)
    app.state.backward_passes = BackwardPasses()  # the gradients themselves are in the store
    # Shipped presets plus the models trained here (data_dir/models), as one registry.
    saved = SavedModels(settings.data_dir / "models", settings.max_saved_models)
    app.state.model_registry = ModelCatalog(ModelRegistry(settings.models_dir), saved)
    app.state.training_jobs = TrainingJobs(settings, app.state.model_registry)

    install_error_handlers(app)
    install_admission(
        app, settings.cpu_workers, settings.cpu_queue, settings.cpu_time_budget_seconds
    )
    limit_blas_threads(settings.blas_threads)
    app.add_middleware(BodySizeLimit, max_bytes=max_body, max_json_bytes=settings.max_network_bytes)
    app.add_middleware(WorkerPidHeader)
    install_security(app, settings.cors_origins)
    include_api(app)
    app.mount("/static", StaticFiles(directory=settings.static_dir, check_dir=False), name="static")
    templates = Jinja2Templates(directory=settings.templates_dir)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        """The explorer page; it reads the limits to warn before sending anything."""
        context = {"version": package_version(), "limits": settings.public_limits()}
        return templates.TemplateResponse(request, "index.html", context)

    return app


def serve() -> None:
    """The `cnn-explorer` command: uvicorn with host, port and workers from the settings."""
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level != "trace" else 5)
    if settings.workers > 1 and settings.run_store == "memory":
        log.warning(
            "%d workers each keep their own runs in memory (run_store memory); a run's images "
            "may be asked of another worker and answer 404. Use run_store auto, disk or Redis.",
            settings.workers,
        )
    log.info("Runs are kept in %s.", describe_run_store(settings))
    uvicorn.run(
        "app.web.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
    )
