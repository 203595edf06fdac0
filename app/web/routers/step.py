"""POST /api/v1/runs/{run_id}/step: one gradient-descent step on a kept run's weights, kept as a
new run of the same image, with the loss before and after."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request

from app.cnn import ConvSpec, DenseSpec, NetworkSpec, backprop, build_network
from app.errors import InvalidRequestError
from app.schemas import ImageInfo, StepRequest, StepResponse
from app.storage.runs.memory import Run, new_run_id
from app.web import checks
from app.web.deps import BackwardContextDep, error_responses
from app.web.replies import finite
from app.web.routers.forward import forward_reply, layer_stats
from app.web.routers.gradients import backward_pass
from app.web.validation import issue

step_router = APIRouter(tags=["runs"])


def _refuse_non_finite(spec: NetworkSpec, learning_rate: float) -> None:
    """422 when the step would leave a weight or bias infinite or NaN (an overflowing gradient,
    or one of a run whose outputs already overflowed), rather than the spec check's words."""
    for index, layer in enumerate(spec.layers):
        if isinstance(layer, ConvSpec | DenseSpec) and not (
            np.isfinite(layer.weights).all() and np.isfinite(layer.bias).all()
        ):
            message = (
                f"This step of learning_rate {learning_rate:g} would leave weights of layer "
                f"{index} ({layer.type}) infinite or NaN: the run's gradients overflow float32."
            )
            raise InvalidRequestError(
                message,
                [
                    issue(
                        index,
                        "learning_rate",
                        message,
                        "Use a smaller learning rate, or step a run whose outputs are finite.",
                    )
                ],
            )


@step_router.post(
    "/runs/{run_id}/step",
    response_model=StepResponse,
    responses=error_responses(404, 413, 422, 503, 504),
)
async def step(
    request: Request, run_id: str, body: StepRequest, ctx: BackwardContextDep
) -> StepResponse:
    """One plain SGD step on every weight and bias of the run's network, W <- W - learning_rate
    * dL/dW, then the same image through the new weights: the /forward reply of the new run,
    with loss_before, loss_after and previous_run_id. The new run's gradients for the same target
    and loss are kept with it in the run store, so the next step starts at once."""
    run = ctx.store.get(run_id)
    learning_rate = checks.step_learning_rate(body.learning_rate, ctx.settings)
    target = checks.gradient_target(run.network, run.outputs[-1], body.target, body.loss)
    before = await backward_pass(ctx, run, target, body.loss)

    def compute():
        """The step, the new forward pass and its gradients, as one job of the gate: the new
        run's outputs are its backward pass's forward pass."""
        spec = backprop.sgd_step(run.network, before, learning_rate)
        _refuse_non_finite(spec, learning_rate)
        network = build_network(spec)
        after = backprop.gradients(network, run.input, target, body.loss)
        return network, after, layer_stats(after.outputs)

    network, after, stats = await ctx.gate.run(compute)
    new = Run(
        new_run_id(),
        network,
        run.input,
        list(after.outputs),
        labels=run.labels,
        model=run.model,
    )
    ctx.store.put(new)
    ctx.store.put_gradients(new.run_id, after)  # not kept (too big, failing): computed on request
    h, w, _ = run.input.shape
    return forward_reply(
        request,
        new,
        ImageInfo(format="run", original_shape=[h, w], resized=False),
        stats,
        ctx.settings.max_output_values,
        StepResponse,
        previous_run_id=run.run_id,
        target=target,
        loss=body.loss,
        learning_rate=learning_rate,
        loss_before=finite(before.loss_value),
        loss_after=finite(after.loss_value),
    )
