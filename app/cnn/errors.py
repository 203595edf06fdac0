"""Errors a person can act on: which layer, which field, the numbers, and what to do instead."""

from __future__ import annotations

from dataclasses import dataclass

FieldValue = int | str


@dataclass(frozen=True)
class Fix:
    """One change to a spec that removes a problem: exactly one of `set`, `insert_before`, `drop`.

    label : what the change does, in a few words ("set stride to 2")
    set : (field, value) pairs to write into the layer at fault (or into the input when the
        problem has no layer), e.g. (("stride", 2),)
    insert_before : (field, value) pairs of a layer to insert before the one at fault,
        e.g. (("type", "flatten"),)
    drop : fields to remove from the layer at fault, e.g. ("weights", "bias")

    Pairs rather than dicts keep the issue hashable, like every other engine value.
    """

    label: str
    set: tuple[tuple[str, FieldValue], ...] = ()
    insert_before: tuple[tuple[str, FieldValue], ...] = ()
    drop: tuple[str, ...] = ()

    @classmethod
    def setting(cls, label: str, **values: FieldValue) -> Fix:
        return cls(label, set=tuple(values.items()))

    @classmethod
    def set_to(cls, field: str, value: FieldValue) -> Fix:
        """One field to one value, labelled the way a person says it: "set kernel size to 3"."""
        return cls(f"set {field.replace('_', ' ')} to {value}", set=((field, value),))

    @classmethod
    def inserting(cls, label: str, **layer: FieldValue) -> Fix:
        return cls(label, insert_before=tuple(layer.items()))

    @classmethod
    def dropping(cls, label: str, *fields: str) -> Fix:
        return cls(label, drop=tuple(fields))

    def to_dict(self) -> dict[str, object]:
        """The API's form: {"label", "set", "insert_before", "drop"}, the unused two null."""
        return {
            "label": self.label,
            "set": dict(self.set) if self.set else None,
            "insert_before": dict(self.insert_before) if self.insert_before else None,
            "drop": list(self.drop) if self.drop else None,
        }


# Given weights or bias that do not fit: the seed draws new ones.
DROP_WEIGHTS = Fix.dropping("drop the given weights (use the seed)", "weights", "bias")


@dataclass(frozen=True)
class LayerIssue:
    """One problem with a network spec.

    layer : 0-based index into spec.layers, or None for the input / the whole network
    field : the spec field at fault ("stride", "padding", "kernel_size", "units", "weights", ...)
    message : what is wrong, with the arithmetic filled in
    suggestion : values that would work, or None
    fix : the one change that removes the problem, when there is one, else None
    """

    layer: int | None
    field: str | None
    message: str
    suggestion: str | None = None
    fix: Fix | None = None


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
