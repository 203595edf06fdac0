"""Entry point: `python -m tests.bench.run [--quick] [--only NAME ...] [--json PATH] [--list]`.

Prints a table (workload, NumPy median, PyTorch or floor median, ratio, target, PASS/MISS) and
writes the same as JSON (default bench-results/latest.json). Engine benchmarks run even when the
web layer (app.web.render, app.web.imageio, app.web.main) is not importable; what was skipped
is listed.
Other options: --unset-openblas-env (rerun without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE) and
--malloc-default (keep glibc's malloc thresholds). Exit status 1 if a benchmark crashed; a MISS
is a finding, not a failure.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from tests.bench import backward, environment, web, workloads
from tests.bench.report import (
    DEFAULT_JSON,
    Report,
    Row,
    SkippedError,
    format_report,
    write_json,
)
from tests.bench.timing import FULL_PLAN, QUICK_PLAN, TimingPlan


@dataclass(frozen=True)
class Benchmark:
    name: str
    group: str
    needs_torch: bool
    run: Callable[[ModuleType | None, TimingPlan], list[Row]]


def _conv_benchmark(workload: workloads.ConvWorkload) -> Benchmark:
    return Benchmark(
        workload.name, "conv", True, lambda torch, plan: [workloads.run_conv(workload, torch, plan)]
    )


BENCHMARKS: tuple[Benchmark, ...] = (
    *(_conv_benchmark(workload) for workload in workloads.CONV_WORKLOADS),
    Benchmark(
        workloads.PIPELINE_NAME,
        "pipeline",
        True,
        lambda torch, plan: [workloads.run_pipeline(torch, plan)],
    ),
    Benchmark(
        backward.BACKWARD_NAME, "backward", False, lambda torch, plan: [backward.run_backward(plan)]
    ),
    Benchmark(web.RENDER_NAME, "render", False, lambda torch, plan: web.run_render(plan)),
    Benchmark(web.SERVER_NAME, "server", False, lambda torch, plan: [web.run_server(plan)]),
)


def _selected(only: list[str] | None) -> list[Benchmark]:
    if not only:
        return list(BENCHMARKS)
    wanted = [name for item in only for name in item.split(",") if name]
    chosen = [
        bench
        for bench in BENCHMARKS
        if any(w in (bench.name, bench.group) or w in bench.name for w in wanted)
    ]
    if not chosen:
        names = ", ".join(bench.name for bench in BENCHMARKS)
        raise SystemExit(f"--only {only}: no benchmark matches; choose from {names} (or a group)")
    return chosen


def _load_torch(threads: int) -> tuple[ModuleType | None, str | None]:
    try:
        import torch
    except ImportError as error:
        return None, f"PyTorch is not installed ({error}); pip install torch==2.13.0"
    torch.set_num_threads(threads)
    return torch, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 3x faster)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run benchmarks whose name or group matches (repeat or comma-separate)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--list", action="store_true", help="list benchmark names and exit")
    parser.add_argument(
        "--unset-openblas-env",
        action="store_true",
        help="rerun without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (default: leave them as set), "
        "to see what NumPy's BLAS does with the kernels it would pick itself",
    )
    parser.add_argument(
        "--malloc-default",
        action="store_true",
        help="keep glibc's malloc defaults (page faults from re-allocated buffers then add noise)",
    )
    args = parser.parse_args(argv)

    if args.unset_openblas_env:
        environment.rerun_without_openblas_tuning("tests.bench.run", argv)

    heap = "glibc defaults" if args.malloc_default else environment.steady_heap()
    if args.list:
        for bench in BENCHMARKS:
            print(f"{bench.name:24s} group {bench.group}")
        return 0

    plan = QUICK_PLAN if args.quick else FULL_PLAN
    blas_threads, _ = environment.numpy_blas_threads()
    torch, torch_missing = _load_torch(blas_threads)
    header = environment.describe(
        torch.get_num_threads() if torch else None, torch.__version__ if torch else None
    )
    header["timing"] = (
        f"{'quick' if args.quick else 'full'}: {plan.rounds} rounds of interleaved blocks, "
        f"{plan.settle_s:.2f} s settle; medians of per-call times; ratio = median of per-round "
        "ratios"
    )
    header["plan"] = asdict(plan)
    header["malloc"] = heap
    report = Report(header=header)
    print(format_report(Report(header=header)).split("\n\n")[0], flush=True)
    print(flush=True)

    started = time.perf_counter()
    for bench in _selected(args.only):
        if bench.needs_torch and torch is None:
            report.skipped.append((bench.name, torch_missing or "PyTorch missing"))
            continue
        began = time.perf_counter()
        try:
            rows = bench.run(torch, plan)
        except SkippedError as skip:
            report.skipped.append((bench.name, str(skip)))
            print(f"  skipped {bench.name}: {skip}", file=sys.stderr, flush=True)
            continue
        except ImportError as error:
            if not (error.name or "").startswith("app"):
                raise
            report.skipped.append((bench.name, f"{error.name} is not importable yet ({error})"))
            continue
        except Exception as error:  # one broken benchmark must not hide the others
            traceback.print_exc()
            report.skipped.append((bench.name, f"failed: {type(error).__name__}: {error}"))
            continue
        report.rows.extend(rows)
        for row in rows:
            print(
                f"  {row.name}: {row.ratio:.2f}x ({row.status}) "
                f"[{time.perf_counter() - began:.1f} s]",
                file=sys.stderr,
                flush=True,
            )
    report.header["elapsed_s"] = round(time.perf_counter() - started, 1)
    report.header["load_after"] = environment.load_average()

    print(format_report(report).split("\n\n", 1)[1])
    print(
        f"elapsed {report.header['elapsed_s']} s; load average at end "
        f"{report.header['load_after']}; JSON: {write_json(report, args.json)}"
    )
    return 1 if any(reason.startswith("failed") for _, reason in report.skipped) else 0


if __name__ == "__main__":
    raise SystemExit(main())
