"""The /api/v1 routers, one module per resource; thin: parse, check, call, shape the reply.

CPU work (decoding, the forward pass, rendering, encoding arrays) runs in worker threads so the
event loop keeps answering. Errors are raised as app.errors classes and answered in one place.
"""

from fastapi import FastAPI

from app.web.deps import API_PREFIX
from app.web.routers.datasets import datasets_router
from app.web.routers.forward import forward_router
from app.web.routers.gradients import gradients_router
from app.web.routers.health import health_router
from app.web.routers.kernels import kernels_router
from app.web.routers.models import models_router
from app.web.routers.networks import shapes_router
from app.web.routers.runs import runs_router
from app.web.routers.saliency import saliency_router
from app.web.routers.step import step_router
from app.web.routers.train import train_router
from app.web.routers.visualise import visualise_router

API_ROUTERS = (
    health_router,
    shapes_router,
    forward_router,
    runs_router,
    saliency_router,
    gradients_router,
    step_router,
    visualise_router,
    models_router,
    train_router,
    datasets_router,
    kernels_router,
)


def include_api(app: FastAPI) -> None:
    """Mount every router under API_PREFIX directly on the app.

    Not through one parent APIRouter: FastAPI matches nested routers level by level on every
    request, which cost about 0.01 ms a request (make bench, server_forward).
    """
    for router in API_ROUTERS:
        app.include_router(router, prefix=API_PREFIX)


__all__ = ["API_PREFIX", "API_ROUTERS", "include_api"]
