"""Interleaved timing of competing callables on a shared, noisy machine.

Why blocks and not call-by-call alternation: OpenBLAS worker threads keep spinning for ~0.1 s after
a call and libgomp's (PyTorch) for a while too, so a PyTorch call made right after a NumPy call
fights NumPy's idle threads for the two cores (measured here: 4-40x slower). Each round therefore
runs every contender as a block: settle (sleep until the other library's threads park), warm up,
then time several calls. Contenders alternate order from round to round, so slow drifts in machine
load hit all of them alike, and the ratio is taken per round (paired) before the median.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class TimingPlan:
    """How hard to measure: `rounds` blocks per contender, each after `settle_s` of sleep."""

    rounds: int = 12
    settle_s: float = 0.15
    warmup_s: float = 0.02
    block_s: float = 0.04
    min_sample_s: float = 0.001  # calls faster than this are timed in batches
    max_block_samples: int = 25


QUICK_PLAN = TimingPlan(rounds=4, block_s=0.025)
FULL_PLAN = TimingPlan()


@dataclass(frozen=True)
class Stats:
    """Per-call times of one contender, in milliseconds."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    samples: int
    calls_per_sample: int

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def to_json(self) -> dict[str, float | int]:
        return {
            "median_ms": self.median_ms,
            "q1_ms": self.q1_ms,
            "q3_ms": self.q3_ms,
            "iqr_ms": self.iqr_ms,
            "min_ms": self.min_ms,
            "samples": self.samples,
            "calls_per_sample": self.calls_per_sample,
        }


@dataclass(frozen=True)
class Measurement:
    """Stats per contender plus the per-round block medians (for paired ratios)."""

    stats: dict[str, Stats]
    round_medians: dict[str, list[float]]

    def ratio(self, subject: str, baseline: str) -> float:
        """Median over rounds of subject/baseline, each round's pair measured back to back."""
        pairs = zip(self.round_medians[subject], self.round_medians[baseline], strict=True)
        return statistics.median(a / b for a, b in pairs)


def summarize(samples_ms: list[float], calls_per_sample: int) -> Stats:
    """Median, quartiles and minimum of per-call times (ms)."""
    ordered = sorted(samples_ms)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return Stats(
        median_ms=statistics.median(ordered),
        q1_ms=q1,
        q3_ms=q3,
        min_ms=ordered[0],
        samples=len(ordered),
        calls_per_sample=calls_per_sample,
    )


def _time_batch(fn: Callable[[], object], calls: int) -> float:
    """Wall time of `calls` back-to-back calls, per call, in ms."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) * 1e3 / calls


def _calibrate(fn: Callable[[], object], plan: TimingPlan) -> tuple[int, int]:
    """(calls per sample, samples per block) from a few untimed-for-results calls."""
    time.sleep(plan.settle_s)  # the previous contender's idle threads park first (see above)
    fn()  # first call pays one-off costs (allocation, primitive creation, imports)
    single_s = min(_time_batch(fn, 1) for _ in range(5)) / 1e3
    single_s = max(single_s, 1e-7)
    calls = max(1, math.ceil(plan.min_sample_s / single_s))
    samples = math.ceil(plan.block_s / (single_s * calls))
    return calls, min(max(samples, 3), plan.max_block_samples)


def measure(contenders: dict[str, Callable[[], object]], plan: TimingPlan) -> Measurement:
    """Time every contender in alternating blocks; see the module docstring for why."""
    shapes = {name: _calibrate(fn, plan) for name, fn in contenders.items()}
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    round_medians: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_index in range(plan.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            fn = contenders[name]
            calls, block = shapes[name]
            time.sleep(plan.settle_s)
            warm_end = time.perf_counter() + plan.warmup_s
            fn()
            while time.perf_counter() < warm_end:
                fn()
            block_samples = [_time_batch(fn, calls) for _ in range(block)]
            samples[name].extend(block_samples)
            round_medians[name].append(statistics.median(block_samples))
    stats = {name: summarize(samples[name], shapes[name][0]) for name in names}
    return Measurement(stats=stats, round_medians=round_medians)
