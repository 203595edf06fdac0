"""FastAPI routers for /api/v1, one per resource: health, shapes, forward + runs, models.

Thin on purpose: parse, check limits, call imageio / the engine / render in a worker thread (CPU
work must not block the event loop), keep the run, shape the reply. Errors are raised as the
classes of app.errors and answered in one place.
"""

from __future__ import annotations

import dataclasses
import io
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app import render
from app.cnn import (
    DenseLayer,
    Network,
    ShapeReport,
    build_network,
    estimate_activation_bytes,
    explain,
    infer_shapes,
)
from app.errors import (
    ChannelNotFoundError,
    ImageTooLargeError,
    InvalidNetworkError,
    InvalidRequestError,
    IssueDict,
    LayerNotFoundError,
    file_size,
    issue,
    issues_from_pydantic,
    summarize,
)
from app.imageio import decode_image
from app.models import ModelRegistry
from app.runs import RenderCache, Run, RunStore, new_run_id
from app.schemas import (
    AvgPoolLayer,
    ConvLayer,
    ErrorResponse,
    ExplainResponse,
    ForwardLayer,
    ForwardOutput,
    ForwardResponse,
    HealthResponse,
    ImageInfo,
    LayerShapeModel,
    LayerStats,
    MaxPoolLayer,
    NetworkSpecModel,
    PresetModelInfo,
    ShapesResponse,
    TopClass,
)
from app.schemas import (
    DenseLayer as DenseLayerModel,
)
from app.settings import Settings, get_settings

API_PREFIX = "/api/v1"
TOP_K = 5


def package_version() -> str:
    try:
        return version("cnn-explorer")
    except PackageNotFoundError:
        return "0.0.0+unknown"


# -- dependencies ------------------------------------------------------------------------------
def get_run_store(request: Request) -> RunStore:
    return request.app.state.run_store


def get_render_cache(request: Request) -> RenderCache:
    return request.app.state.render_cache


def get_model_registry(request: Request) -> ModelRegistry:
    return request.app.state.model_registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[RunStore, Depends(get_run_store)]
CacheDep = Annotated[RenderCache, Depends(get_render_cache)]
RegistryDep = Annotated[ModelRegistry, Depends(get_model_registry)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


# -- network checks ----------------------------------------------------------------------------
def _over(index: int | None, field: str, what: str, value: int, most: int) -> IssueDict:
    return issue(
        index,
        field,
        f"{what}: {field} {value} is more than this server allows ({most}).",
        f"Use {field} {most} or less.",
    )


def limit_issues(spec: NetworkSpecModel, settings: Settings) -> list[IssueDict]:
    """This server's size limits (settings.py) on the numbers in a spec, before any arithmetic."""
    found: list[IssueDict] = []
    side = settings.max_input_side
    for name in ("height", "width"):
        value = getattr(spec.input, name)
        if value > side:
            found.append(
                issue(
                    None,
                    f"input.{name}",
                    f"Input {name} {value} is more than this server allows ({side}).",
                    f"Use an input {name} of at most {side}; uploads are resized to it.",
                )
            )
    if len(spec.layers) > settings.max_layers:
        found.append(
            issue(
                None,
                "layers",
                f"The network has {len(spec.layers)} layers; this server allows "
                f"{settings.max_layers}.",
                f"Remove {len(spec.layers) - settings.max_layers} layers.",
            )
        )
    window, side = settings.max_kernel_size, settings.max_input_side
    for index, layer in enumerate(spec.layers):
        checks: list[tuple[str, int, int]] = []
        if isinstance(layer, ConvLayer):
            checks = [
                ("filters", layer.filters, settings.max_filters),
                ("kernel_size", layer.kernel_size, window),
                ("stride", layer.stride, side),
            ]
            if isinstance(layer.padding, int):
                checks.append(("padding", layer.padding, window))
        elif isinstance(layer, MaxPoolLayer | AvgPoolLayer):
            checks = [("size", layer.size, window), ("padding", layer.padding, window)]
            checks += [("stride", layer.stride, side)] if layer.stride is not None else []
        elif isinstance(layer, DenseLayerModel):
            checks = [("units", layer.units, settings.max_units)]
        what = f"Layer {index} ({layer.type})"
        found += [_over(index, name, what, v, most) for name, v, most in checks if v > most]
    return found


def multiply_adds(spec: NetworkSpecModel, report: ShapeReport) -> int:
    """Multiply-adds of one forward pass: conv Ho*Wo*K*F*F*C, dense units*inputs."""
    total = 0
    for shape in report.layers:
        layer = spec.layers[shape.index]
        if isinstance(layer, ConvLayer):
            total += int(np.prod(shape.output_shape)) * layer.kernel_size**2 * shape.input_shape[2]
        elif isinstance(layer, DenseLayerModel):
            total += shape.output_shape[0] * shape.input_shape[0]
    return total


def cost_issues(
    spec: NetworkSpecModel, report: ShapeReport, settings: Settings
) -> tuple[int, list[IssueDict]]:
    """(estimated bytes, issues) for a valid network's memory, parameters and arithmetic."""
    found: list[IssueDict] = []
    needed = estimate_activation_bytes(report)
    if needed > settings.max_activation_bytes:
        found.append(
            issue(
                None,
                None,
                f"One forward pass would need {needed / 2**20:.1f} MB (every layer's output at 4 "
                f"bytes per value, plus working buffers); this server allows "
                f"{settings.max_activation_bytes / 2**20:.1f} MB.",
                "Use a smaller input size or fewer filters, or shrink the maps earlier with a "
                "stride or pooling.",
            )
        )
    if report.total_params > settings.max_params:
        found.append(
            issue(
                None,
                None,
                f"The network has {report.total_params:,} parameters; this server allows "
                f"{settings.max_params:,}.",
                "Shrink the input of the dense layers (pool or stride first) or use fewer units "
                "or filters.",
            )
        )
    work = multiply_adds(spec, report)
    if work > settings.max_multiply_adds:
        found.append(
            issue(
                None,
                None,
                f"One forward pass would take {work / 1e9:.1f} billion multiply-adds; this "
                f"server allows {settings.max_multiply_adds / 1e9:.1f} billion.",
                "Use a smaller input, fewer or smaller filters, or a stride or pooling earlier.",
            )
        )
    return needed, found


def check_network(
    spec: NetworkSpecModel, settings: Settings
) -> tuple[ShapeReport, list[IssueDict], int | None]:
    """(shape report, every problem incl. server limits, estimated bytes or None).

    The engine only sees the layers before the first one over a limit, so no arithmetic (or
    search for a fitting stride) ever runs on numbers this server refuses.
    """
    limits = limit_issues(spec, settings)
    checked = len(spec.layers)
    for found in limits:
        checked = 0 if found["layer"] is None else min(checked, found["layer"])
    engine_spec = spec.to_engine()
    engine_spec = dataclasses.replace(engine_spec, layers=engine_spec.layers[:checked])
    report = infer_shapes(engine_spec)
    issues = [issue(i.layer, i.field, i.message, i.suggestion) for i in report.issues]
    issues = sorted(limits + issues, key=lambda i: -1 if i["layer"] is None else i["layer"])
    if issues:
        return report, issues, None
    needed, costly = cost_issues(spec, report, settings)
    return report, costly, needed


def parse_network_field(text: str) -> NetworkSpecModel:
    """The `network` form field (a JSON string) -> NetworkSpecModel; InvalidNetworkError (422)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        found = issue(
            None,
            "network",
            f"The network field is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}.",
            "Send the network spec as a JSON string (JSON.stringify(spec)).",
        )
        raise InvalidNetworkError(summarize("The network", [found]), [found]) from None
    try:
        return NetworkSpecModel.model_validate(data)
    except ValidationError as e:
        found_all = issues_from_pydantic(e.errors())
        raise InvalidNetworkError(summarize("The network", found_all), found_all) from None


def network_from_field(text: str, settings: Settings) -> Network:
    """The `network` form field -> a built Network, or InvalidNetworkError (422) saying why."""
    spec = parse_network_field(text)
    _, issues, _ = check_network(spec, settings)
    if issues:
        raise InvalidNetworkError(summarize("The network", issues), issues)
    return build_network(spec.to_engine())


# -- health ------------------------------------------------------------------------------------
health_router = APIRouter(tags=["health"])


@health_router.get("/health", response_model=HealthResponse)
def health() -> HealthResponse:
    """Whether the server answers, and its version."""
    return HealthResponse(status="ok", version=package_version())


# -- shapes ------------------------------------------------------------------------------------
shapes_router = APIRouter(tags=["shapes"])


@shapes_router.post("/shapes", response_model=ShapesResponse, responses=_errors(413, 422))
def shapes(spec: NetworkSpecModel, settings: SettingsDep) -> ShapesResponse:
    """Every layer's output shape, params and arithmetic, or why the network is impossible.

    Problems with the numbers (the arithmetic, or this server's limits) give 200 with
    valid=false and the layers before the first problem; a body that is not a network spec
    gives 422.
    """
    report, issues, nbytes = check_network(spec, settings)
    stop = len(report.layers)  # the engine stops at its first impossible layer
    for found in issues:
        if found["layer"] is not None:
            stop = min(stop, found["layer"])
    listed = report.layers[:stop]
    return ShapesResponse(
        valid=not issues,
        layers=[
            LayerShapeModel(
                index=s.index,
                type=s.type,
                input_shape=list(s.input_shape),
                output_shape=list(s.output_shape),
                params=s.params,
                formula=s.formula,
            )
            for s in listed
        ],
        total_params=sum(s.params for s in listed),
        errors=issues,
        activation_bytes=nbytes,
    )


# -- forward and runs --------------------------------------------------------------------------
runs_router = APIRouter(tags=["runs"])


def _finite(v: float) -> float:
    """JSON has no NaN or infinity; clamp to the float32 range (the .npy keeps the truth)."""
    return float(np.nan_to_num(v, nan=0.0, posinf=3.4e38, neginf=-3.4e38))


def _forward(network: Network, pixels: np.ndarray) -> tuple[list[np.ndarray], list[LayerStats]]:
    """Run the network on pixels (H, W, C) float32; each output and its min/max/mean."""
    outputs = network.forward(pixels)
    stats = [
        LayerStats(
            min=_finite(o.min()), max=_finite(o.max()), mean=_finite(o.mean(dtype=np.float64))
        )
        for o in outputs
    ]
    return outputs, stats


def _output(network: Network, last: np.ndarray, labels: list[str] | None, most: int):
    flat = last.reshape(-1)
    values = [_finite(v) for v in flat[:most].tolist()]
    final = network.layers[-1]
    probabilities = top = None
    if isinstance(final, DenseLayer) and final.activation == "softmax":
        probabilities = [_finite(v) for v in flat.tolist()]
        order = np.argsort(-flat, kind="stable")[:TOP_K]
        top = [
            TopClass(
                index=int(j),
                label=labels[j] if labels is not None and j < len(labels) else None,
                p=float(flat[j]),
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


def runs_url(request: Request, run_id: str) -> str:
    return f"{request.scope.get('root_path', '')}{API_PREFIX}/runs/{run_id}"


@runs_router.post("/forward", response_model=ForwardResponse, responses=_errors(404, 413, 415, 422))
async def forward(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    registry: RegistryDep,
    image: Annotated[UploadFile, File(description="The image: PNG, JPEG, GIF, BMP, WebP or TIFF.")],
    network: Annotated[
        str | None, Form(description="A network spec as a JSON string (or give model).")
    ] = None,
    model: Annotated[
        str | None, Form(description="The name of a preset model (or give network).")
    ] = None,
) -> ForwardResponse:
    """Run an image through a network; keep the run for its images, arrays and explanations."""
    network = network or None
    model = model or None
    if (network is None) == (model is None):
        both = network is not None
        found = issue(
            None,
            "model" if both else "network",
            "Give either network or model, not both."
            if both
            else "Give a network (a JSON network spec) or a model (a preset name).",
            "Send network to try your own layers, or model to use a trained preset "
            "(GET /api/v1/models lists them).",
        )
        raise InvalidRequestError(found["message"], [found])

    labels: list[str] | None = None
    if model is not None:
        preset = registry.get(model)
        net, labels = preset.network, preset.labels
    else:
        assert network is not None
        net = await run_in_threadpool(network_from_field, network, settings)

    if image.size is not None and image.size > settings.max_upload_bytes:
        raise ImageTooLargeError(
            f"The file is {file_size(image.size)}; the limit is "
            f"{file_size(settings.max_upload_bytes)}. Save it smaller and upload it again."
        )
    data = await image.read(settings.max_upload_bytes + 1)
    h, w, c = net.input_shape
    decoded = await run_in_threadpool(
        lambda: decode_image(
            data,
            height=h,
            width=w,
            channels=c,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels,
        )
    )
    outputs, stats = await run_in_threadpool(_forward, net, decoded.pixels)
    run = Run(new_run_id(), net, decoded.pixels, outputs, labels=labels, model=model)
    store.put(run)

    base = runs_url(request, run.run_id)
    return ForwardResponse(
        run_id=run.run_id,
        input_shape=[h, w, c],
        input_url=f"{base}/input.png",
        image=ImageInfo(
            format=decoded.format,
            original_shape=list(decoded.original_size),
            resized=decoded.resized,
        ),
        model=model,
        layers=[
            ForwardLayer(
                index=layer.index,
                type=layer.type,
                output_shape=list(layer.output_shape),
                params=layer.params,
                stats=stats[layer.index],
                grid_url=f"{base}/layers/{layer.index}.png",
                channel_url=f"{base}/layers/{layer.index}/channels/{{c}}.png",
                array_url=f"{base}/layers/{layer.index}.npy",
                explain_url=f"{base}/layers/{layer.index}/explain",
            )
            for layer in net.layers
        ],
        output=_output(net, outputs[-1], labels, settings.max_output_values),
    )


def _layer_output(run: Run, index: int) -> np.ndarray:
    n = len(run.outputs)
    if not 0 <= index < n:
        raise LayerNotFoundError(
            f"Run {run.run_id} has layers 0..{n - 1}; there is no layer {index}.",
            valid_range=[0, n - 1],
        )
    return run.outputs[index]


def _png(data: bytes, settings: Settings) -> Response:
    # A run never changes, so its images can be cached for as long as it is kept.
    cache = f"private, max-age={int(settings.run_ttl_seconds)}, immutable"
    return Response(data, media_type="image/png", headers={"Cache-Control": cache})


_PNG = {200: {"content": {"image/png": {}}, "description": "A palette PNG."}, **_errors(404, 422)}


@runs_router.get("/runs/{run_id}/input.png", response_class=Response, responses=_PNG)
async def input_png(run_id: str, store: StoreDep, cache: CacheDep, settings: SettingsDep):
    """The image as the network saw it (decoded, resized, 1 or 3 channels)."""
    run = store.get(run_id)
    data = await run_in_threadpool(
        cache.get_or_render, (run_id, "input"), lambda: render.render_image(run.input)
    )
    return _png(data, settings)


@runs_router.get("/runs/{run_id}/layers/{index}.png", response_class=Response, responses=_PNG)
async def layer_png(
    run_id: str, index: int, store: StoreDep, cache: CacheDep, settings: SettingsDep
):
    """All channels of layer `index`, each normalised on its own, tiled in reading order."""
    run = store.get(run_id)
    out = _layer_output(run, index)
    data = await run_in_threadpool(
        cache.get_or_render, (run_id, "grid", index), lambda: render.render_grid(out)
    )
    return _png(data, settings)


@runs_router.get(
    "/runs/{run_id}/layers/{index}/channels/{channel}.png", response_class=Response, responses=_PNG
)
async def channel_png(
    run_id: str, index: int, channel: int, store: StoreDep, cache: CacheDep, settings: SettingsDep
):
    """One channel of layer `index` at native resolution (a flat layer has channel 0 only)."""
    run = store.get(run_id)
    out = _layer_output(run, index)
    count = out.shape[2] if out.ndim == 3 else 1
    if not 0 <= channel < count:
        raise ChannelNotFoundError(
            f"Layer {index} of run {run_id} has channels 0..{count - 1}; there is no channel "
            f"{channel}.",
            valid_range=[0, count - 1],
        )

    def draw() -> bytes:
        diverging = bool(out.min() < 0)  # the whole layer decides, so it matches the grid
        if out.ndim == 1:
            return render.render_flat(out, diverging=diverging)
        return render.render_channel(out[:, :, channel], diverging=diverging)

    data = await run_in_threadpool(cache.get_or_render, (run_id, "channel", index, channel), draw)
    return _png(data, settings)


@runs_router.get(
    "/runs/{run_id}/layers/{index}.npy",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **_errors(404, 422)},
)
async def layer_npy(run_id: str, index: int, store: StoreDep):
    """Layer `index`'s output as a NumPy .npy file: float32 [h, w, c] or [n]."""
    out = _layer_output(store.get(run_id), index)

    def encode() -> bytes:
        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        return buf.getvalue()

    disposition = f'attachment; filename="{run_id}-layer{index}.npy"'
    return Response(
        await run_in_threadpool(encode),
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition},
    )


@runs_router.get(
    "/runs/{run_id}/layers/{index}/explain",
    response_model=ExplainResponse,
    responses=_errors(404, 422),
)
async def explain_value(
    run_id: str,
    index: int,
    store: StoreDep,
    y: Annotated[int | None, Query(description="Row of the output value (3D layers).")] = None,
    x: Annotated[int | None, Query(description="Column of the output value (3D layers).")] = None,
    c: Annotated[int | None, Query(description="Channel of the output value (3D layers).")] = None,
    i: Annotated[int | None, Query(description="Index of the output value (flat layers).")] = None,
) -> dict[str, Any]:
    """How one output value of layer `index` was computed from the layer's input."""
    run = store.get(run_id)
    _layer_output(run, index)
    inputs = [run.input, *run.outputs]
    found = await run_in_threadpool(lambda: explain(run.network, inputs, index, y=y, x=x, c=c, i=i))
    return {**found, "type": run.network.layers[index].type, "layer": index}


# -- models ------------------------------------------------------------------------------------
models_router = APIRouter(tags=["models"])


@models_router.get("/models", response_model=list[PresetModelInfo])
def list_models(registry: RegistryDep) -> list[PresetModelInfo]:
    """The preset (trained) models; name one as `model` in POST /api/v1/forward."""
    return [m.info() for m in registry.list()]


api_router = APIRouter(prefix=API_PREFIX)
for _router in (health_router, shapes_router, runs_router, models_router):
    api_router.include_router(_router)
