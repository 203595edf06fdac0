"""Saliency and Grad-CAM maps of a kept run, as PNGs (plain or laid over the input) and .npy."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response

from app import saliency
from app.admission import GateDep
from app.routers.deps import CacheDep, SettingsDep, StoreDep, error_responses
from app.runs import Run

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

_ERRORS = error_responses(404, 409, 422, 503, 504)
_PNG = {200: {"content": {"image/png": {}}, "description": "A PNG."}, **_ERRORS}
_NPY = {200: {"content": {"application/octet-stream": {}}}, **_ERRORS}


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _prepare(run: Run, target: int | None) -> int:
    saliency.check_classifier(run.network)
    return saliency.resolve_target(run.network, run.outputs[-1], target)


def _saliency(run: Run, target: int) -> np.ndarray:
    net = saliency.trainable(run.network)
    return saliency.saliency_map(net, run.input, target)


def _gradcam(run: Run, target: int, layer: int) -> np.ndarray:
    net = saliency.trainable(run.network)
    cam = saliency.grad_cam(net, run.input, target, layer)
    h, w, _ = run.input.shape
    return saliency.upsample(cam, h, w)


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
    data = cache.get(key)
    if data is None:

        def draw() -> bytes:
            a = heat()
            return saliency.overlay_png(run.input, a) if overlay else saliency.heat_png(a)

        data = await gate.run(draw)
        cache.put(key, data)
    cache_control = f"private, max-age={int(settings.run_ttl_seconds)}, immutable"
    return Response(
        data, media_type="image/png", headers={"Cache-Control": cache_control, **headers}
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
    t = _prepare(run, target)
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
    t = _prepare(run, target)
    data = await gate.run(lambda: _npy(_saliency(run, t)))
    disposition = f'attachment; filename="{run_id}-saliency-{t}.npy"'
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition, "X-Target": str(t)},
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
) -> Response:
    """Grad-CAM: the layer's maps weighed by the mean gradient of the class score, summed,
    rectified and resized to the input (409 unless the network ends in dense+softmax)."""
    run = store.get(run_id)
    t = _prepare(run, target)
    i = saliency.check_cam_layer(run.network, layer)
    key = (run_id, "gradcam", t, i, overlay)
    headers = {"X-Target": str(t), "X-Layer": str(i)}
    return await _png_reply(
        key, lambda: _gradcam(run, t, i), run, overlay, cache, gate, settings, headers
    )


@saliency_router.get("/runs/{run_id}/gradcam.npy", response_class=Response, responses=_NPY)
async def gradcam_npy(
    run_id: str,
    store: StoreDep,
    gate: GateDep,
    target: TargetQuery = None,
    layer: LayerQuery = None,
) -> Response:
    """The Grad-CAM map as float32 [h, w] at the input's size (.npy)."""
    run = store.get(run_id)
    t = _prepare(run, target)
    i = saliency.check_cam_layer(run.network, layer)
    data = await gate.run(lambda: _npy(_gradcam(run, t, i)))
    disposition = f'attachment; filename="{run_id}-gradcam-{t}-layer{i}.npy"'
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition, "X-Target": str(t), "X-Layer": str(i)},
    )
