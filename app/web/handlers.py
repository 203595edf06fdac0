"""Exceptions -> responses, in one place: every 4xx and 5xx body the API sends is made here.

Every body is {"detail": {"message": str, ...}}; a 422 also carries "errors" (app/schemas.py
ErrorResponse). Routes raise app.errors classes (or the engine's SpecError, ExplainError and
LossError, or FastAPI's own validation and HTTP errors); `install_error_handlers` answers them
all, the admission gate's 503 and the training limit's 429 with a Retry-After header. Nothing a
client sends should reach a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.cnn.backprop import LossError
from app.cnn.errors import ExplainError, SpecError
from app.errors import AppError, OverloadedError
from app.schemas import ErrorResponse
from app.web.validation import (
    file_size,
    is_network_error,
    issue,
    issues_from_engine,
    issues_from_pydantic,
    summarize,
    unreadable_json,
)

log = logging.getLogger("cnn_explorer")


def error_reply(
    status: int, detail: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The body of every error: {"detail": {"message": ..., ...}} (also sent by middleware that
    answers before the app, such as main.BodySizeLimit)."""
    return JSONResponse(status_code=status, content={"detail": dict(detail)}, headers=headers)


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_reply(exc.status_code, exc.detail())


async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
    """503 (busy) or 429 (training slots full): when to come back, also as Retry-After."""
    assert isinstance(exc, OverloadedError)
    return error_reply(exc.status_code, exc.detail(), {"Retry-After": str(exc.retry_after)})


async def _spec_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpecError)
    issues = issues_from_engine(exc.issues)
    return error_reply(422, {"message": exc.message, "errors": issues})


async def _explain_error(request: Request, exc: Exception) -> JSONResponse:
    message = str(exc)
    first = message.split(" ", 1)[0].split("[", 1)[0]  # "weight[2] must be in ..." -> weight
    field = first if first in ("y", "x", "c", "i", "weight", "bias") else None
    return error_reply(422, {"message": message, "errors": [issue(None, field, message)]})


async def _loss_error(request: Request, exc: Exception) -> JSONResponse:
    """The backward pass's loss or target does not fit the run's network (422)."""
    message = str(exc)
    field = "target" if message.startswith("target") else "loss"
    return error_reply(422, {"message": message, "errors": [issue(None, field, message)]})


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    issues = issues_from_pydantic(errors)
    network = any(is_network_error(e) for e in errors)
    what = "The network" if network else "The request"
    return error_reply(422, {"message": summarize(what, issues), "errors": issues})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400 and "exceeded maximum size" in message:
        # Starlette's multipart limit on a text field: only `network` can be that long.
        settings = request.app.state.settings
        limit = file_size(settings.max_network_bytes)
        message = (
            f"The network field is larger than this server accepts ({limit}). Leave out inline "
            "weights, or use a preset model."
        )
        return error_reply(413, {"message": message})
    if exc.status_code == 400 and "multipart" in request.headers.get("content-type", ""):
        # Starlette's words for a broken form body ("Missing boundary in multipart.").
        message = (
            f"The body is not valid multipart/form-data: {message} Send the image file in a "
            "field named image and the network (or model) as a text field."
        )
    if exc.status_code == 400 and message == "There was an error parsing the body":
        # FastAPI's answer to a JSON body its parser gives up on (not UTF-8, nested too
        # deeply, a number of over 4300 digits): a body that is not a network spec (422).
        found = issue(
            None,
            None,
            f"The body could not be read as JSON: {unreadable_json(exc.__cause__)}.",
            "Send the network spec as UTF-8 JSON with Content-Type: application/json.",
        )
        return error_reply(422, {"message": summarize("The network", [found]), "errors": [found]})
    if exc.status_code == 404 and message == "Not Found":
        message = f"There is nothing at {request.url.path}. The API lives under /api/v1."
    return error_reply(exc.status_code, {"message": message}, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("Unhandled error on %s %s", request.method, request.url.path)
    return error_reply(500, {"message": "Internal error; the server log has the details."})


_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def _document_422_as_error_response(app: FastAPI) -> None:
    """/openapi.json: every 422 is an ErrorResponse, as _validation_error sends it, also on
    routes that do not list it (FastAPI's default would be its HTTPValidationError list)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ErrorResponse" not in components:
            model = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model.pop("$defs", {}))
            components["ErrorResponse"] = model
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                response = operation.get("responses", {}).get("422")
                if response is not None:
                    response["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
        for unused in ("HTTPValidationError", "ValidationError"):
            if unused not in str(schema["paths"]):
                components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    """Register the one translation of exceptions into {"detail": ...} responses."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(OverloadedError, _overloaded)
    app.add_exception_handler(SpecError, _spec_error)
    app.add_exception_handler(ExplainError, _explain_error)
    app.add_exception_handler(LossError, _loss_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    _document_422_as_error_response(app)
