"""Preset (trained) models shipped as files, listed by GET /api/v1/models.

A model is `<models_dir>/<name>.json`:
    {"name": "<name>", "description": str, "network": <network spec>, "labels": [str] | null,
     "accuracy": float | null, "test_split": str | null, "dataset": str | null,
     "command": str | null}
Other top-level keys are ignored with a warning (a newer trainer may add metadata).
Weights are either inline in the network spec, or in `<name>.npz` next to it with the arrays
`layers.<i>.weights` and `layers.<i>.bias` for layer index i (conv (K, F, F, C), dense
(units, inputs); float32). A file that does not load is a packaging bug: loading raises
ModelFileError naming the file, so the server refuses to start rather than serve a broken model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.cnn import Network, NetworkSpec, SpecError, build_network
from app.errors import ModelNotFoundError, issues_from_pydantic
from app.schemas import NetworkSpecModel, PresetModelInfo

log = logging.getLogger("cnn_explorer")
_NPZ_KEY = re.compile(r"^layers\.(\d+)\.(weights|bias)$")


class ModelFileError(RuntimeError):
    """A model file in models_dir that cannot be used (the message names the file)."""


class ModelFile(BaseModel):
    """The JSON file of one preset model."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str
    network: NetworkSpecModel
    labels: list[str] | None = None
    accuracy: float | None = Field(None, ge=0, le=1)
    test_split: str | None = None
    dataset: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class PresetModel:
    """A loaded preset: its file's fields and its built network (every weight filled in)."""

    file: ModelFile
    network: Network

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def labels(self) -> list[str] | None:
        return self.file.labels

    def info(self) -> PresetModelInfo:
        """What GET /models shows: the architecture without the trained arrays."""
        bare = self.file.network.model_dump(exclude={"layers": {"__all__": {"weights", "bias"}}})
        return PresetModelInfo(
            name=self.file.name,
            description=self.file.description,
            network=NetworkSpecModel.model_validate(bare),
            labels=self.file.labels,
            accuracy=self.file.accuracy,
            test_split=self.file.test_split,
            dataset=self.file.dataset,
            command=self.file.command,
        )


def _with_npz_weights(spec: NetworkSpec, npz_path: Path) -> NetworkSpec:
    """spec with layers' weights and bias replaced by the arrays in the .npz file."""
    layers = list(spec.layers)
    with np.load(npz_path, allow_pickle=False) as arrays:
        for key in arrays.files:
            found = _NPZ_KEY.match(key)
            if found is None:
                raise ModelFileError(
                    f"{npz_path}: unexpected array {key!r}; name arrays layers.<i>.weights or "
                    "layers.<i>.bias."
                )
            index, what = int(found.group(1)), found.group(2)
            if index >= len(layers) or not hasattr(layers[index], what):
                raise ModelFileError(f"{npz_path}: layer {index} takes no {what}.")
            if getattr(layers[index], what) is not None:
                raise ModelFileError(f"{npz_path}: layer {index} {what} are also given inline.")
            array = np.asarray(arrays[key], dtype=np.float32)
            layers[index] = dataclasses.replace(layers[index], **{what: array})
    return dataclasses.replace(spec, layers=tuple(layers))


def load_model(json_path: Path) -> PresetModel:
    """One `<name>.json` (+ optional `<name>.npz`) -> PresetModel; ModelFileError if unusable."""
    try:
        file = ModelFile.model_validate(json.loads(json_path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{json_path}: cannot be read as JSON ({e}).") from e
    except ValidationError as e:
        problems = "; ".join(i["message"] for i in issues_from_pydantic(e.errors()))
        raise ModelFileError(f"{json_path}: {problems}") from e
    if file.model_extra:
        log.warning("%s: ignoring unknown keys %s", json_path, sorted(file.model_extra))
    if file.name != json_path.stem:
        raise ModelFileError(f"{json_path}: name {file.name!r} differs from the file name.")
    spec = file.network.to_engine()
    npz_path = json_path.with_suffix(".npz")
    if npz_path.exists():
        spec = _with_npz_weights(spec, npz_path)
    try:
        network = build_network(spec)
    except SpecError as e:
        raise ModelFileError(f"{json_path}: {e.message}") from e
    out = network.report.layers[-1].output_shape
    if file.labels is not None and (len(out) != 1 or len(file.labels) != out[0]):
        raise ModelFileError(
            f"{json_path}: {len(file.labels)} labels for an output of shape {list(out)}."
        )
    return PresetModel(file=file, network=network)


class ModelRegistry:
    """The preset models of one directory, loaded and built once (networks are read-only)."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        paths = sorted(models_dir.glob("*.json")) if models_dir.is_dir() else []
        self._models = {m.name: m for m in (load_model(p) for p in paths)}

    def names(self) -> list[str]:
        return list(self._models)

    def list(self) -> list[PresetModel]:
        return list(self._models.values())

    def get(self, name: str) -> PresetModel:
        """The model called name, or ModelNotFoundError (404) listing the available names."""
        model = self._models.get(name)
        if model is None:
            available = self.names()
            listed = ", ".join(available) if available else "none are installed"
            raise ModelNotFoundError(
                f"There is no preset model {name!r}. Available: {listed}. "
                "GET /api/v1/models lists them; or send your own network instead.",
                available=available,
            )
        return model
