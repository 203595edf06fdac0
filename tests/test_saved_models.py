"""Models trained here: written atomically, listed, loaded with their exact weights, never
overwritten, deletable, and still there for a new process; shipped names stay protected."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from app.cnn import build_network
from app.cnn.spec import ConvSpec, DenseSpec, FlattenSpec, InputSpec, NetworkSpec, PoolSpec
from app.errors import ModelNotFoundError
from app.learning.recipes import MODEL_DIR
from app.storage.model_files import write_atomically
from app.storage.models import (
    ModelCatalog,
    ModelNameTakenError,
    ModelRegistry,
    SavedModels,
    SavedModelsFullError,
    ShippedModelError,
    valid_name,
)

ARCH = NetworkSpec(
    InputSpec(8, 8, 1),
    (ConvSpec(2, 3, padding=1), PoolSpec("max", 2), FlattenSpec(), DenseSpec(3, "softmax")),
    seed=4,
)


def trained_spec(seed: int = 0) -> NetworkSpec:
    """ARCH with every weight filled in (as the trainer returns it), from `seed`."""
    rng = np.random.default_rng(seed)
    conv = ConvSpec(
        2,
        3,
        padding=1,
        weights=rng.normal(size=(2, 3, 3, 1)).astype(np.float32),
        bias=rng.normal(size=2).astype(np.float32),
    )
    dense = DenseSpec(
        3,
        "softmax",
        weights=rng.normal(size=(3, 32)).astype(np.float32),
        bias=rng.normal(size=3).astype(np.float32),
    )
    return NetworkSpec(ARCH.input, (conv, ARCH.layers[1], ARCH.layers[2], dense), seed=4)


def save(store: SavedModels, name: str, seed: int = 0, accuracy: float = 0.5) -> str:
    return store.save(
        name,
        trained_spec(seed),
        description=f"test model {seed}",
        labels=["a", "b", "c"],
        accuracy=accuracy,
        test_split="a split",
        dataset="a data set",
        command="a command",
    )


def test_a_saved_model_loads_back_with_its_exact_weights_and_metadata(tmp_path: Path) -> None:
    store = SavedModels(tmp_path / "models")
    assert store.list() == [] and not (tmp_path / "models").exists()  # made on the first save
    assert save(store, "mine", seed=3, accuracy=0.123456) == "mine"
    (model,) = store.list()
    assert model.name == "mine" and model.labels == ["a", "b", "c"]
    info = model.info()
    assert info.source == "trained" and info.accuracy == 0.1235 and info.command == "a command"
    assert info.network.layers[0].weights is None  # the listing shows the architecture only
    want = trained_spec(3)
    np.testing.assert_array_equal(model.network.layers[0].weights, want.layers[0].weights)
    np.testing.assert_array_equal(model.network.layers[3].bias, want.layers[3].bias)
    x = np.random.default_rng(0).random((8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(
        model.network.forward(x)[-1], build_network(want).forward(x)[-1], rtol=1e-6
    )
    files = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert files == ["mine.json", "mine.npz"]  # no temporary file left behind


def test_the_files_are_the_shipped_format(tmp_path: Path) -> None:
    store = SavedModels(tmp_path)
    save(store, "fmt")
    record = json.loads((tmp_path / "fmt.json").read_text())
    shipped = json.loads((MODEL_DIR / "digits.json").read_text())
    assert set(record) == set(shipped)
    assert "weights" not in json.dumps(record["network"])
    with np.load(tmp_path / "fmt.npz") as arrays:
        assert sorted(arrays.files) == [
            "layers.0.bias",
            "layers.0.weights",
            "layers.3.bias",
            "layers.3.weights",
        ]
        assert arrays["layers.0.weights"].dtype == np.float32
    # The shipped-model registry reads it as one of its own.
    assert ModelRegistry(tmp_path).names() == ["fmt"]


def test_a_taken_name_is_never_overwritten(tmp_path: Path) -> None:
    store = SavedModels(tmp_path)
    save(store, "same", seed=1)
    before = (tmp_path / "same.npz").read_bytes()
    assert save(store, "same", seed=2) == "same-2"
    assert save(store, "SAME", seed=3) == "SAME-3"  # names differ only in case: still taken
    assert (tmp_path / "same.npz").read_bytes() == before
    assert {m.name for m in store.list()} == {"same", "same-2", "SAME-3"}
    assert store.free_name("same") == "same-4"
    assert store.free_name("other", also_taken={"Other"}) == "other-2"


def test_delete_removes_both_files_and_unknown_names_are_404(tmp_path: Path) -> None:
    store = SavedModels(tmp_path)
    save(store, "gone")
    save(store, "kept")
    store.delete("gone")
    assert [m.name for m in store.list()] == ["kept"]
    assert not (tmp_path / "gone.json").exists() and not (tmp_path / "gone.npz").exists()
    with pytest.raises(ModelNotFoundError, match="'gone'"):
        store.delete("gone")
    with pytest.raises(ModelNotFoundError):
        store.delete("../kept")
    assert (tmp_path / "kept.json").exists()


def test_models_survive_a_new_store_on_the_same_directory(tmp_path: Path) -> None:
    save(SavedModels(tmp_path), "lasting", seed=5)
    again = SavedModels(tmp_path)
    (model,) = again.list()
    want = trained_spec(5).layers[0].weights
    np.testing.assert_array_equal(model.network.layers[0].weights, want)


def test_a_model_saved_by_another_process_appears_and_a_rewritten_one_is_reread(
    tmp_path: Path,
) -> None:
    here, there = SavedModels(tmp_path), SavedModels(tmp_path)
    assert here.list() == []
    save(there, "shared", seed=1)
    assert [m.name for m in here.list()] == ["shared"]
    there.delete("shared")
    assert here.list() == [] and here.find("shared") is None


def test_an_interrupted_write_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "half.json"

    def fail(f) -> None:
        f.write(b'{"name": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fail)
    assert list(tmp_path.iterdir()) == []


def test_a_model_without_weights_is_refused_before_any_file_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trained weights"):
        SavedModels(tmp_path).save(
            "bare",
            ARCH,
            description="",
            labels=None,
            accuracy=None,
            test_split=None,
            dataset=None,
            command=None,
        )
    assert list(tmp_path.iterdir()) == []


def test_old_temporary_files_are_swept_and_fresh_ones_kept(tmp_path: Path) -> None:
    old, fresh = tmp_path / ".a.json.x1.tmp", tmp_path / ".b.npz.x2.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    an_hour_ago = time.time() - 2 * 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    SavedModels(tmp_path)
    assert not old.exists() and fresh.exists()


def test_a_damaged_file_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SavedModels(tmp_path)
    save(store, "good")
    (tmp_path / "broken.json").write_text('{"name": "broken"')
    with caplog.at_level(logging.WARNING, logger="cnn_explorer"):
        assert [m.name for m in store.list()] == ["good"]
    assert "broken.json" in caplog.text


def test_unsafe_names_are_not_valid() -> None:
    for name in ("ok", "my-digits_2", "A" * 64):
        assert valid_name(name)
    for name in ("", "-x", "a/b", "..", "a.b", "a b", "é", "A" * 65):
        assert not valid_name(name)


def test_the_store_refuses_more_than_its_limit(tmp_path: Path) -> None:
    store = SavedModels(tmp_path, max_models=2)
    save(store, "one")
    store.check_room()
    with pytest.raises(SavedModelsFullError, match="1 more being trained"):
        store.check_room(pending=1)
    save(store, "two")
    with pytest.raises(SavedModelsFullError, match="Delete one"):
        store.check_room()


@pytest.fixture
def catalog(tmp_path: Path) -> ModelCatalog:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for suffix in (".json", ".npz"):
        shutil.copy(MODEL_DIR / f"digits{suffix}", shipped / f"digits{suffix}")
    return ModelCatalog(ModelRegistry(shipped), SavedModels(tmp_path / "saved"))


def test_the_catalog_lists_shipped_then_trained_and_finds_both(catalog: ModelCatalog) -> None:
    save(catalog.saved, "mine")
    assert [(m.name, m.info().source) for m in catalog.list()] == [
        ("digits", "shipped"),
        ("mine", "trained"),
    ]
    assert catalog.get("digits").network.input_shape == (28, 28, 1)
    assert catalog.get("mine").network.input_shape == (8, 8, 1)
    with pytest.raises(ModelNotFoundError, match="Available: digits, mine") as found:
        catalog.get("nope")
    assert found.value.extra["available"] == ["digits", "mine"]


def test_the_catalog_protects_shipped_names_and_taken_ones(catalog: ModelCatalog) -> None:
    save(catalog.saved, "mine")
    with pytest.raises(ModelNameTakenError, match="ships with the server"):
        catalog.check_new_name("Digits")
    with pytest.raises(ModelNameTakenError, match="'mine-2'"):
        catalog.check_new_name("mine")
    with pytest.raises(ModelNameTakenError, match="being trained"):
        catalog.check_new_name("next", pending={"NEXT"})
    catalog.check_new_name("free")
    with pytest.raises(ShippedModelError, match="cannot be deleted"):
        catalog.delete("digits")
    assert catalog.get("digits").name == "digits"
    catalog.delete("mine")
    with pytest.raises(ModelNotFoundError):
        catalog.delete("mine")
