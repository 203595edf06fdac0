"""POST /api/v1/forward: decode an upload, run it through a network, keep the run."""

from __future__ import annotations

from typing import Annotated, TypeVar

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile

from app.cnn import DenseLayer, Network
from app.errors import ImageTooLargeError
from app.schemas import (
    ForwardLayer,
    ForwardOutput,
    ForwardResponse,
    ImageInfo,
    LayerStats,
    TopClass,
)
from app.storage.runs.memory import Run, new_run_id
from app.web.admission import GateDep
from app.web.checks import network_from_field, network_or_model
from app.web.deps import RegistryDep, SettingsDep, StoreDep, error_responses
from app.web.imageio import DecodedImage, decode_image
from app.web.replies import finite, runs_url
from app.web.validation import file_size

forward_router = APIRouter(tags=["runs"])
TOP_K = 5  # classes listed in output.top
Reply = TypeVar("Reply", bound=ForwardResponse)


def layer_stats(outputs: list[np.ndarray]) -> list[LayerStats]:
    """The min/max/mean of each layer's output (h, w, c) or (n,)."""
    return [
        LayerStats(min=finite(o.min()), max=finite(o.max()), mean=finite(o.mean(dtype=np.float64)))
        for o in outputs
    ]


def _forward(network: Network, pixels: np.ndarray) -> tuple[list[np.ndarray], list[LayerStats]]:
    """Run the network on pixels (H, W, C) float32; each output and its min/max/mean."""
    outputs = network.forward(pixels)
    return outputs, layer_stats(outputs)


def _output(network: Network, last: np.ndarray, labels: list[str] | None, most: int):
    flat = last.reshape(-1)
    values = [finite(v) for v in flat[:most].tolist()]
    final = network.layers[-1]
    probabilities = top = None
    if isinstance(final, DenseLayer) and final.activation == "softmax":
        probabilities = [finite(v) for v in flat.tolist()]
        order = np.argsort(-flat, kind="stable")[:TOP_K]
        top = [
            TopClass(
                index=int(j),
                label=labels[j] if labels is not None and j < len(labels) else None,
                p=finite(flat[j]),
            )
            for j in order
        ]
    return ForwardOutput(
        values=values,
        probabilities=probabilities,
        top=top,
        size=int(flat.size),
        truncated=flat.size > most,
    )


@forward_router.post(
    "/forward",
    response_model=ForwardResponse,
    responses=error_responses(400, 404, 413, 415, 422, 503, 504),
)
async def forward(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    registry: RegistryDep,
    gate: GateDep,
    image: Annotated[UploadFile, File(description="The image: PNG, JPEG, GIF, BMP, WebP or TIFF.")],
    network: Annotated[
        str | None, Form(description="A network spec as a JSON string (or give model).")
    ] = None,
    model: Annotated[
        str | None, Form(description="The name of a preset model (or give network).")
    ] = None,
) -> ForwardResponse:
    """Run an image through a network; keep the run for its images, arrays and explanations."""
    network, model = network_or_model(network, model)
    labels: list[str] | None = None
    preset_net: Network | None = None
    if model is not None:
        preset = registry.get(model)
        preset_net, labels = preset.network, preset.labels
    size = image.size
    data = await image.read(settings.max_upload_bytes + 1)

    def compute() -> tuple[Network, DecodedImage, list[np.ndarray], list[LayerStats]]:
        """All of the request's CPU work, as one job of the admission gate."""
        net = preset_net if preset_net is not None else network_from_field(network, settings)
        if size is not None and size > settings.max_upload_bytes:
            raise ImageTooLargeError(
                f"The file is {file_size(size)}; the limit is "
                f"{file_size(settings.max_upload_bytes)}. Save it smaller and upload it again."
            )
        h, w, c = net.input_shape
        decoded = decode_image(
            data,
            height=h,
            width=w,
            channels=c,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels,
        )
        return (net, decoded, *_forward(net, decoded.pixels))

    net, decoded, outputs, stats = await gate.run(compute)
    run = Run(new_run_id(), net, decoded.pixels, outputs, labels=labels, model=model)
    store.put(run)
    image_info = ImageInfo(
        format=decoded.format,
        original_shape=list(decoded.original_size),
        resized=decoded.resized,
    )
    return forward_reply(request, run, image_info, stats, settings.max_output_values)


def forward_reply(
    request: Request,
    run: Run,
    image: ImageInfo,
    stats: list[LayerStats],
    most: int,
    response: type[Reply] = ForwardResponse,  # type: ignore[assignment]
    **extra: object,
) -> Reply:
    """The /forward reply for a kept run (also the start of POST /runs/{id}/step's reply:
    `response` a subclass of ForwardResponse, `extra` its own fields).

    stats : layer_stats(run.outputs); most : settings.max_output_values.
    """
    net = run.network
    h, w, c = net.input_shape
    base = runs_url(request, run.run_id)
    return response(
        run_id=run.run_id,
        input_shape=[h, w, c],
        input_url=f"{base}/input.png",
        image=image,
        model=run.model,
        layers=[
            ForwardLayer(
                index=layer.index,
                type=layer.type,
                output_shape=list(layer.output_shape),
                params=layer.param_count,
                stats=stats[layer.index],
                grid_url=f"{base}/layers/{layer.index}.png",
                channel_url=f"{base}/layers/{layer.index}/channels/{{c}}.png",
                array_url=f"{base}/layers/{layer.index}.npy",
                explain_url=f"{base}/layers/{layer.index}/explain",
            )
            for layer in net.layers
        ],
        output=_output(net, run.outputs[-1], run.labels, most),
        **extra,
    )
