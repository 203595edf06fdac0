"""BLAS threads under concurrent requests: one thread per worker vs every core per call.

    python -m tests.load.blas [--passes 24] [--rounds 3]

Runs forward passes of app-sized networks the way the admission gate does (a pool of
cpu_workers threads, default = cores) with BLAS limited to 1 thread, and with BLAS allowed all
cores (OpenBLAS's default, shared by all workers). Prints passes/s and p50/p90 latency for one
request at a time and for a full pool, the median of interleaved rounds. Process-wide BLAS
limits are set with threadpoolctl.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from app.cnn import build_network
from app.schemas import NetworkSpecModel

NETWORKS = {
    "worked example 32x32x3": {
        "input": {"height": 32, "width": 32, "channels": 3},
        "layers": [
            {"type": "conv", "filters": 10, "kernel_size": 5, "padding": 2},
            {"type": "maxpool", "size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    },
    "3 conv 128x128x3": {
        "input": {"height": 128, "width": 128, "channels": 3},
        "layers": [
            {"type": "conv", "filters": 32, "kernel_size": 5, "padding": 2},
            {"type": "maxpool", "size": 2},
            {"type": "conv", "filters": 64, "kernel_size": 3, "padding": 1},
            {"type": "maxpool", "size": 2},
            {"type": "conv", "filters": 64, "kernel_size": 3, "padding": 1},
            {"type": "globalavgpool"},
        ],
    },
    "2 conv 256x256x3": {
        "input": {"height": 256, "width": 256, "channels": 3},
        "layers": [
            {"type": "conv", "filters": 16, "kernel_size": 7, "stride": 1, "padding": 3},
            {"type": "maxpool", "size": 2},
            {"type": "conv", "filters": 64, "kernel_size": 3, "padding": 1},
            {"type": "globalmaxpool"},
        ],
    },
}


def measure(network, x: np.ndarray, workers: int, passes: int) -> tuple[float, float, float]:
    """(passes per second, p50 ms, p90 ms) of `passes` forward passes on `workers` threads."""

    def one() -> float:
        start = time.perf_counter()
        network.forward(x)
        return time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _: one(), range(workers)))  # warm up every thread
        start = time.perf_counter()
        took = list(pool.map(lambda _: one(), range(passes)))
        wall = time.perf_counter() - start
    ms = sorted(t * 1000 for t in took)
    return passes / wall, statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=24, help="forward passes per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats (median kept)")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    print(f"cores: {cores}; BLAS: " + ", ".join(
        f"{p['internal_api']} {p['version']} ({p.get('architecture')}), default "
        f"{p['num_threads']} threads" for p in blas))  # fmt: skip
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')}; load average before: "
          f"{os.getloadavg()[0]:.2f} (other processes skew it)")  # fmt: skip
    print(f"{'network':<24} {'BLAS threads':>12} {'workers':>7} {'passes/s':>9} "
          f"{'p50 ms':>8} {'p90 ms':>8}")  # fmt: skip
    rng = np.random.default_rng(0)
    for name, spec in NETWORKS.items():
        network = build_network(NetworkSpecModel.model_validate(spec).to_engine())
        h, w, c = network.input_shape
        x = rng.random((h, w, c), dtype=np.float32)
        passes = args.passes * (8 if h <= 32 else 1)
        for workers in (1, cores):
            results: dict[int, list[tuple[float, float, float]]] = {1: [], cores: []}
            for _ in range(args.rounds):  # interleaved, so a burst of outside load hits both
                for threads in results:
                    with threadpool_limits(limits=threads, user_api="blas"):
                        results[threads].append(measure(network, x, workers, passes))
            for threads, runs in results.items():
                rate, p50, p90 = (statistics.median(r[k] for r in runs) for k in range(3))
                label = f"{threads}" + (" (shared)" if threads > 1 else "")
                print(f"{name:<24} {label:>12} {workers:>7} {rate:>9.1f} {p50:>8.1f} {p90:>8.1f}")


if __name__ == "__main__":
    main()
