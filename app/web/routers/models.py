"""GET /api/v1/models: the preset (trained) models."""

from __future__ import annotations

from fastapi import APIRouter

from app.schemas import PresetModelInfo
from app.web.deps import RegistryDep

models_router = APIRouter(tags=["models"])


@models_router.get("/models", response_model=list[PresetModelInfo])
def list_models(registry: RegistryDep) -> list[PresetModelInfo]:
    """The preset (trained) models; name one as `model` in POST /api/v1/forward."""
    return [m.info() for m in registry.list()]
