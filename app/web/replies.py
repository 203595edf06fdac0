"""Pieces every run route shares: a run's layer (or 404), JSON-safe numbers, PNG responses
that may be cached as long as the run is kept, and the runs' base URL."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import Response

from app.errors import LayerNotFoundError
from app.settings import Settings
from app.storage.runs.memory import Run
from app.web.deps import API_PREFIX


def layer_output(run: Run, index: int) -> np.ndarray:
    """Layer `index`'s output in the run, or LayerNotFoundError (404) naming the range."""
    n = len(run.outputs)
    if not 0 <= index < n:
        raise LayerNotFoundError(
            f"Run {run.run_id} has layers 0..{n - 1}; there is no layer {index}.",
            valid_range=[0, n - 1],
        )
    return run.outputs[index]


def finite(v: float) -> float:
    """JSON has no NaN or infinity; clamp to the float32 range (the .npy keeps the truth)."""
    return float(np.nan_to_num(v, nan=0.0, posinf=3.4e38, neginf=-3.4e38))


def finite_numbers(value: Any) -> Any:
    """JSON has no NaN or infinity: an overflowed float becomes the nearest float32 (NaN: 0),
    as in /forward's stats; the .npy keeps the truth. None (a padded max-pool cell) stays."""
    if isinstance(value, float):
        return value if math.isfinite(value) else finite(value)
    if isinstance(value, dict):
        return {key: finite_numbers(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [finite_numbers(inner) for inner in value]
    return value


def png_response(data: bytes, settings: Settings) -> Response:
    """PNG bytes as a response the browser may cache for as long as the run is kept."""
    # A run never changes, so its images can be cached for as long as it is kept.
    cache = f"private, max-age={int(settings.run_ttl_seconds)}, immutable"
    return Response(data, media_type="image/png", headers={"Cache-Control": cache})


def runs_url(request: Request, run_id: str) -> str:
    """The base URL of a run's resources, behind any root path."""
    return f"{request.scope.get('root_path', '')}{API_PREFIX}/runs/{run_id}"
