"""The /api/v1 routers, one module per resource; thin: parse, check, call, shape the reply.

CPU work (decoding, the forward pass, rendering, encoding arrays) runs in worker threads so the
event loop keeps answering. Errors are raised as app.errors classes and answered in one place.
"""

from fastapi import APIRouter

from app.routers.deps import API_PREFIX
from app.routers.forward import forward_router
from app.routers.health import health_router
from app.routers.models import models_router
from app.routers.networks import shapes_router
from app.routers.runs import runs_router
from app.routers.saliency import saliency_router
from app.routers.train import train_router

api_router = APIRouter(prefix=API_PREFIX)
for _router in (
    health_router,
    shapes_router,
    forward_router,
    runs_router,
    saliency_router,
    models_router,
    train_router,
):
    api_router.include_router(_router)

__all__ = ["API_PREFIX", "api_router"]
