"""Models trained on this server, kept in data_dir/models, and the catalogue that joins them
to the shipped presets for GET /api/v1/models and POST /api/v1/forward.

Each saved model is `<name>.json` + `<name>.npz` in the format app/models.py loads (and
app/train_models.save_model writes). Both files are written to a temporary name, flushed to
disk and moved into place with os.replace, the .npz first: a model is listed only once its
.json exists, so a crash mid-save leaves at most an unlisted .npz or a `*.tmp` file, never a
half-written model. Names are compared without case (some file systems ignore it) and a saved
model is never overwritten: `reserve_name` refuses a taken name and `save` picks a free
suffixed name when another save won the race.

The directory is read again on every listing (a few stat calls), so models saved by another
worker process, or before a restart, appear without any further step.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.cnn.spec import NetworkSpec
from app.errors import (
    ModelNameTakenError,
    ModelNotFoundError,
    SavedModelsFullError,
    ShippedModelError,
)
from app.schemas import NAME_PATTERN, PresetModelInfo
from app.storage.model_files import (
    ModelFileError,
    PresetModel,
    load_model,
    model_json,
    weight_arrays,
    write_atomically,
)

log = logging.getLogger("cnn_explorer")

_NAME = re.compile(NAME_PATTERN)
_STALE_TMP_SECONDS = 3600


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


@dataclass(frozen=True)
class TrainedModel(PresetModel):
    """A PresetModel read from the data directory; listed with source "trained"."""

    def info(self) -> PresetModelInfo:
        return super().info().model_copy(update={"source": "trained"})


def valid_name(name: str) -> bool:
    """A safe file name: letters, digits, '-' and '_', starting with a letter or digit, <= 64."""
    return bool(_NAME.match(name))


class SavedModels:
    """The trained models of one directory (created on the first save)."""

    def __init__(self, directory: Path, max_models: int = 50) -> None:
        self.directory = directory
        self.max_models = max_models
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int, int], TrainedModel]] = {}
        self._remove_stale_tmp()

    def _remove_stale_tmp(self) -> None:
        """Temporary files an interrupted save left behind (old enough not to be in use)."""
        if not self.directory.is_dir():
            return
        for tmp in self.directory.glob(".*.tmp"):
            try:
                if time.time() - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                    tmp.unlink()
            except OSError:
                pass

    def _json_paths(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        paths = [p for p in self.directory.glob("*.json") if valid_name(p.stem)]
        return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.stem))

    def _load(self, path: Path) -> TrainedModel | None:
        """The model of one json file, from the cache while its files are unchanged."""
        try:
            st = path.stat()
            npz = path.with_suffix(".npz")
            stamp = (st.st_mtime_ns, st.st_size, npz.stat().st_mtime_ns if npz.exists() else 0)
        except OSError:
            return None
        cached = self._cache.get(path.stem)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            preset = load_model(path)
        except (ModelFileError, OSError, ValueError) as e:
            log.warning("Skipping saved model %s: %s", path, e)
            return None
        model = TrainedModel(file=preset.file, network=preset.network)
        self._cache[path.stem] = (stamp, model)
        return model

    def list(self) -> list[TrainedModel]:
        """Every readable saved model, oldest first."""
        with self._lock:
            found = [m for m in (self._load(p) for p in self._json_paths()) if m is not None]
            names = {m.name for m in found}
            for gone in set(self._cache) - names:
                del self._cache[gone]
            return found

    def names(self) -> list[str]:
        return [p.stem for p in self._json_paths()]

    def find(self, name: str) -> TrainedModel | None:
        """The saved model called name (exact case), or None."""
        path = self.directory / f"{name}.json"
        if not valid_name(name) or not path.exists():
            return None
        with self._lock:
            return self._load(path)

    def taken(self, name: str) -> bool:
        """Whether a saved model already has this name, ignoring case."""
        folded = name.casefold()
        return any(n.casefold() == folded for n in self.names())

    def free_name(self, base: str, also_taken: set[str] = frozenset()) -> str:
        """base, or base-2, base-3, ... : the first name no saved model (nor also_taken) has."""
        taken = {n.casefold() for n in self.names()} | {n.casefold() for n in also_taken}
        base = base[:56]
        if base.casefold() not in taken:
            return base
        n = 2
        while f"{base}-{n}".casefold() in taken:
            n += 1
        return f"{base}-{n}"

    def check_room(self, pending: int = 0) -> None:
        """SavedModelsFullError when max_models are saved (or will be, with `pending` more)."""
        count = len(self.names())
        if count + pending >= self.max_models:
            raise SavedModelsFullError(
                f"{count} trained models are saved ({pending} more being trained), the most "
                f"this server keeps is {self.max_models}. Delete one (DELETE "
                "/api/v1/models/{name}) first."
            )

    def save(
        self,
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
        """Write the model under `name`, or under a free suffixed name if it was taken
        meanwhile; returns the name used. spec has every conv/dense weight filled in."""
        if not valid_name(name):
            raise ValueError(f"invalid model name {name!r}")
        arrays = weight_arrays(spec)
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            name = self.free_name(name)
            text = model_json(
                name,
                spec,
                description=description,
                labels=labels,
                accuracy=accuracy,
                test_split=test_split,
                dataset=dataset,
                command=command,
            ).encode("utf-8")
            json_path = self.directory / f"{name}.json"
            write_atomically(
                json_path.with_suffix(".npz"), lambda f: np.savez_compressed(f, **arrays)
            )
            write_atomically(json_path, lambda f: f.write(text))
        return name

    def delete(self, name: str) -> None:
        """Remove a saved model's files; ModelNotFoundError when there is none by that name."""
        path = self.directory / f"{name}.json"
        with self._lock:
            if not valid_name(name) or not path.exists():
                raise ModelNotFoundError(f"There is no trained model {name!r} to delete.")
            path.unlink()  # unlisted from here on
            path.with_suffix(".npz").unlink(missing_ok=True)
            self._cache.pop(name, None)


class ModelCatalog:
    """The shipped presets and the saved trained models, as one registry.

    Same interface as ModelRegistry above (names, list, get), so /forward and GET /models
    serve both kinds. A shipped name always wins (saving under one is refused anyway).
    """

    def __init__(self, shipped: ModelRegistry, saved: SavedModels) -> None:
        self.shipped = shipped
        self.saved = saved

    def list(self) -> list[PresetModel]:
        shipped = self.shipped.list()
        names = {m.name.casefold() for m in shipped}
        return shipped + [m for m in self.saved.list() if m.name.casefold() not in names]

    def names(self) -> list[str]:
        return [m.name for m in self.list()]

    def is_shipped(self, name: str) -> bool:
        return any(n.casefold() == name.casefold() for n in self.shipped.names())

    def get(self, name: str) -> PresetModel:
        """The model called name, or ModelNotFoundError (404) listing the available names."""
        if name in self.shipped.names():
            return self.shipped.get(name)
        found = self.saved.find(name)
        if found is not None:
            return found
        available = self.names()
        listed = ", ".join(available) if available else "none are installed"
        raise ModelNotFoundError(
            f"There is no model {name!r}. Available: {listed}. "
            "GET /api/v1/models lists them; or send your own network instead.",
            available=available,
        )

    def check_new_name(self, name: str, pending: set[str] = frozenset()) -> None:
        """ModelNameTakenError (409) when a shipped, saved or pending model has the name."""
        if self.is_shipped(name):
            raise ModelNameTakenError(
                f"{name!r} is the name of a model that ships with the server; choose another "
                f"name, such as {self.saved.free_name('my-' + name, pending)!r}."
            )
        if self.saved.taken(name) or name.casefold() in {p.casefold() for p in pending}:
            raise ModelNameTakenError(
                f"A trained model called {name!r} already exists (or is being trained); saved "
                f"models are never overwritten. Choose another name, such as "
                f"{self.saved.free_name(name, pending)!r}, or delete the old one first."
            )

    def delete(self, name: str) -> None:
        """Delete a trained model: ShippedModelError (403) for a shipped one, 404 if unknown."""
        if self.is_shipped(name):
            raise ShippedModelError(
                f"{name!r} ships with the server and cannot be deleted; only models trained "
                'here (source "trained" in GET /api/v1/models) can.'
            )
        self.saved.delete(name)
