"""Every error a client can cause, as specific exception classes: what went wrong, the numbers,
what to do instead, and the status code that says so.

Every 4xx body is {"detail": {"message": str, ...}}; an InvalidRequestError also carries
"errors": [{"layer", "field", "message", "suggestion", "fix"}] (the invalid-network shape of
API.md). Routes and the rooms below them raise these; app/web/handlers.py is the one place they
become responses, and app/web/validation.py puts a request's problems into those words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# One problem as the API shows it: {"layer", "field", "message", "suggestion", "fix"}.
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


class NoWeightsError(NotFoundError):
    """A weight or bias gradient asked of a layer that has no weights (404)."""


class RunTooLargeError(AppError):
    """A single run bigger than the whole run store (413)."""

    status_code = 413


# -- saved and trained models ------------------------------------------------------------------
class ModelNameTakenError(AppError):
    """A name already used by a shipped or saved model (409)."""

    status_code = 409


class ShippedModelError(AppError):
    """An attempt to delete a model that ships with the server (403)."""

    status_code = 403


class SavedModelsFullError(AppError):
    """The data directory already holds the most saved models allowed (409)."""

    status_code = 409


# -- saliency ----------------------------------------------------------------------------------
class SaliencyUnavailableError(AppError):
    """The run's network has no class scores to explain (409)."""

    status_code = 409


# -- the admission gate and training jobs ------------------------------------------------------
class OverloadedError(AppError):
    """Every CPU worker is busy and the queue is full, or the job waited out its budget (503).

    retry_after : whole seconds for the Retry-After header (also in the body).
    """

    status_code = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class TimeBudgetError(AppError):
    """The job started but did not finish within the request's time budget (504)."""

    status_code = 504


class TooManyJobsError(OverloadedError):
    """train_max_jobs jobs are already running (429, with Retry-After)."""

    status_code = 429


class JobNotFoundError(NotFoundError):
    """A training job id that was never made, or whose record was pruned."""


class DatasetMissingError(AppError):
    """The data set's files are not installed on the server (503)."""

    status_code = 503
