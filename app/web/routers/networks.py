"""POST /api/v1/shapes: every layer's shapes and arithmetic, or why the network is impossible.
The checks themselves are app/web/checks.py, shared with /forward and /train."""

from __future__ import annotations

from fastapi import APIRouter

from app.schemas import LayerShapeModel, NetworkSpecModel, ShapesResponse
from app.web.checks import check_network
from app.web.deps import SettingsDep, error_responses

shapes_router = APIRouter(tags=["shapes"])


@shapes_router.post("/shapes", response_model=ShapesResponse, responses=error_responses(413, 422))
def shapes(spec: NetworkSpecModel, settings: SettingsDep) -> ShapesResponse:
    """Every layer's output shape, params and arithmetic, or why the network is impossible.

    Problems with the numbers (the arithmetic, or this server's limits) give 200 with
    valid=false, the layers before the first problem and, where one change removes a problem,
    its `fix`; a body that is not a network spec gives 422.
    """
    checked = check_network(spec, settings)
    listed = checked.listed_layers()
    return ShapesResponse(
        valid=checked.valid,
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
        errors=checked.issues,
        activation_bytes=checked.activation_bytes,
    )
