"""Feature visualisation of a kept run's network: an input that excites one channel (or class),
found by gradient ascent from seeded noise with jitter and blur (app/cnn/attribution.visualise).

The image depends on the network, the layer, the channel, the steps and the seed, not on the
run's own image; each is computed once through the admission gate and kept in the render cache.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.cnn import attribution
from app.schemas import VisualisationResponse
from app.storage.runs.memory import Run
from app.web import checks, render
from app.web.deps import RunContext, RunContextDep, error_responses
from app.web.replies import layer_output, png_response, runs_url

visualise_router = APIRouter(tags=["runs"])

ChannelQuery = Annotated[
    int,
    Query(
        description="The channel of the layer whose mean is raised (a final softmax: the class)."
    ),
]
StepsQuery = Annotated[
    int,
    Query(ge=1, description="Gradient-ascent steps (at most the server's visualise_max_steps)."),
]
SeedQuery = Annotated[int, Query(ge=0, le=2**31 - 1, description="Seed of the starting noise.")]

_ERRORS = error_responses(404, 422, 503, 504)


@dataclass(frozen=True)
class KeptVisualisation:
    """A visualisation and its PNG, as the render cache keeps it."""

    found: attribution.Visualisation
    png: bytes

    @property
    def nbytes(self) -> int:
        return self.found.image.nbytes + len(self.png)


def _picture(image: np.ndarray) -> bytes:
    """(H, W, C) in [0, 1] as a PNG: RGB for 3 channels, grey for 1, else their mean in grey."""
    if image.shape[2] not in (1, 3):
        image = image.mean(axis=2, keepdims=True)
    return render.render_image(image)


async def _visualised(
    ctx: RunContext, run: Run, index: int, channel: int, steps: int, seed: int
) -> KeptVisualisation:
    key = (run.run_id, "visualise", index, channel, steps, seed)
    kept = ctx.cache.get(key)
    if kept is None:

        def compute() -> KeptVisualisation:
            found = attribution.visualise(run.network, index, channel, steps=steps, seed=seed)
            return KeptVisualisation(found, _picture(found.image))

        kept = await ctx.gate.run(compute)
        ctx.cache.put(key, kept)
    return kept


def _checked(ctx: RunContext, run_id: str, index: int, channel: int, steps: int) -> Run:
    run = ctx.store.get(run_id)
    layer_output(run, index)
    checks.visualisation(run.network, index, channel, steps, ctx.settings)
    return run


@visualise_router.get(
    "/runs/{run_id}/layers/{index}/visualise",
    response_model=VisualisationResponse,
    responses=_ERRORS,
)
async def visualise(
    request: Request,
    run_id: str,
    index: int,
    ctx: RunContextDep,
    channel: ChannelQuery,
    steps: StepsQuery = 64,
    seed: SeedQuery = 0,
) -> VisualisationResponse:
    """An input that excites channel `channel` of layer `index` (for a final softmax layer, the
    class `channel`), by gradient ascent from seeded noise with jitter and blur; the objective
    (the channel's mean, or the class's logit) after every step."""
    run = _checked(ctx, run_id, index, channel, steps)
    kept = await _visualised(ctx, run, index, channel, steps, seed)
    query = f"channel={channel}&steps={steps}&seed={seed}"
    base = f"{runs_url(request, run_id)}/layers/{index}/visualise"
    return VisualisationResponse(
        layer=index,
        channel=channel,
        steps=steps,
        seed=seed,
        objective=[float(v) for v in kept.found.objective],
        image_url=f"{base}.png?{query}",
        array_url=f"{base}.npy?{query}",
    )


@visualise_router.get(
    "/runs/{run_id}/layers/{index}/visualise.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The image."}, **_ERRORS},
)
async def visualise_png(
    run_id: str,
    index: int,
    ctx: RunContextDep,
    channel: ChannelQuery,
    steps: StepsQuery = 64,
    seed: SeedQuery = 0,
) -> Response:
    """The visualisation as a picture at the network's input size."""
    run = _checked(ctx, run_id, index, channel, steps)
    return png_response(
        (await _visualised(ctx, run, index, channel, steps, seed)).png, ctx.settings
    )


@visualise_router.get(
    "/runs/{run_id}/layers/{index}/visualise.npy",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "float32 .npy"},
        **_ERRORS,
    },
)
async def visualise_npy(
    run_id: str,
    index: int,
    ctx: RunContextDep,
    channel: ChannelQuery,
    steps: StepsQuery = 64,
    seed: SeedQuery = 0,
) -> Response:
    """The visualisation as float32 (H, W, C) in [0, 1]."""
    run = _checked(ctx, run_id, index, channel, steps)
    kept = await _visualised(ctx, run, index, channel, steps, seed)
    buf = io.BytesIO()
    np.save(buf, kept.found.image, allow_pickle=False)
    name = f"visualise-{index}-{channel}.npy"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(buf.getvalue(), media_type="application/octet-stream", headers=headers)
