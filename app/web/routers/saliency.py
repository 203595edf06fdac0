"""Saliency and Grad-CAM maps of a kept run, as PNGs (plain or laid over the input) and .npy."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.cnn import attribution
from app.storage.runs.memory import Run
from app.web import checks, saliency
from app.web.admission import GateDep
from app.web.deps import CacheDep, SettingsDep, StoreDep, error_responses

saliency_router = APIRouter(tags=["runs"])

TargetQuery = Annotated[
    int | None,
    Query(
        description="Class index whose score (logit, before softmax) is explained; "
        "default: the most probable class."
    ),
]
OverlayQuery = Annotated[
    bool, Query(description="Lay the map over the input image (an RGB PNG) instead of alone.")
]
LayerQuery = Annotated[
    int | None,
    Query(
        description="Layer whose maps are weighed (its output must be h x w x c); default: "
        "the last conv layer, after its ReLU."
    ),
]

MethodQuery = Annotated[
    Literal["gradcam", "hirescam"],
    Query(
        description='"gradcam": maps weighed by their mean gradient; "hirescam": each position '
        "times its own gradient (no averaging; shows the evidence where Grad-CAM's averaged "
        "weights cancel out)."
    ),
]

_ERRORS = error_responses(404, 409, 422, 503, 504)
_PNG = {200: {"content": {"image/png": {}}, "description": "A PNG."}, **_ERRORS}
_NPY = {200: {"content": {"application/octet-stream": {}}}, **_ERRORS}


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _encoded(a: np.ndarray) -> tuple[bytes, str]:
    """A map as .npy bytes, and its peak for X-Map-Max."""
    return _npy(a), _peak(a)


def _peak(a: np.ndarray) -> str:
    """The map's largest value for the X-Map-Max header (0 says: nothing to show)."""
    return f"{float(a.max()) if a.size else 0.0:.6g}"


def _saliency(run: Run, target: int) -> np.ndarray:
    return attribution.saliency_map(run.network, run.input, target)


def _gradcam(run: Run, target: int, layer: int, method: str) -> np.ndarray:
    cam = attribution.grad_cam(run.network, run.input, target, layer, method)
    h, w, _ = run.input.shape
    return attribution.upsample(cam, h, w)


async def _png_reply(
    key: tuple,
    heat: Callable[[], np.ndarray],
    run: Run,
    overlay: bool,
    cache: CacheDep,
    gate: GateDep,
    settings: SettingsDep,
    headers: dict[str, str],
) -> Response:
    data, peak = cache.get(key), cache.get((*key, "peak"))
    if data is None or peak is None:

        def draw() -> tuple[bytes, bytes]:
            a = heat()
            png = saliency.overlay_png(run.input, a) if overlay else saliency.heat_png(a)
            return png, _peak(a).encode()

        data, peak = await gate.run(draw)
        cache.put(key, data)
        cache.put((*key, "peak"), peak)
    cache_control = f"private, max-age={int(settings.run_ttl_seconds)}, immutable"
    headers = {"Cache-Control": cache_control, "X-Map-Max": peak.decode(), **headers}
    return Response(data, media_type="image/png", headers=headers)


async def _npy_reply(
    heat: Callable[[], np.ndarray], gate: GateDep, filename: str, headers: dict[str, str]
) -> Response:
    """The map heat() computes ([h, w] float32) as a .npy download, its peak in X-Map-Max."""
    data, peak = await gate.run(lambda: _encoded(heat()))
    disposition = f'attachment; filename="{filename}"'
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition, **headers, "X-Map-Max": peak},
    )


@saliency_router.get("/runs/{run_id}/saliency.png", response_class=Response, responses=_PNG)
async def saliency_png(
    run_id: str,
    store: StoreDep,
    cache: CacheDep,
    settings: SettingsDep,
    gate: GateDep,
    target: TargetQuery = None,
    overlay: OverlayQuery = False,
) -> Response:
    """Which input pixels the class score is most sensitive to: max over channels of
    |d score / d pixel|, at the input's size (409 unless the network ends in dense+softmax)."""
    run = store.get(run_id)
    t = checks.saliency_target(run.network, run.outputs[-1], target)
    key = (run_id, "saliency", t, overlay)
    return await _png_reply(
        key, lambda: _saliency(run, t), run, overlay, cache, gate, settings, {"X-Target": str(t)}
    )


@saliency_router.get("/runs/{run_id}/saliency.npy", response_class=Response, responses=_NPY)
async def saliency_npy(
    run_id: str, store: StoreDep, gate: GateDep, target: TargetQuery = None
) -> Response:
    """The saliency map as float32 [h, w] (.npy)."""
    run = store.get(run_id)
    t = checks.saliency_target(run.network, run.outputs[-1], target)
    return await _npy_reply(
        lambda: _saliency(run, t), gate, f"{run_id}-saliency-{t}.npy", {"X-Target": str(t)}
    )


@saliency_router.get("/runs/{run_id}/gradcam.png", response_class=Response, responses=_PNG)
async def gradcam_png(
    run_id: str,
    store: StoreDep,
    cache: CacheDep,
    settings: SettingsDep,
    gate: GateDep,
    target: TargetQuery = None,
    layer: LayerQuery = None,
    overlay: OverlayQuery = False,
    method: MethodQuery = "gradcam",
) -> Response:
    """Grad-CAM: the layer's maps weighed by the mean gradient of the class score, summed,
    rectified and resized to the input (409 unless the network ends in dense+softmax)."""
    run = store.get(run_id)
    t = checks.saliency_target(run.network, run.outputs[-1], target)
    i = checks.cam_layer(run.network, layer)
    key = (run_id, method, t, i, overlay)
    headers = {"X-Target": str(t), "X-Layer": str(i)}
    return await _png_reply(
        key, lambda: _gradcam(run, t, i, method), run, overlay, cache, gate, settings, headers
    )


@saliency_router.get("/runs/{run_id}/gradcam.npy", response_class=Response, responses=_NPY)
async def gradcam_npy(
    run_id: str,
    store: StoreDep,
    gate: GateDep,
    target: TargetQuery = None,
    layer: LayerQuery = None,
    method: MethodQuery = "gradcam",
) -> Response:
    """The Grad-CAM map as float32 [h, w] at the input's size (.npy)."""
    run = store.get(run_id)
    t = checks.saliency_target(run.network, run.outputs[-1], target)
    i = checks.cam_layer(run.network, layer)
    filename = f"{run_id}-gradcam-{t}-layer{i}.npy"
    headers = {"X-Target": str(t), "X-Layer": str(i)}
    return await _npy_reply(lambda: _gradcam(run, t, i, method), gate, filename, headers)
