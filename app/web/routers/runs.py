"""The kept runs: each layer's PNGs, .npy array and explanations, and the input as seen."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.cnn import explain
from app.errors import ChannelNotFoundError
from app.schemas import ExplainResponse
from app.web import render
from app.web.admission import AdmissionGate
from app.web.deps import RunContextDep, error_responses
from app.web.render_cache import RenderCache
from app.web.replies import finite_numbers, layer_output, png_response

runs_router = APIRouter(tags=["runs"])


_PNG = {
    200: {"content": {"image/png": {}}, "description": "A palette PNG."},
    **error_responses(404, 422, 503, 504),
}


# Encoding one map of up to this many pixels from colours already worked out takes at most about
# 0.25 ms (0.2 ms for 224x224), no more than handing it to a worker thread and back, so it is done
# on the event loop. Colouring a layer, and every bigger map, goes through the admission gate.
INLINE_MAX_PIXELS = 256 * 256


async def _cached_png(
    key: tuple,
    draw: Callable[[], bytes],
    cache: RenderCache,
    gate: AdmissionGate,
    inline: bool = False,
) -> bytes:
    """PNG bytes from the cache, else drawn by the admission gate (a hit needs no CPU slot), or
    right here when `inline` (a small map whose colours are cached)."""
    data = cache.get(key)
    if data is None:
        data = draw() if inline else await gate.run(draw)
        cache.put(key, data)
    return data


def _colours(cache: RenderCache, run_id: str, index: int, out: np.ndarray) -> render.LayerColours:
    """A layer's colour indices, worked out once for its grid and every channel (worker thread).

    The whole layer decides the colour map, so a channel PNG matches its tile in the grid.
    """
    return cache.get_or_render((run_id, "colours", index), lambda: render.layer_colours(out))


@runs_router.get("/runs/{run_id}/input.png", response_class=Response, responses=_PNG)
async def input_png(run_id: str, ctx: RunContextDep):
    """The image as the network saw it (decoded, resized, 1 or 3 channels)."""
    store, cache, settings, gate = ctx
    run = store.get(run_id)
    data = await _cached_png((run_id, "input"), lambda: render.render_image(run.input), cache, gate)
    return png_response(data, settings)


@runs_router.get("/runs/{run_id}/layers/{index}.png", response_class=Response, responses=_PNG)
async def layer_png(run_id: str, index: int, ctx: RunContextDep):
    """All channels of layer `index`, each normalised on its own, tiled in reading order."""
    store, cache, settings, gate = ctx
    run = store.get(run_id)
    out = layer_output(run, index)
    data = await _cached_png(
        (run_id, "grid", index),
        lambda: render.encode_grid(_colours(cache, run_id, index, out)),
        cache,
        gate,
    )
    return png_response(data, settings)


@runs_router.get(
    "/runs/{run_id}/layers/{index}/channels/{channel}.png", response_class=Response, responses=_PNG
)
async def channel_png(run_id: str, index: int, channel: int, ctx: RunContextDep):
    """One channel of layer `index` at native resolution (a flat layer has channel 0 only)."""
    store, cache, settings, gate = ctx
    run = store.get(run_id)
    out = layer_output(run, index)
    count = out.shape[2] if out.ndim == 3 else 1
    if not 0 <= channel < count:
        raise ChannelNotFoundError(
            f"Layer {index} of run {run_id} has channels 0..{count - 1}; there is no channel "
            f"{channel}.",
            valid_range=[0, count - 1],
        )

    def draw() -> bytes:
        return render.encode_channel(_colours(cache, run_id, index, out), channel)

    pixels = out.shape[0] * out.shape[1] if out.ndim == 3 else out.shape[0]
    inline = pixels <= INLINE_MAX_PIXELS and (run_id, "colours", index) in cache
    data = await _cached_png((run_id, "channel", index, channel), draw, cache, gate, inline)
    return png_response(data, settings)


@runs_router.get(
    "/runs/{run_id}/layers/{index}.npy",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        **error_responses(404, 422, 503, 504),
    },
)
async def layer_npy(run_id: str, index: int, ctx: RunContextDep):
    """Layer `index`'s output as a NumPy .npy file: float32 [h, w, c] or [n]."""
    gate = ctx.gate
    out = layer_output(ctx.store.get(run_id), index)

    def encode() -> bytes:
        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        return buf.getvalue()

    disposition = f'attachment; filename="{run_id}-layer{index}.npy"'
    return Response(
        await gate.run(encode),
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition},
    )


@runs_router.get(
    "/runs/{run_id}/layers/{index}/explain",
    response_model=ExplainResponse,
    responses=error_responses(404, 422, 503, 504),
)
async def explain_value(
    run_id: str,
    index: int,
    ctx: RunContextDep,
    y: Annotated[int | None, Query(description="Row of the output value (3D layers).")] = None,
    x: Annotated[int | None, Query(description="Column of the output value (3D layers).")] = None,
    c: Annotated[int | None, Query(description="Channel of the output value (3D layers).")] = None,
    i: Annotated[int | None, Query(description="Index of the output value (flat layers).")] = None,
) -> dict[str, Any]:
    """How one output value of layer `index` was computed from the layer's input."""
    store, gate = ctx.store, ctx.gate
    run = store.get(run_id)
    layer_output(run, index)
    inputs = [run.input, *run.outputs]
    found = await gate.run(
        lambda: finite_numbers(explain(run.network, inputs, index, y=y, x=x, c=c, i=i))
    )
    return {**found, "type": run.network.layers[index].type, "layer": index}
