"""Every limit and knob of the server, read from CNN_EXPLORER_* environment variables.

Each field's description is the documentation (docs/settings.md is generated from these by
docs/settings_table.py), so say what the limit protects and what a person sees when they hit it.
"""

from __future__ import annotations

import multiprocessing
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024
_APP_DIR = Path(__file__).resolve().parent
_REPO_DIR = _APP_DIR.parent


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/cnn-explorer, else ~/.local/share/cnn-explorer."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cnn-explorer"


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def server_processes(workers: int) -> int:
    """How many server processes share this machine: the workers setting, uvicorn's and
    gunicorn's WEB_CONCURRENCY, or at least 2 when this process was spawned by a supervisor
    (uvicorn --workers N runs each worker as a multiprocessing child and says not how many; a
    lone server has no parent process)."""
    declared = os.environ.get("WEB_CONCURRENCY", "")
    count = max(workers, int(declared) if declared.isdigit() else 1)
    if count == 1 and multiprocessing.parent_process() is not None:
        count = 2
    return count


class Settings(BaseSettings):
    """Server settings; each can be set with the environment variable CNN_EXPLORER_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="CNN_EXPLORER_", extra="ignore")

    # -- serving -------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `cnn-explorer` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port `cnn-explorer` listens on.")
    workers: int = Field(
        1,
        ge=1,
        description=(
            "Uvicorn worker processes. Any worker may be asked for a run another one made, so "
            "with more than one the runs must be in a shared store: run_store `auto` (the "
            "default) then keeps them on disk; `memory` would answer 404 for them."
        ),
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info", description="Uvicorn and application log level."
    )

    # -- uploads -------------------------------------------------------------------------------
    max_upload_bytes: int = Field(
        10 * MB,
        ge=1,
        description=(
            "Largest image file accepted by POST /api/v1/forward, in bytes (default 10 MiB). "
            "Bigger files get 413 before they are decoded."
        ),
    )
    max_image_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description=(
            "Largest image accepted, in pixels (width x height, default 4096x4096 = 16.8 "
            "million), read from the file header before any pixel is decoded; bigger images "
            "(decompression bombs included) get 413. Accepted images are then resized to the "
            "network's input size, which max_input_side bounds."
        ),
    )
    max_network_bytes: int = Field(
        8 * MB,
        ge=1024,
        description=(
            "Largest network spec accepted, in bytes of JSON (default 8 MiB), including inline "
            "weights: the JSON body of /shapes, or the `network` form field of /forward."
        ),
    )

    # -- networks ------------------------------------------------------------------------------
    max_input_side: int = Field(
        512,
        ge=1,
        description=(
            "Largest network input height or width in pixels (default 512). Images of any "
            "accepted size are resized to the input size, so this bounds the work per layer."
        ),
    )
    max_layers: int = Field(32, ge=1, description="Most layers in one network (default 32).")
    max_filters: int = Field(
        256, ge=1, description="Most filters (output channels) in one conv layer (default 256)."
    )
    max_kernel_size: int = Field(
        15, ge=1, description="Largest conv or pooling window side F (default 15)."
    )
    max_units: int = Field(4096, ge=1, description="Most units in one dense layer (default 4096).")
    max_activation_bytes: int = Field(
        256 * MB,
        ge=1,
        description=(
            "Largest memory one forward pass may need, estimated from the shapes: 4 bytes per "
            "float32 value of the input and every layer's output, plus the largest working "
            "buffer (default 256 MiB). A network over it is refused with 422 (and /shapes "
            "says valid=false) before any array is allocated."
        ),
    )
    max_params: int = Field(
        20_000_000,
        ge=1,
        description=(
            "Most learnable parameters in one network (default 20 million = 80 MB of float32 "
            "weights); more is refused with 422 (/shapes says valid=false)."
        ),
    )
    max_multiply_adds: int = Field(
        20_000_000_000,
        ge=1,
        description=(
            "Most multiply-adds of one forward pass (conv Ho*Wo*K*F*F*C, dense units*inputs; "
            "default 20 billion, tens of seconds of CPU at worst); more is refused with 422."
        ),
    )
    max_output_values: int = Field(
        4096,
        ge=1,
        description=(
            "Most values of the last layer returned inline in the /forward reply's "
            "output.values (default 4096); the full array is always at its .npy URL."
        ),
    )

    # -- runs and rendering --------------------------------------------------------------------
    run_store: str = Field(
        "auto",
        pattern=r"^(auto|memory|disk|disk://.+|rediss?://.+|unix://.+)$",
        description=(
            "Where runs are kept between /forward and the requests for their images: `memory` "
            "(this process only: one worker), `disk` (files under data_dir/runs, shared by the "
            "workers of one machine; `disk:///path` for another directory), or a Redis URL "
            "such as `redis://host:6379/0` (shared by several machines; give each deployment "
            "its own database number). `auto` (default) is `memory` for one server process and "
            "`disk` for more: workers > 1, WEB_CONCURRENCY > 1, or a process started by "
            "`uvicorn --workers`. Under gunicorn with -w, set `disk` yourself."
        ),
    )
    run_store_max_bytes: int = Field(
        512 * MB,
        ge=1,
        description=(
            "Space for kept runs, in bytes (default 512 MiB): the input image plus every "
            "layer's output; in the disk and Redis stores also each network's weights, stored "
            "once for all its runs; and the gradients of each (run, target, loss) asked of the "
            "backward pass (/gradients, its maps, arrays and explanations, /step), computed once "
            "and kept with their run. When full, the least recently used runs are dropped first, "
            "with their gradients; their URLs then answer 404. A run's gradients that do not fit "
            "beside it are not kept but computed for each request."
        ),
    )
    run_ttl_seconds: float = Field(
        3600,
        gt=0,
        description=(
            "How long a run is kept after its last use, in seconds (default 3600 = 60 minutes). "
            "Afterwards its URLs answer 404 and the image must be sent again."
        ),
    )
    render_cache_max_bytes: int = Field(
        64 * MB,
        ge=0,
        description=(
            "Memory for rendered PNGs of layers and channels, and each layer's colour indices "
            "(one byte a value), in bytes (default 64 MiB); least recently used entries are "
            "dropped first and re-rendered on request. 0 disables it."
        ),
    )

    # -- CPU work and overload -------------------------------------------------------------------
    cpu_workers: int = Field(
        # `workers` is declared above, so it is already validated here.
        default_factory=lambda data: max(1, cpu_cores() // server_processes(data["workers"])),
        ge=1,
        description=(
            "Threads doing the server's CPU work (decoding uploads, forward passes, rendering "
            "PNGs, .npy files and explanations) at once, in each worker process (default: the "
            "CPU cores this process may use, divided among the server's processes: `workers`, "
            "WEB_CONCURRENCY, or at least 2 under `uvicorn --workers`; at least 1). Further "
            "requests wait in the cpu_queue."
        ),
    )
    cpu_queue: int = Field(
        16,
        ge=0,
        description=(
            "Requests that may wait for a free CPU worker (default 16). When cpu_workers + "
            "cpu_queue requests are already in, the next one gets 503 with a Retry-After header "
            "at once instead of piling up; health checks never wait."
        ),
    )
    cpu_time_budget_seconds: float = Field(
        60,
        gt=0,
        description=(
            "How long one request may wait for its CPU work, time in the queue included (default "
            "60 s). Work that never started is dropped and answered 503 (busy); work still "
            "running gets 504. A running NumPy call cannot be interrupted: it finishes in the "
            "background, keeps its worker busy until then, and its result is thrown away."
        ),
    )
    blas_threads: int = Field(
        1,
        ge=0,
        description=(
            "Threads each BLAS matrix product (conv and dense layers) may use (default 1: "
            "requests run side by side, one core each, which measured faster under concurrent "
            "load than letting every product use all cores). 0 leaves the BLAS library's own "
            "default."
        ),
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins whose pages may call the API from a browser (CORS), as a JSON list, e.g. "
            '["https://example.org"] (default: none; only pages served by this server can).'
        ),
    )

    # -- training ------------------------------------------------------------------------------
    train_max_jobs: int = Field(
        1,
        ge=1,
        description=(
            "Training jobs (POST /api/v1/train) that may run at once, each on its own thread "
            "outside the request workers (default 1). Another start gets 429 with Retry-After."
        ),
    )
    train_threads: int = Field(
        0,
        ge=0,
        description=(
            "Cores one training job splits each batch between: the job's thread and worker "
            "processes for the other shares (default 0: up to 2 cores). Use 1 to leave the "
            "other cores to requests while a job trains."
        ),
    )
    train_max_epochs: int = Field(50, ge=1, description="Most epochs one job may ask for.")
    train_max_batch_size: int = Field(
        512, ge=1, description="Largest batch size a job may ask for (default 512)."
    )
    train_max_learning_rate: float = Field(
        1.0,
        gt=0,
        description=(
            "Largest learning rate a training job, or one step of POST "
            "/api/v1/runs/{run_id}/step, may ask for (default 1.0)."
        ),
    )
    visualise_max_steps: int = Field(
        128,
        ge=1,
        description=(
            "Most gradient-ascent steps one feature visualisation "
            "(GET /api/v1/runs/{run_id}/layers/{i}/visualise) may ask for (default 128): each "
            "step is a forward and a backward pass of the network, on the CPU pool."
        ),
    )
    train_max_examples: int = Field(
        0,
        ge=0,
        description=(
            "Most training images a job uses, and most test images it is scored on (a seeded "
            "sample; default 0 = all: 4000 of each data set, 1000 held out). A job's status "
            "says how many it used."
        ),
    )
    train_max_seconds: float = Field(
        1800,
        gt=0,
        description=(
            "Longest a job may train, in seconds (default 1800). It then stops at the next "
            "batch and saves the weights reached, saying so in its status."
        ),
    )
    train_jobs_kept: int = Field(
        20,
        ge=1,
        description=(
            "Finished training jobs whose status stays available (default 20), as small files "
            "in data_dir/jobs that every worker process reads."
        ),
    )
    max_saved_models: int = Field(
        50,
        ge=1,
        description=(
            "Most models trained here kept in data_dir/models (default 50); a job that would "
            "save one more is refused with 409 until one is deleted."
        ),
    )

    # -- files ---------------------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description=(
            "Directory for data the server writes (default $XDG_DATA_HOME/cnn-explorer or "
            "~/.local/share/cnn-explorer)."
        ),
    )
    models_dir: Path = Field(
        _APP_DIR / "model_files",
        description=(
            "Directory of preset models (`<name>.json`, optional `<name>.npz`) listed by "
            "GET /api/v1/models (default app/model_files). A missing directory means no models."
        ),
    )
    templates_dir: Path = Field(
        _REPO_DIR / "templates", description="Jinja templates of the web page (index.html)."
    )
    static_dir: Path = Field(
        _REPO_DIR / "static", description="Static files (JS, CSS) served under /static."
    )

    def public_limits(self) -> dict[str, int | float]:
        """The limits a page or client needs to know before sending anything."""
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_image_pixels": self.max_image_pixels,
            "max_network_bytes": self.max_network_bytes,
            "max_input_side": self.max_input_side,
            "max_layers": self.max_layers,
            "max_filters": self.max_filters,
            "max_kernel_size": self.max_kernel_size,
            "max_units": self.max_units,
            "max_activation_bytes": self.max_activation_bytes,
            "max_params": self.max_params,
            "max_multiply_adds": self.max_multiply_adds,
            "run_ttl_seconds": self.run_ttl_seconds,
            "train_max_epochs": self.train_max_epochs,
            "train_max_batch_size": self.train_max_batch_size,
            "train_max_learning_rate": self.train_max_learning_rate,
            "train_max_examples": self.train_max_examples,
            "visualise_max_steps": self.visualise_max_steps,
        }


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (a FastAPI dependency; create_app overrides it per app)."""
    return Settings()
