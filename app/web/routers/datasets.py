"""GET /api/v1/datasets: the data sets the server trains on: image size, classes and counts."""

from __future__ import annotations

import functools
import logging
import threading

import numpy as np
from fastapi import APIRouter

from app.learning.datasets import DatasetUnavailableError
from app.schemas import DatasetInfo, InputModel
from app.web.checks import DATASET_SHAPES
from app.web.training_jobs import cached_dataset

log = logging.getLogger("cnn_explorer")
datasets_router = APIRouter(tags=["training"])

# The page's own sample image that suits each set (static/js: a drawn digit, a generated shape).
PAGE_SAMPLES = {"digits": "digit", "shapes": "shapes"}
_DESCRIBING = threading.Lock()  # one load per process, however many first requests arrive


@functools.cache
def describe_dataset(name: str) -> DatasetInfo:
    """The set's description, counted from its labels; loaded once per process (the shapes are
    generated, about a second) through the cache the training jobs use too."""
    data = cached_dataset(name)
    _, height, width, channels = data.x_train.shape
    labels = np.concatenate([data.y_train, data.y_test])
    return DatasetInfo(
        name=name,
        description=data.description,
        input=InputModel(height=height, width=width, channels=channels),
        classes=list(data.labels),
        counts=np.bincount(labels, minlength=len(data.labels)).tolist(),
        train=len(data.y_train),
        test=len(data.y_test),
        source="built-in",
        sample=PAGE_SAMPLES.get(name),
    )


def dataset_info(name: str) -> DatasetInfo | None:
    """The built-in set `name` described, or None when its files are not installed."""
    with _DESCRIBING:
        try:
            return describe_dataset(name)
        except DatasetUnavailableError as e:
            log.warning("The %s data set is not listed: %s", name, e)
            return None


@datasets_router.get("/datasets", response_model=list[DatasetInfo])
def list_datasets() -> list[DatasetInfo]:
    """The built-in data sets: give the name as `dataset` to POST /api/v1/train, with a network
    whose input is `input` and whose last layer is dense with one unit per class and softmax.
    A set whose files are not installed is left out."""
    found = (dataset_info(name) for name in DATASET_SHAPES)
    return [info for info in found if info is not None]
