"""A model's files, read and written in one place: `<name>.json` and `<name>.npz`.

The JSON file:
    {"name": "<name>", "description": str, "network": <network spec>, "labels": [str] | null,
     "accuracy": float | null, "test_split": str | null, "dataset": str | null,
     "command": str | null}
Other top-level keys are ignored with a warning (a newer trainer may add metadata).
Weights are either inline in the network spec, or in `<name>.npz` next to it with the arrays
`layers.<i>.weights` and `layers.<i>.bias` for layer index i (conv (K, F, F, C), dense
(units, inputs); float32). A file that does not load raises ModelFileError naming the file.
Shipped models are written by `make train` (app/learning/recipes.py) with save_model; models
trained on the server by app/storage/models.py, atomically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.cnn import Network, NetworkSpec, SpecError, build_network
from app.cnn.spec import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    LayerSpec,
    PoolSpec,
    ReluSpec,
)
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
        # Pydantic's own words with the place in the file: this is for whoever ships the file,
        # not a client (the translation for clients is app/web/validation.py, above storage).
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in e.errors()
        )
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


def layer_to_dict(layer: LayerSpec) -> dict:
    """One engine layer spec -> its API JSON form (API.md), without weights or bias."""
    if isinstance(layer, ConvSpec):
        return {
            "type": "conv",
            "filters": layer.filters,
            "kernel_size": layer.kernel_size,
            "stride": layer.stride,
            "padding": layer.padding,
            "activation": layer.activation,
        }
    if isinstance(layer, DenseSpec):
        return {"type": "dense", "units": layer.units, "activation": layer.activation}
    if isinstance(layer, PoolSpec):
        return {
            "type": layer.type,
            "size": layer.size,
            "stride": layer.effective_stride,
            "padding": layer.padding,
        }
    if isinstance(layer, GlobalPoolSpec | FlattenSpec | ReluSpec):
        return {"type": layer.type}
    raise TypeError(f"unknown layer spec {layer!r}")


def spec_to_dict(spec: NetworkSpec) -> dict:
    """A NetworkSpec -> the API's network JSON, architecture and seed only (no arrays)."""
    inp = spec.input
    return {
        "input": {"height": inp.height, "width": inp.width, "channels": inp.channels},
        "seed": spec.seed,
        "layers": [layer_to_dict(layer) for layer in spec.layers],
    }


def weight_arrays(spec: NetworkSpec) -> dict[str, np.ndarray]:
    """{"layers.<i>.weights": (K, F, F, C) or (units, inputs), "layers.<i>.bias": ...} float32."""
    arrays = {}
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, ConvSpec | DenseSpec):
            if layer.weights is None or layer.bias is None:
                raise ValueError(f"layer {i} ({layer.type}) has no trained weights to save")
            arrays[f"layers.{i}.weights"] = np.asarray(layer.weights, dtype=np.float32)
            arrays[f"layers.{i}.bias"] = np.asarray(layer.bias, dtype=np.float32)
    return arrays


def model_json(
    name: str,
    spec: NetworkSpec,
    *,
    description: str,
    labels: list[str] | None,
    accuracy: float | None,
    test_split: str | None,
    dataset: str | None,
    command: str | None,
) -> str:
    """The text of a model's `<name>.json` (architecture and facts; the arrays go in the .npz)."""
    record = {
        "name": name,
        "description": description,
        "network": spec_to_dict(spec),
        "labels": labels,
        "accuracy": None if accuracy is None else round(float(accuracy), 4),
        "test_split": test_split,
        "dataset": dataset,
        "command": command,
    }
    return json.dumps(record, indent=2) + "\n"


def save_model(
    directory: Path,
    name: str,
    spec: NetworkSpec,
    *,
    description: str,
    labels: list[str] | None,
    accuracy: float | None,
    test_split: str | None,
    dataset: str | None,
    command: str | None,
) -> tuple[Path, Path]:
    """Write `<name>.json` and `<name>.npz` for a trained spec; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    text = model_json(
        name,
        spec,
        description=description,
        labels=labels,
        accuracy=accuracy,
        test_split=test_split,
        dataset=dataset,
        command=command,
    )
    json_path, npz_path = directory / f"{name}.json", directory / f"{name}.npz"
    json_path.write_text(text, encoding="utf-8")
    np.savez_compressed(npz_path, **weight_arrays(spec))
    return json_path, npz_path


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call write(file) on a temporary file next to path, fsync it, then os.replace it in."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
