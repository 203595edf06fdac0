"""The backward pass of a kept run: the loss for a target class, dL/d every layer's output, weight,
bias and the input, as float32 .npy arrays and diverging-colour PNGs, and how any one gradient
value was computed (with a gradient check by central differences).

Every route takes ?target=&loss=; the gradients they name are computed once per (run, target,
loss) and kept with the run in the run store (app/web/backward_passes.py).
"""

from __future__ import annotations

import dataclasses
import io
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.cnn import ConvLayer, DenseLayer, backprop
from app.cnn.explain_gradient import explain_gradient
from app.errors import NoWeightsError
from app.schemas import (
    GradientExplainResponse,
    GradientLayer,
    GradientsResponse,
    GradientStats,
    LossName,
)
from app.storage.runs.memory import Run
from app.web import checks, render
from app.web.deps import BackwardContext, BackwardContextDep, error_responses
from app.web.replies import finite, finite_numbers, layer_output, png_response, runs_url

gradients_router = APIRouter(tags=["runs"])

TargetQuery = Annotated[
    int | None,
    Query(
        description="The output index the loss is of (the class, for a softmax network); "
        "default: the run's largest output (its top class)."
    ),
]
LossQuery = Annotated[
    LossName,
    Query(
        description='"cross_entropy" (default): L = -log p[target], for a network that ends in '
        'a dense layer with softmax; "score": L = output[target], the raw value, any network.'
    ),
]

_ERRORS = error_responses(404, 422, 503, 504)
_PNG = {200: {"content": {"image/png": {}}, "description": "A palette PNG."}, **_ERRORS}
_NPY = {200: {"content": {"application/octet-stream": {}}, "description": "float32 .npy"}}
_NPY = {**_NPY, **_ERRORS}


# -- the kept backward pass --------------------------------------------------------------------
def gradient_stats(a: np.ndarray) -> GradientStats:
    """min, max, mean and mean |value| of a gradient, any shape (float64 sums)."""
    return GradientStats(
        min=finite(a.min()),
        max=finite(a.max()),
        mean=finite(a.mean(dtype=np.float64)),
        abs_mean=finite(np.abs(a).mean(dtype=np.float64)),
    )


def colour_scale(a: np.ndarray) -> float:
    """max |value| of the finite values: the -scale..scale of its diverging PNG (render.py draws
    what is not finite in the middle colour)."""
    finite = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    return float(np.abs(finite).max()) if finite.size else 0.0


async def backward_pass(
    ctx: BackwardContext, run: Run, target: int, loss: str
) -> backprop.Gradients:
    """The gradients of `loss` for `target` (checked by checks.gradient_target) of a run: the run
    store's, else computed once through the admission gate and put there."""

    async def compute() -> backprop.Gradients:
        return await ctx.gate.run(lambda: backprop.gradients(run.network, run.input, target, loss))

    return await ctx.backward.get(ctx.store, (run.run_id, target, loss), compute)


async def _run_and_target(
    ctx: BackwardContext, run_id: str, target: int | None, loss: str, index: int | None = None
) -> tuple[Run, int]:
    """The run (404), layer `index` in it (404), and the checked target (422)."""
    run = ctx.store.get(run_id)
    if index is not None:
        layer_output(run, index)
    return run, checks.gradient_target(run.network, run.outputs[-1], target, loss)


# -- replies -----------------------------------------------------------------------------------
async def _npy(
    ctx: BackwardContext, a: np.ndarray, filename: str, target: int, loss: str
) -> Response:
    def encode() -> bytes:
        buf = io.BytesIO()
        np.save(buf, a.astype(np.float32, copy=False), allow_pickle=False)
        return buf.getvalue()

    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Target": str(target),
        "X-Loss": loss,
    }
    return Response(
        await ctx.gate.run(encode), media_type="application/octet-stream", headers=headers
    )


async def _gradient_png(
    ctx: BackwardContext, run: Run, target: int, loss: str, index: int | None
) -> Response:
    """dL/d(output of layer `index`), or of the input when None, tiled like the layer's grid in
    diverging colours with one symmetric scale for the layer (zero is the middle colour)."""
    key = (run.run_id, "gradient", target, loss, index)
    data = ctx.cache.get(key)
    if data is None:
        grads = await backward_pass(ctx, run, target, loss)
        g = grads.input_grad if index is None else grads.output_grads[index]
        data = await ctx.gate.run(
            lambda: render.encode_grid(render.layer_colours(g, diverging=True, same_scale=True))
        )
        ctx.cache.put(key, data)
    response = png_response(data, ctx.settings)
    response.headers.update({"X-Target": str(target), "X-Loss": loss})
    return response


def _has_weights(run: Run, index: int) -> None:
    """NoWeightsError (404) unless layer `index` is a conv or dense layer."""
    layer = run.network.layers[index]
    if not isinstance(layer, ConvLayer | DenseLayer):
        learners = [
            str(i)
            for i, other in enumerate(run.network.layers)
            if isinstance(other, ConvLayer | DenseLayer)
        ]
        raise NoWeightsError(
            f"Layer {index} ({layer.type}) has no weights, so no weight or bias gradient; the "
            f"layers with weights are {', '.join(learners) or 'none'}.",
            layers_with_weights=[int(i) for i in learners],
        )


# -- routes ------------------------------------------------------------------------------------
@gradients_router.get(
    "/runs/{run_id}/gradients", response_model=GradientsResponse, responses=_ERRORS
)
async def run_gradients(
    request: Request,
    run_id: str,
    ctx: BackwardContextDep,
    target: TargetQuery = None,
    loss: LossQuery = "cross_entropy",
) -> GradientsResponse:
    """The loss of the run for a target and the gradient of it at every layer: statistics and
    the URLs of each gradient's .npy and PNG."""
    run, t = await _run_and_target(ctx, run_id, target, loss)
    grads = await backward_pass(ctx, run, t, loss)

    def summarise() -> list[tuple[GradientStats, float]]:
        """Statistics and colour scale of dL/d(output) of each layer, then of dL/d(input)."""
        return [
            (gradient_stats(g), colour_scale(g)) for g in [*grads.output_grads, grads.input_grad]
        ]

    *summaries, (input_stats, _) = await ctx.gate.run(summarise)
    base, query = runs_url(request, run.run_id), f"?target={t}&loss={loss}"
    layers = []
    for layer in run.network.layers:
        i, learns = layer.index, isinstance(layer, ConvLayer | DenseLayer)
        at = f"{base}/layers/{i}"
        layers.append(
            GradientLayer(
                index=i,
                type=layer.type,
                output_shape=list(layer.output_shape),
                stats=summaries[i][0],
                scale=summaries[i][1],
                grid_url=f"{at}/gradient.png{query}",
                gradient_url=f"{at}/gradient.npy{query}",
                weight_gradient_url=f"{at}/weight_gradient.npy{query}" if learns else None,
                bias_gradient_url=f"{at}/bias_gradient.npy{query}" if learns else None,
                explain_url=f"{at}/explain_gradient{query}",
            )
        )
    labels = run.labels
    return GradientsResponse(
        run_id=run.run_id,
        target=t,
        label=labels[t] if labels is not None and t < len(labels) else None,
        loss=loss,
        loss_value=finite(grads.loss_value),
        input_gradient_url=f"{base}/input_gradient.npy{query}",
        input_grid_url=f"{base}/input_gradient.png{query}",
        input_stats=input_stats,
        layers=layers,
    )


@gradients_router.get("/runs/{run_id}/input_gradient.npy", response_class=Response, responses=_NPY)
async def input_gradient_npy(
    run_id: str,
    ctx: BackwardContextDep,
    target: TargetQuery = None,
    loss: LossQuery = "cross_entropy",
) -> Response:
    """dL/d(input) as a float32 .npy [H, W, C] (the image as the network saw it)."""
    run, t = await _run_and_target(ctx, run_id, target, loss)
    grads = await backward_pass(ctx, run, t, loss)
    return await _npy(ctx, grads.input_grad, f"{run_id}-input-gradient-{loss}-{t}.npy", t, loss)


@gradients_router.get("/runs/{run_id}/input_gradient.png", response_class=Response, responses=_PNG)
async def input_gradient_png(
    run_id: str,
    ctx: BackwardContextDep,
    target: TargetQuery = None,
    loss: LossQuery = "cross_entropy",
) -> Response:
    """dL/d(input), its channels tiled, in diverging colours (zero in the middle)."""
    run, t = await _run_and_target(ctx, run_id, target, loss)
    return await _gradient_png(ctx, run, t, loss, None)


@gradients_router.get(
    "/runs/{run_id}/layers/{index}/gradient.npy", response_class=Response, responses=_NPY
)
async def layer_gradient_npy(
    run_id: str,
    index: int,
    ctx: BackwardContextDep,
    target: TargetQuery = None,
    loss: LossQuery = "cross_entropy",
) -> Response:
    """dL/d(output of layer `index`) as a float32 .npy, [h, w, c] or [n] like the output."""
    run, t = await _run_and_target(ctx, run_id, target, loss, index)
    grads = await backward_pass(ctx, run, t, loss)
    filename = f"{run_id}-layer{index}-gradient-{loss}-{t}.npy"
    return await _npy(ctx, grads.output_grads[index], filename, t, loss)


@gradients_router.get(
    "/runs/{run_id}/layers/{index}/gradient.png", response_class=Response, responses=_PNG
)
async def layer_gradient_png(
    run_id: str,
    index: int,
    ctx: BackwardContextDep,
    target: TargetQuery = None,
    loss: LossQuery = "cross_entropy",
) -> Response:
    """dL/d(output of layer `index`), all channels tiled as in the layer's grid, in diverging
    colours: blue below zero, the middle colour at zero, red above, one symmetric scale for the
    whole layer (its `scale` in /gradients)."""
    run, t = await _run_and_target(ctx, run_id, target, loss, index)
    return await _gradient_png(ctx, run, t, loss, index)


@gradients_router.get(
    "/runs/{run_id}/layers/{index}/weight_gradient.npy", response_class=Response, responses=_NPY
)
async def weight_gradient_npy(
    run_id: str,
    index: int,
    ctx: BackwardContextDep,
    target: TargetQuery = None,
    loss: LossQuery = "cross_entropy",
) -> Response:
    """dL/dW of a conv layer [K][F][F][C] or a dense layer [units][inputs], float32 .npy (404
    for a layer without weights)."""
    run, t = await _run_and_target(ctx, run_id, target, loss, index)
    _has_weights(run, index)
    grad = (await backward_pass(ctx, run, t, loss)).weight_grads[index]
    assert grad is not None  # a conv or dense layer
    return await _npy(ctx, grad, f"{run_id}-layer{index}-weight-gradient-{loss}-{t}.npy", t, loss)


@gradients_router.get(
    "/runs/{run_id}/layers/{index}/bias_gradient.npy", response_class=Response, responses=_NPY
)
async def bias_gradient_npy(
    run_id: str,
    index: int,
    ctx: BackwardContextDep,
    target: TargetQuery = None,
    loss: LossQuery = "cross_entropy",
) -> Response:
    """dL/db of a conv or dense layer [K], float32 .npy (404 for a layer without weights)."""
    run, t = await _run_and_target(ctx, run_id, target, loss, index)
    _has_weights(run, index)
    grad = (await backward_pass(ctx, run, t, loss)).bias_grads[index]
    assert grad is not None  # a conv or dense layer
    return await _npy(ctx, grad, f"{run_id}-layer{index}-bias-gradient-{loss}-{t}.npy", t, loss)


@gradients_router.get(
    "/runs/{run_id}/layers/{index}/explain_gradient",
    response_model=GradientExplainResponse,
    response_model_exclude_unset=True,
    responses=_ERRORS,
)
async def explain_one_gradient(
    run_id: str,
    index: int,
    ctx: BackwardContextDep,
    target: TargetQuery = None,
    loss: LossQuery = "cross_entropy",
    y: Annotated[int | None, Query(description="Row of the output value (3D layers).")] = None,
    x: Annotated[int | None, Query(description="Column of the output value (3D layers).")] = None,
    c: Annotated[int | None, Query(description="Channel of the output value (3D layers).")] = None,
    i: Annotated[int | None, Query(description="Index of the output value (flat layers).")] = None,
    weight: Annotated[
        str | None,
        Query(description="A weight of a conv layer as k,fy,fx,c, of a dense layer as u,j."),
    ] = None,
    bias: Annotated[int | None, Query(description="A bias k of a conv or dense layer.")] = None,
    check: Annotated[
        bool,
        Query(
            description="With weight= or bias=: also check the value by central differences, "
            "(L(w + h) - L(w - h)) / 2h, computed in float64."
        ),
    ] = False,
    h: Annotated[
        float, Query(gt=0, le=1, description="The step of the gradient check (default 1e-4).")
    ] = 1e-4,
) -> dict[str, Any]:
    """How one gradient value was computed: dL/d(an output value of layer `index`) from the
    layer above, or dL/dW / dL/db from the layer's input and its deltas dL/dz; the terms'
    products add up to the value."""
    run, t = await _run_and_target(ctx, run_id, target, loss, index)
    position = checks.gradient_selector(yxc=(y, x, c), i=i, weight=weight, bias=bias, check=check)
    grads = await backward_pass(ctx, run, t, loss)

    def work() -> dict[str, Any]:
        found = explain_gradient(
            run.network, grads, index, y=y, x=x, c=c, i=i, weight=position, bias=bias
        )
        if check:
            done = backprop.gradient_check(
                run.network, run.input, t, loss, index, weight=position, bias=bias, h=h
            )
            found["check"] = dataclasses.asdict(done)
        return finite_numbers(found)

    return await ctx.gate.run(work)
