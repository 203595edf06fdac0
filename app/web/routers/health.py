"""GET /api/v1/health."""

from __future__ import annotations

from fastapi import APIRouter

from app.schemas import HealthResponse
from app.web.deps import package_version

health_router = APIRouter(tags=["health"])


@health_router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """Whether the server answers, and its version (on the event loop: never waits for a worker
    thread, so it answers while every CPU worker is busy)."""
    return HealthResponse(status="ok", version=package_version())
