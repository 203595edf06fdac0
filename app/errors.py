"""Web errors as specific exception classes, and the one place they become responses.

Every 4xx body is {"detail": {"message": str, ...}}; every 422 also carries
"errors": [{"layer", "field", "message", "suggestion"}] (the invalid-network shape of API.md).
Routes raise; `install_error_handlers` answers. Nothing a client sends should reach a 500.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.cnn.errors import ExplainError, LayerIssue, SpecError
from app.schemas import FIELD_HINTS, LAYER_MODELS, ErrorResponse, NetworkSpecModel

log = logging.getLogger("cnn_explorer")

IssueDict = dict[str, Any]


class AppError(Exception):
    """A client error with a status code and a message a person can act on."""

    status_code = 400

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def detail(self) -> dict[str, Any]:
        return {"message": self.message, **self.extra}


class ImageTooLargeError(AppError):
    """Too many bytes or too many pixels (413)."""

    status_code = 413


class UnsupportedImageError(AppError):
    """Not an image, or a format we do not read (415)."""

    status_code = 415


class CorruptImageError(AppError):
    """An image that cannot be decoded: truncated or damaged (422)."""

    status_code = 422


class InvalidRequestError(AppError):
    """A request that cannot be carried out as sent (422), with the problems listed."""

    status_code = 422

    def __init__(self, message: str, errors: Sequence[IssueDict]) -> None:
        super().__init__(message, errors=list(errors))


class InvalidNetworkError(InvalidRequestError):
    """A network spec that is malformed, impossible or over this server's limits (422)."""


class NotFoundError(AppError):
    status_code = 404


class RunNotFoundError(NotFoundError):
    """A run id that was never made, or was dropped (age or memory)."""


class LayerNotFoundError(NotFoundError):
    pass


class ChannelNotFoundError(NotFoundError):
    pass


class ModelNotFoundError(NotFoundError):
    pass


class RunTooLargeError(AppError):
    """A single run bigger than the whole run store (413)."""

    status_code = 413


def file_size(n: int) -> str:
    """1234 -> "1.2 KB"; 10485760 -> "10.0 MB"."""
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.1f} MB"


def issue(
    layer: int | None, field: str | None, message: str, suggestion: str | None = None
) -> IssueDict:
    return {"layer": layer, "field": field, "message": message, "suggestion": suggestion}


def issues_from_engine(issues: Iterable[LayerIssue]) -> list[IssueDict]:
    return [issue(i.layer, i.field, i.message, i.suggestion) for i in issues]


def summarize(what: str, issues: Sequence[IssueDict]) -> str:
    """ "The network is not valid: <first problem>" (+ how many more)."""
    if not issues:
        return f"{what} is not valid."
    first = issues[0]["message"]
    if len(issues) == 1:
        return f"{what} is not valid: {first}"
    return f"{what} is not valid ({len(issues)} problems). First: {first}"


# -- Pydantic errors -> issues -----------------------------------------------------------------
_NETWORK_KEYS = set(NetworkSpecModel.model_fields)
_REQUEST_LOCS = ("body", "query", "path", "header", "cookie")


def _shown(value: Any) -> str:
    """A value as the client wrote it: JSON's true, false and null, else its repr, shortened."""
    text = json.dumps(value) if value is None or isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _phrase(msg: str) -> str:
    """Pydantic's "Input should be ..." -> "should be ..." to follow the field and value."""
    return msg[len("Input ") :] if msg.startswith("Input should") else _lower_first(msg)


# Names other libraries use for our layer types.
_TYPE_ALIASES = {
    "conv2d": "conv", "convolution": "conv", "convolutional": "conv", "pool": "maxpool",
    "max_pool": "maxpool", "maxpool2d": "maxpool", "pooling": "maxpool", "avg_pool": "avgpool",
    "averagepool": "avgpool", "avgpool2d": "avgpool", "linear": "dense", "fc": "dense",
    "fullyconnected": "dense", "fully_connected": "dense", "softmax": "dense",
    "globalaveragepool": "globalavgpool", "global_avg_pool": "globalavgpool",
    "global_max_pool": "globalmaxpool", "adaptiveavgpool": "globalavgpool", "reshape": "flatten",
}  # fmt: skip


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    alias = _TYPE_ALIASES.get(word.lower())
    if alias in options:
        return f"Did you mean {alias!r}? "
    close = difflib.get_close_matches(word.lower(), options, n=1, cutoff=0.6)
    return f"Did you mean {close[0]!r}? " if close else ""


def _fields_of(tag: str | None) -> list[str]:
    model = LAYER_MODELS.get(tag or "")
    return [] if model is None else list(model.model_fields)


def _field_error(err: Mapping[str, Any], prefix: str, field: str, where: str, tag: str | None):
    """Message and suggestion for an error on one named field."""
    kind, msg = err["type"], err["msg"]
    hint = FIELD_HINTS.get(field)
    suggestion = f"Set {field} to {hint}." if hint else None
    if kind == "missing":
        return f"{prefix}: {field} is required.", suggestion
    if kind == "extra_forbidden":
        allowed = [f for f in _fields_of(tag) if f != "type"] if tag else sorted(_NETWORK_KEYS)
        listed = ", ".join(allowed) if allowed else "no other fields"
        what = f"{tag} takes" if tag else "A network has"
        return (
            f"{prefix}: unknown field {field!r}.",
            f"{_did_you_mean(field, allowed)}{what} {listed}.",
        )
    got = "" if "input" not in err else f" {_shown(err['input'])}"
    return f"{prefix}: {where}{got} {_phrase(msg)}.", suggestion


def issue_from_pydantic(err: Mapping[str, Any]) -> IssueDict:
    """One Pydantic error (loc, type, msg) -> an issue naming the layer index and field."""
    loc = list(err["loc"])
    if loc and loc[0] in _REQUEST_LOCS:
        loc = loc[1:]
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "json_invalid":
        return issue(
            None,
            None,
            f"The body is not valid JSON: {ctx.get('error', err['msg'])}.",
            "Check for a missing comma, quote or bracket.",
        )
    if not loc:
        if isinstance(err.get("input"), bytes):
            return issue(
                None,
                None,
                "The body must be a network spec in JSON.",
                "Send it with the header Content-Type: application/json.",
            )
        return issue(
            None,
            None,
            f"The network must be a JSON object, not {_shown(err.get('input'))}.",
            'Send {"input": {"height", "width", "channels"}, "layers": [...]}.',
        )
    head = loc[0]
    if head == "layers" and len(loc) >= 2 and isinstance(loc[1], int):
        index = loc[1]
        if kind == "union_tag_invalid":
            tag = ctx.get("tag")
            return issue(
                index,
                "type",
                f"Layer {index}: unknown type {tag!r}.",
                f"{_did_you_mean(str(tag), LAYER_MODELS)}Use one of {FIELD_HINTS['type']}.",
            )
        if kind == "union_tag_not_found":
            return issue(
                index,
                "type",
                f'Layer {index} has no "type".',
                f'Add "type": one of {FIELD_HINTS["type"]}.',
            )
        if len(loc) == 2:
            return issue(
                index,
                None,
                f"Layer {index} must be an object such as "
                f'{{"type": "relu"}}, not {_shown(err.get("input"))}.',
                None,
            )
        tag = str(loc[2])
        if len(loc) == 3:
            return issue(index, None, f"Layer {index} ({tag}): {_lower_first(err['msg'])}.", None)
        field = str(loc[3])
        where = field + "".join(f"[{p}]" for p in loc[4:])
        message, suggestion = _field_error(err, f"Layer {index} ({tag})", field, where, tag)
        return issue(index, field, message, suggestion)
    if head == "layers":
        if kind == "too_short":
            return issue(
                None,
                "layers",
                "The network has no layers.",
                'Add at least one layer, e.g. {"type": "conv", "filters": 8, "kernel_size": 3}.',
            )
        return issue(None, "layers", f"layers {_lower_first(err['msg'])}.", "Send a list.")
    if head == "input" and len(loc) >= 2:
        field = str(loc[1])
        message, suggestion = _field_error(err, "Input", field, field, None)
        if kind == "extra_forbidden":
            suggestion = f"{_did_you_mean(field, ['height', 'width', 'channels'])}"
            suggestion += "The input has height, width and channels."
        return issue(None, f"input.{field}", message, suggestion)
    field = ".".join(str(p) for p in loc)
    if head in _NETWORK_KEYS or kind == "extra_forbidden":
        message, suggestion = _field_error(err, "Network", field, field, None)
        return issue(None, field, message, suggestion)
    if field == "image":
        return issue(
            None,
            field,
            "image is required as a file." if kind == "missing" else "image must be a file.",
            "Send multipart/form-data with the image file in a field named image.",
        )
    if kind == "missing":
        return issue(None, field, f"{field} is required.", None)
    got = "" if err.get("input") is None else f" {_shown(err['input'])}"
    return issue(None, field, f"{field}{got} {_phrase(err['msg'])}.", None)


def issues_from_pydantic(errors: Iterable[Mapping[str, Any]]) -> list[IssueDict]:
    """All errors, one per (layer, field): a ragged weights array is one problem, not 900."""
    seen: set[tuple[Any, Any]] = set()
    out: list[IssueDict] = []
    for err in errors:
        found = issue_from_pydantic(err)
        key = (found["layer"], found["field"])
        if key in seen and found["field"] is not None:
            continue
        seen.add(key)
        out.append(found)
    return out


def _is_network_error(err: Mapping[str, Any]) -> bool:
    loc = list(err["loc"])
    if not loc or loc[0] != "body":
        return False
    network_kinds = ("json_invalid", "extra_forbidden")
    return len(loc) == 1 or loc[1] in _NETWORK_KEYS or err["type"] in network_kinds


def unreadable_json(error: BaseException | None) -> str:
    """Why a JSON parser gave up on text that is not simply malformed, in words."""
    if isinstance(error, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(error, RecursionError):
        return "it is nested too deeply"
    if error is not None and "digits" in str(error):
        return "a number has more than 4300 digits"
    return str(error or "it is unreadable")


# -- handlers ----------------------------------------------------------------------------------
def _reply(status: int, detail: Mapping[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": dict(detail)})


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return _reply(exc.status_code, exc.detail())


async def _spec_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpecError)
    issues = issues_from_engine(exc.issues)
    return _reply(422, {"message": exc.message, "errors": issues})


async def _explain_error(request: Request, exc: Exception) -> JSONResponse:
    message = str(exc)
    first = message.split(" ", 1)[0]
    field = first if first in ("y", "x", "c", "i") else None
    return _reply(422, {"message": message, "errors": [issue(None, field, message)]})


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    issues = issues_from_pydantic(errors)
    network = any(_is_network_error(e) for e in errors)
    what = "The network" if network else "The request"
    return _reply(422, {"message": summarize(what, issues), "errors": issues})


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
        return _reply(413, {"message": message})
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
        return _reply(422, {"message": summarize("The network", [found]), "errors": [found]})
    if exc.status_code == 404 and message == "Not Found":
        message = f"There is nothing at {request.url.path}. The API lives under /api/v1."
    return JSONResponse(
        status_code=exc.status_code, content={"detail": {"message": message}}, headers=exc.headers
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("Unhandled error on %s %s", request.method, request.url.path)
    return _reply(500, {"message": "Internal error; the server log has the details."})


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
    app.add_exception_handler(SpecError, _spec_error)
    app.add_exception_handler(ExplainError, _explain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    _document_422_as_error_response(app)
