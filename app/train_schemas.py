"""The API's vocabulary for training on the server (POST /api/v1/train and the job replies).

Kept next to app/schemas.py rather than in it so the two can change independently; the network
itself is app.schemas.NetworkSpecModel, as everywhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import NAME_PATTERN, Int, NetworkSpecModel, PositiveInt

JobState = Literal["queued", "running", "done", "cancelled", "failed"]
FINAL_STATES: frozenset[str] = frozenset({"done", "cancelled", "failed"})
SGD_MOMENTUM = 0.9  # SGD's momentum when a request names none


class TrainRequest(BaseModel):
    """Train a network on one of the server's data sets; the finished model is saved by name."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "network": {
                        "input": {"height": 28, "width": 28, "channels": 1},
                        "seed": 0,
                        "layers": [
                            {"type": "conv", "filters": 8, "kernel_size": 3, "padding": 1},
                            {"type": "maxpool", "size": 2},
                            {"type": "flatten"},
                            {"type": "dense", "units": 10, "activation": "softmax"},
                        ],
                    },
                    "dataset": "digits",
                    "epochs": 3,
                    "batch_size": 32,
                    "learning_rate": 0.002,
                    "optimizer": "adam",
                    "name": "my-digits",
                    "seed": 0,
                }
            ]
        },
    )

    network: NetworkSpecModel = Field(
        description="The architecture to train. Its input must be the data set's image size and "
        "its last layer a dense layer with one unit per class and softmax. Inline weights and "
        "bias are ignored: training starts from the seeded initialisation."
    )
    dataset: Literal["digits", "shapes"] = Field(
        description='"digits": MNIST handwritten digits, 28x28x1, 10 classes; "shapes": '
        "generated shapes, 32x32x3, 5 classes."
    )
    epochs: Int = Field(5, ge=1, description="Passes over the training images (<= the limit).")
    batch_size: Int = Field(32, ge=1, description="Images per optimisation step (<= the limit).")
    learning_rate: float = Field(
        0.001,
        gt=0,
        description="Step size at the start; the cosine schedule lowers it to 0 by the end.",
    )
    optimizer: Literal["adam", "sgd"] = Field("adam", description="Adam, or SGD with momentum.")
    momentum: float | None = Field(
        None,
        ge=0,
        lt=1,
        description=f"SGD's momentum (default {SGD_MOMENTUM:g}); not used by Adam.",
    )
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="Learning rate over the run: cosine decay to 0, or constant."
    )
    max_examples: PositiveInt | None = Field(
        None,
        description="Train on at most this many images (a seeded sample; the test set is cut "
        "the same way); null = as many as the server allows (train_max_examples).",
    )
    name: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="Name to save the model under (letters, digits, - and _; at most 64). A "
        "taken name is refused (409); null picks a free one such as my-digits-2.",
    )
    seed: Int = Field(0, ge=0, description="Seed of the shuffling and the data sample.")

    @property
    def sgd_momentum(self) -> float:
        """The momentum SGD trains with: the one asked for, else SGD_MOMENTUM."""
        return SGD_MOMENTUM if self.momentum is None else self.momentum


class EpochPoint(BaseModel):
    epoch: int = Field(description="1-based epoch number.")
    loss: float = Field(description="Mean training loss (cross-entropy) over the epoch.")
    accuracy: float = Field(description="Training accuracy over the epoch, 0..1.")
    test_loss: float | None = Field(description="Loss on the held-out images after the epoch.")
    test_accuracy: float | None = Field(description="Accuracy on the held-out images, 0..1.")
    seconds: float = Field(description="Time the epoch took.")


class TrainConfigInfo(BaseModel):
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: Literal["adam", "sgd"]
    momentum: float | None = Field(description="SGD's momentum; null for Adam.")
    schedule: Literal["cosine", "constant"]
    seed: int

    @classmethod
    def of(cls, request: TrainRequest) -> TrainConfigInfo:
        """What a job trains with: the request's settings, its defaults filled in."""
        return cls(
            epochs=request.epochs,
            batch_size=request.batch_size,
            learning_rate=request.learning_rate,
            optimizer=request.optimizer,
            momentum=request.sgd_momentum if request.optimizer == "sgd" else None,
            schedule=request.schedule,
            seed=request.seed,
        )


class TrainStatus(BaseModel):
    """Where one training job is; the same in GET /train/{id} and in each server-sent event."""

    job_id: str
    status: JobState = Field(
        description="queued -> running -> done | cancelled | failed (the last three are final)."
    )
    message: str | None = Field(
        description="What happened, in words (why it failed, where the model went, why it stopped)."
    )
    dataset: Literal["digits", "shapes"]
    labels: list[str] = Field(description="The data set's class names.")
    network: NetworkSpecModel = Field(description="The architecture being trained.")
    config: TrainConfigInfo
    train_examples: int = Field(description="Training images used (after any cap).")
    test_examples: int = Field(description="Held-out images the test accuracy is measured on.")
    available_examples: int = Field(description="Training images the data set has in all.")
    epoch: int = Field(description="Epochs finished.")
    epochs: int = Field(description="Epochs asked for.")
    step: int = Field(description="Optimisation steps (batches) done.")
    total_steps: int = Field(description="Steps in the whole run: epochs * ceil(images/batch).")
    loss: float | None = Field(description="Loss of the last batch.")
    history: list[EpochPoint] = Field(description="One entry per finished epoch.")
    batch_losses: list[tuple[int, float]] = Field(
        description="[step, loss] samples of the per-batch loss, evenly thinned to at most a "
        "few hundred."
    )
    final_accuracy: float | None = Field(
        description="Test accuracy of the saved weights, 0..1 (null until saved)."
    )
    saved_model: str | None = Field(
        description="Name of the saved model (in GET /api/v1/models and usable as `model` in "
        "POST /api/v1/forward), or null."
    )
    created: float = Field(description="When the job was accepted (Unix seconds).")
    started: float | None = Field(description="When training began (Unix seconds).")
    finished: float | None = Field(description="When the job ended (Unix seconds).")
    elapsed_seconds: float = Field(description="Seconds from start to end (or to now).")
    status_url: str
    events_url: str
    cancel_url: str


class TrainStarted(BaseModel):
    """202 reply of POST /train: where to follow the job."""

    job_id: str
    status_url: str = Field(description="GET it for the job's TrainStatus.")
    events_url: str = Field(
        description="GET it as text/event-stream: a `progress` event with a TrainStatus on "
        "every change, an `end` event with the final one, then the stream closes."
    )
    cancel_url: str = Field(description="POST to it to stop the job.")
    status: TrainStatus


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    save: bool = Field(
        False,
        description="Save the weights reached so far (status ends cancelled, with saved_model "
        "set and the test accuracy measured); false throws them away.",
    )
