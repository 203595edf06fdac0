"""Errors a person can act on: which layer, which field, the numbers, and what to do instead."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerIssue:
    """One problem with a network spec.

    layer : 0-based index into spec.layers, or None for the input / the whole network
    field : the spec field at fault ("stride", "padding", "kernel_size", "units", "weights", ...)
    message : what is wrong, with the arithmetic filled in
    suggestion : values that would work, or None
    """

    layer: int | None
    field: str | None
    message: str
    suggestion: str | None = None


class SpecError(ValueError):
    """An impossible network. .message: str summary; .issues: list[LayerIssue]."""

    def __init__(self, issues: list[LayerIssue], message: str | None = None) -> None:
        self.issues = list(issues)
        if message is None:
            message = _summary(self.issues)
        self.message = message
        super().__init__(message)


class ExplainError(ValueError):
    """A request to explain a value that does not exist (bad layer index or position)."""


def _summary(issues: list[LayerIssue]) -> str:
    if not issues:
        return "The network cannot be built."
    first = issues[0].message
    if len(issues) == 1:
        return f"The network cannot be built: {first}"
    return f"The network cannot be built ({len(issues)} problems). First: {first}"
