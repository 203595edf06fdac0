"""Training speed: one mini-batch step (forward, backward, Adam update) of the NumPy trainer
against PyTorch CPU on the same network, the same weights and the same batch.

    python -m tests.bench.bench_training [--quick] [--threads N] [--unset-openblas-env]

Prints a table of median step times and images per second, side by side, measured in
interleaved blocks (tests/bench/timing.py). Target: NumPy at most 2x slower than PyTorch.
`run_training(torch, plan)` returns the rows for tests/bench/run.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np

from tests.bench import environment
from tests.bench.report import Report, Row, format_report
from tests.bench.timing import FULL_PLAN, QUICK_PLAN, TimingPlan, measure

TARGET = 2.0
LEARNING_RATE = 1e-3

# Each block warms up this long before it is timed, so that it measures the steady rate of a
# training run, which steps without pause. The NumPy trainer hands each step's second share to a
# worker thread that blocks in between; after the plan's settle sleep this VM (KVM) wakes that
# thread slowly for the first ~50 ms (its halt polling has shrunk while idle): measured here,
# steps 1-6 after a 0.15 s sleep took 8-9 ms, the rest 5 ms. PyTorch's OpenMP threads spin
# instead of blocking and barely notice. Both contenders get the same warm-up.
TRAINING_WARMUP_S = 0.2


@dataclass(frozen=True)
class TrainingWorkload:
    name: str
    recipe: str  # a model in app.learning.recipes.RECIPES: its architecture and input size
    batch: int


TRAINING_WORKLOADS = (
    TrainingWorkload("train_digits_b32", "digits", 32),
    TrainingWorkload("train_digits_b128", "digits", 128),
    TrainingWorkload("train_shapes_b32", "shapes", 32),
    TrainingWorkload("train_shapes_b128", "shapes", 128),
)


def torch_model(net: Any, torch: ModuleType) -> Any:
    """The Network's layers as a torch.nn.Sequential with copies of its weights (NCHW).

    FlattenLayer first moves channels last, so dense weights keep the engine's (y, x, c) order.
    """
    from app.cnn.layers import (
        AvgPoolLayer,
        ConvLayer,
        DenseLayer,
        FlattenLayer,
        GlobalAvgPoolLayer,
        GlobalMaxPoolLayer,
        MaxPoolLayer,
        ReluLayer,
    )

    nn = torch.nn
    modules: list[Any] = []
    for layer in net.layers:
        if isinstance(layer, ConvLayer):
            k, f, _, c = layer.params["weights"].shape
            conv = nn.Conv2d(c, k, f, stride=layer.stride, padding=layer.padding)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(layer.params["weights"].transpose(0, 3, 1, 2)))
                conv.bias.copy_(torch.from_numpy(layer.params["bias"]))
            modules += [conv, nn.ReLU()] if layer.relu else [conv]
        elif isinstance(layer, DenseLayer):
            units, inputs = layer.params["weights"].shape
            dense = nn.Linear(inputs, units)
            with torch.no_grad():
                dense.weight.copy_(torch.from_numpy(layer.params["weights"]))
                dense.bias.copy_(torch.from_numpy(layer.params["bias"]))
            modules += [dense, nn.ReLU()] if layer.activation == "relu" else [dense]
        elif isinstance(layer, ReluLayer):
            modules.append(nn.ReLU())
        elif isinstance(layer, MaxPoolLayer):
            modules.append(nn.MaxPool2d(layer.size, layer.stride, layer.padding))
        elif isinstance(layer, AvgPoolLayer):
            modules.append(nn.AvgPool2d(layer.size, layer.stride, layer.padding))
        elif isinstance(layer, GlobalMaxPoolLayer):
            modules.append(nn.AdaptiveMaxPool2d(1))
        elif isinstance(layer, GlobalAvgPoolLayer):
            modules.append(nn.AdaptiveAvgPool2d(1))
        elif isinstance(layer, FlattenLayer):
            modules += [_ChannelsLast(torch), nn.Flatten()]
        else:
            raise TypeError(f"no PyTorch counterpart for {type(layer).__name__}")
    return nn.Sequential(*modules)


def _ChannelsLast(torch: ModuleType) -> Any:  # noqa: N802 - a module factory
    class ChannelsLast(torch.nn.Module):
        def forward(self, t: Any) -> Any:
            return t.permute(0, 2, 3, 1) if t.dim() == 4 else t

    return ChannelsLast()


def _steps(
    workload: TrainingWorkload, torch: ModuleType, workers: int | None = None
) -> tuple[Callable, Callable, float, Any]:
    """(numpy_step, torch_step, relative difference of the first step's loss, the NumPy net)."""
    from app.cnn.layers import softmax_cross_entropy
    from app.cnn.network import build_network
    from app.learning.optim import Adam
    from app.learning.parallel import DataParallel, default_workers
    from app.learning.recipes import RECIPES
    from app.learning.trainer import train_step

    spec = RECIPES[workload.recipe].spec
    net = DataParallel(build_network(spec), default_workers() if workers is None else workers)
    model = torch_model(net.net, torch)
    rng = np.random.default_rng(0)
    h, w, c = net.net.input_shape
    x = rng.random((workload.batch, h, w, c), dtype=np.float32)  # (B, H, W, C)
    y = rng.integers(0, net.net.n_classes, workload.batch)
    x_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # (B, C, H, W)
    y_t = torch.from_numpy(y)

    numpy_loss = softmax_cross_entropy(net.net.logits(x), y)[0]
    with torch.no_grad():
        torch_loss = float(torch.nn.functional.cross_entropy(model(x_t), y_t))
    agreement = abs(numpy_loss - torch_loss) / abs(torch_loss)

    adam = Adam(net.net.param_groups(), learning_rate=LEARNING_RATE)
    torch_adam = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def numpy_step() -> None:
        train_step(net, adam, x, y)  # what app.learning.trainer.train does per batch

    def torch_step() -> None:
        torch_adam.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x_t), y_t).backward()
        torch_adam.step()

    return numpy_step, torch_step, agreement, net


def run_training(torch: ModuleType, plan: TimingPlan, workers: int | None = None) -> list[Row]:
    """One row per workload: NumPy step time vs PyTorch step time (ratio <= TARGET to pass).

    workers : NumPy worker threads (None = what train() uses by default); PyTorch keeps the
    thread count it was given.
    """
    from app.learning.parallel import blas_single_threaded

    plan = replace(plan, warmup_s=max(plan.warmup_s, TRAINING_WARMUP_S))
    rows = []
    for workload in TRAINING_WORKLOADS:
        numpy_step, torch_step, agreement, net = _steps(workload, torch, workers)
        # As in train(): NumPy's BLAS on one thread while worker threads share the batch (this
        # leaves PyTorch's own OpenMP threads alone). One worker gets one BLAS thread too.
        with blas_single_threaded(net.workers > 1 or workers == 1):
            result = measure({"numpy": numpy_step, "torch": torch_step}, plan)
        net.close()
        numpy_ms = result.stats["numpy"].median_ms
        torch_ms = result.stats["torch"].median_ms
        rows.append(
            Row(
                group="training",
                name=workload.name,
                subject="numpy",
                baseline="torch",
                subject_stats=result.stats["numpy"],
                baseline_stats=result.stats["torch"],
                ratio=result.ratio("numpy", "torch"),
                target=TARGET,
                note=(
                    f"{workload.recipe} net, batch {workload.batch}, Adam step, "
                    f"{net.workers} NumPy worker(s): "
                    f"{workload.batch / numpy_ms * 1e3:.0f} vs "
                    f"{workload.batch / torch_ms * 1e3:.0f} images/s; "
                    f"first-loss rel diff {agreement:.1e}"
                ),
                extra={
                    "numpy_images_per_s": workload.batch / numpy_ms * 1e3,
                    "torch_images_per_s": workload.batch / torch_ms * 1e3,
                    "loss_rel_diff": agreement,
                    "numpy_workers": net.workers,
                },
            )
        )
    return rows


def run_parallel_modes(torch: ModuleType, plan: TimingPlan) -> Row:
    """Informational: the digits batch-128 step with its second share in a worker process (what
    train() does) against the same in a worker thread, interleaved like the rows above."""
    from app.learning.parallel import blas_single_threaded

    workload = next(w for w in TRAINING_WORKLOADS if w.name == "train_digits_b128")
    plan = replace(plan, warmup_s=max(plan.warmup_s, TRAINING_WARMUP_S))
    steps = {}
    nets = []
    for parallel in ("processes", "threads"):
        step, _, _, net = _steps(workload, torch, workers=2)
        net.mode = parallel
        steps[parallel], nets = step, [*nets, net]
    with blas_single_threaded(True):
        result = measure(steps, plan)
    for net in nets:
        net.close()
    ms = {name: result.stats[name].median_ms for name in steps}
    return Row(
        group="training",
        name="train_digits_b128_processes_vs_threads",
        subject="processes",
        baseline="threads",
        subject_stats=result.stats["processes"],
        baseline_stats=result.stats["threads"],
        ratio=result.ratio("processes", "threads"),
        target=None,
        note=(
            f"digits net, batch 128, the second share in a worker process vs a worker thread: "
            f"{workload.batch / ms['processes'] * 1e3:.0f} vs "
            f"{workload.batch / ms['threads'] * 1e3:.0f} images/s"
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_training", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for both sides: NumPy workers and torch.set_num_threads (default: the "
        "cores NumPy's BLAS uses, and train()'s default workers); 1 is the least load-sensitive",
    )
    parser.add_argument(
        "--unset-openblas-env",
        action="store_true",
        help="rerun without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (default: leave them as set)",
    )
    args = parser.parse_args(argv)
    if args.unset_openblas_env:
        environment.rerun_without_openblas_tuning("tests.bench.bench_training", argv)
    try:
        import torch
    except ImportError as error:
        print(f"PyTorch is not installed ({error}); pip install torch==2.13.0")
        return 1
    threads = args.threads or environment.numpy_blas_threads()[0]
    torch.set_num_threads(threads)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    report = Report(header=environment.describe(torch.get_num_threads(), torch.__version__))
    report.header["timing"] = (
        f"{'quick' if args.quick else 'full'}: {plan.rounds} rounds of interleaved blocks, "
        f"each warmed up {max(plan.warmup_s, TRAINING_WARMUP_S):g} s; "
        f"medians of per-step times; ratio = median of per-round ratios; threads {threads}"
    )
    report.header["malloc"] = "glibc defaults (the trainer reuses its own buffers)"
    report.rows.extend(run_training(torch, plan, args.threads))
    if args.threads in (None, 2):
        report.rows.append(run_parallel_modes(torch, plan))
    print(format_report(report))
    print()
    print(f"{'workload':20s} {'numpy img/s':>12s} {'torch img/s':>12s} {'ratio':>7s}  status")
    for row in report.rows:
        if "numpy_images_per_s" not in row.extra:
            continue
        print(
            f"{row.name:20s} {row.extra['numpy_images_per_s']:12.0f} "
            f"{row.extra['torch_images_per_s']:12.0f} {row.ratio:6.2f}x  {row.status}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
