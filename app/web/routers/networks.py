"""POST /api/v1/shapes, and the checks every network passes before the engine runs it:
the Pydantic schema, this server's limits (settings.py), then the engine's arithmetic."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from fastapi import APIRouter
from pydantic import ValidationError

from app.cnn import Network, ShapeReport, build_network, estimate_activation_bytes, infer_shapes
from app.errors import (
    InvalidNetworkError,
    IssueDict,
    issue,
    issues_from_pydantic,
    summarize,
    unreadable_json,
)
from app.schemas import (
    AvgPoolLayer,
    ConvLayer,
    LayerShapeModel,
    MaxPoolLayer,
    NetworkSpecModel,
    ShapesResponse,
)
from app.schemas import DenseLayer as DenseLayerModel
from app.settings import Settings
from app.web.deps import SettingsDep, error_responses


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
    except (ValueError, RecursionError) as e:  # a number over 4300 digits, nesting too deep
        message = f"The network field could not be read as JSON: {unreadable_json(e)}."
        found = issue(None, "network", message, None)
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


shapes_router = APIRouter(tags=["shapes"])


@shapes_router.post("/shapes", response_model=ShapesResponse, responses=error_responses(413, 422))
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
