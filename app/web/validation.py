"""A request's problems in words a person can act on: the issue dicts of every 4xx body, and
Pydantic's validation errors translated into them (which layer, which field, what would work).

An issue is {"layer": int | None, "field": str | None, "message": str, "suggestion": str | None,
"fix": {"label", "set", "insert_before", "drop"} | None} (app/schemas.py Issue). Exceptions
carry these; app/web/handlers.py turns them into responses.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.cnn.errors import DROP_WEIGHTS, Fix, LayerIssue
from app.errors import IssueDict
from app.schemas import FIELD_HINTS, LAYER_MODELS, NetworkSpecModel


def file_size(n: int) -> str:
    """1234 -> "1.2 KB"; 10485760 -> "10.0 MB"."""
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.1f} MB"


def issue(
    layer: int | None,
    field: str | None,
    message: str,
    suggestion: str | None = None,
    fix: Fix | None = None,
) -> IssueDict:
    """One problem as the API shows it; `fix` is the single change that removes it, if known."""
    return {
        "layer": layer,
        "field": field,
        "message": message,
        "suggestion": suggestion,
        "fix": None if fix is None else fix.to_dict(),
    }


def issues_from_engine(issues: Iterable[LayerIssue]) -> list[IssueDict]:
    return [issue(i.layer, i.field, i.message, i.suggestion, i.fix) for i in issues]


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
        fix = DROP_WEIGHTS if field in ("weights", "bias") else None
        return issue(index, field, message, suggestion, fix)
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


def is_network_error(err: Mapping[str, Any]) -> bool:
    """Whether a request's Pydantic error is about the network spec in the body."""
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
