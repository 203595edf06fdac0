"""Rebuild the shipped trained models in app/model_files/ from fixed seeds.

    python -m app.learning.recipes                # retrain every model and write its files
    python -m app.learning.recipes --only digits  # just one
    python -m app.learning.recipes --check        # retrain, compare accuracy with the json

Each model is `<name>.json` (architecture without weights, labels, test accuracy, data set, split,
this command) and `<name>.npz` (arrays `layers.<i>.weights` and `layers.<i>.bias`, float32), the
format that app/models.py loads.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.cnn.spec import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    InputSpec,
    NetworkSpec,
    PoolSpec,
)
from app.learning.datasets import Dataset, augment_digits, augment_shapes, load_digits, load_shapes
from app.learning.trainer import Augment, EpochReport, TrainConfig, TrainResult, evaluate, train
from app.storage.model_files import save_model

MODEL_DIR = Path(__file__).resolve().parents[1] / "model_files"
# Retraining on another machine may round differently in BLAS; accuracy must land this close.
CHECK_TOLERANCE = 0.01


@dataclass(frozen=True)
class Recipe:
    """Everything that makes one shipped model: data, architecture, training settings."""

    name: str
    description: str
    load: Callable[[], Dataset]
    spec: NetworkSpec
    config: TrainConfig
    augment: Augment | None = None


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="digits",
            description=(
                "A small CNN that reads one handwritten digit (0-9). Input 28x28 grey, WHITE ink "
                "on a BLACK background, pixels = value/255 (MNIST's convention; invert a dark-"
                "on-light drawing first). It works best when the digit is centred and about 20 "
                "of the 28 pixels tall with strokes about 2-3 pixels wide: draw on a black "
                "square canvas with a thick white pen, leaving a margin, or pass the drawing "
                "through app.learning.datasets.mnist_style. Trained on 4000 MNIST digits with "
                "random "
                "shifts, rotations, scales and thicker strokes."
            ),
            load=load_digits,
            spec=NetworkSpec(
                InputSpec(28, 28, 1),
                (
                    ConvSpec(16, 5, padding=2),
                    PoolSpec("max", 2),
                    ConvSpec(32, 5, padding=2),
                    PoolSpec("max", 2),
                    FlattenSpec(),
                    DenseSpec(10, "softmax"),
                ),
                seed=0,
            ),
            # Decoupled weight decay smooths the 5x5 filters into readable stroke detectors.
            config=TrainConfig(
                epochs=24, batch_size=32, learning_rate=2e-3, weight_decay=1.0, seed=0, workers=2
            ),
            augment=augment_digits,
        ),
        Recipe(
            name="shapes",
            description=(
                "A small CNN that names the shape in a 32x32 RGB image: circle, square, "
                "triangle, plus or cross (an x), of any colour on a noisy background of another "
                "colour. Its eight 5x5 first-layer filters are edge detectors you can read; a "
                "global max pool makes the answer independent of where the shape is. Trained on "
                "generated images (app.learning.datasets.make_shapes) mirrored left-right at "
                "random."
            ),
            load=load_shapes,
            spec=NetworkSpec(
                InputSpec(32, 32, 3),
                (
                    ConvSpec(8, 5, padding=2),
                    PoolSpec("max", 2),
                    ConvSpec(16, 3, padding=1),
                    PoolSpec("max", 2),
                    ConvSpec(32, 3, padding=1),
                    GlobalPoolSpec("max"),
                    FlattenSpec(),
                    DenseSpec(5, "softmax"),
                ),
                seed=0,
            ),
            # Strong decoupled weight decay wipes the random part of the He initialisation
            # out of the first-layer filters, leaving clean oriented brightness edges.
            config=TrainConfig(
                epochs=10, batch_size=32, learning_rate=3e-3, weight_decay=3.0, seed=0, workers=2
            ),
            augment=augment_shapes,
        ),
    )
}


def train_recipe(
    recipe: Recipe, on_epoch: Callable[[EpochReport], None] | None = None
) -> tuple[TrainResult, float, Dataset]:
    """Train one recipe from its seeds; returns the result, its test accuracy and the data."""
    data = recipe.load()
    result = train(
        recipe.spec,
        data.x_train,
        data.y_train,
        recipe.config,
        augment=recipe.augment,
        on_epoch=on_epoch,
    )
    accuracy = evaluate(result.spec, data.x_test, data.y_test).accuracy
    return result, accuracy, data


def _print_epoch(name: str) -> Callable[[EpochReport], None]:
    def report(e: EpochReport) -> None:
        print(
            f"  {name} epoch {e.epoch:2d}/{e.epochs}: loss {e.loss:.4f}, train accuracy "
            f"{e.accuracy:.4f}, {e.seconds:.1f} s ({e.images_per_second:.0f} images/s)",
            flush=True,
        )

    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.learning.recipes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", action="append", choices=sorted(RECIPES), help="model name")
    parser.add_argument("--out", type=Path, default=MODEL_DIR, help="directory for the files")
    parser.add_argument(
        "--check",
        action="store_true",
        help="retrain and compare test accuracy with the shipped json; write nothing",
    )
    args = parser.parse_args(argv)
    failures = 0
    for name in args.only or list(RECIPES):
        recipe = RECIPES[name]
        started = time.perf_counter()
        result, accuracy, data = train_recipe(recipe, _print_epoch(name))
        seconds = time.perf_counter() - started
        print(
            f"{name}: test accuracy {accuracy:.4f} on {len(data.y_test)} images ({seconds:.0f} s)"
        )
        if args.check:
            shipped = json.loads((args.out / f"{name}.json").read_text(encoding="utf-8"))
            gap = abs(accuracy - shipped["accuracy"])
            verdict = "ok" if gap <= CHECK_TOLERANCE else "DIFFERS"
            print(f"{name}: shipped {shipped['accuracy']:.4f}, retrained {accuracy:.4f}: {verdict}")
            failures += verdict != "ok"
            continue
        save_model(
            args.out,
            name,
            result.spec,
            description=recipe.description,
            labels=list(data.labels),
            accuracy=accuracy,
            test_split=data.split,
            dataset=data.description,
            command=f"python -m app.learning.recipes --only {name}",
        )
        print(f"{name}: wrote {args.out / name}.json and .npz")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
