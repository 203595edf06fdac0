"""Results as a readable table on stdout and as JSON in bench-results/latest.json."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.timing import Stats

DEFAULT_JSON = Path("bench-results/latest.json")


@dataclass(frozen=True)
class Row:
    """One comparison: `subject` (usually NumPy) against `baseline` (PyTorch, or a floor)."""

    group: str
    name: str
    subject: str
    baseline: str
    subject_stats: Stats
    baseline_stats: Stats
    ratio: float  # median over rounds of subject / baseline
    target: float | None  # ratio must be <= target; None = informational
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.target is None:
            return "INFO"
        return "PASS" if self.ratio <= self.target else "MISS"

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "subject": self.subject,
            "baseline": self.baseline,
            "subject_stats": self.subject_stats.to_json(),
            "baseline_stats": self.baseline_stats.to_json(),
            "ratio": self.ratio,
            "target": self.target,
            "status": self.status,
            "note": self.note,
            "extra": self.extra,
        }


@dataclass
class Report:
    """Rows measured so far, what was skipped and why, and the machine description."""

    header: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name or group, reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "header": self.header,
            "rows": [row.to_json() for row in self.rows],
            "skipped": [{"name": name, "reason": reason} for name, reason in self.skipped],
            "summary": {
                "pass": sum(row.status == "PASS" for row in self.rows),
                "miss": sum(row.status == "MISS" for row in self.rows),
                "info": sum(row.status == "INFO" for row in self.rows),
            },
        }


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_header(header: dict[str, Any]) -> str:
    """A few lines: machine, libraries, threads, OpenBLAS variables, load, timing, malloc."""
    blas = header.get("numpy_blas") or {}
    env = header.get("env", {})
    env_text = "  ".join(
        f"{key}={'(unset)' if value is None else value}" for key, value in env.items()
    )
    blas_text = ", ".join(f"{key} {value}" for key, value in blas.items() if key != "num_threads")
    lines = [
        f"CPU: {header.get('cpu')} ({header.get('cpu_count')} logical cores)",
        f"Python {header.get('python')}  NumPy {header.get('numpy')}  "
        f"PyTorch {header.get('torch')}",
        f"NumPy BLAS: {blas_text or 'unknown (threadpoolctl not installed)'}",
        f"Threads: NumPy BLAS {header.get('numpy_blas_threads')} "
        f"(from {header.get('numpy_blas_threads_source')}), PyTorch {header.get('torch_threads')}",
        f"Env: {env_text}",
        f"Load average (1/5/15 min) at start: {header.get('load_before')}",
        f"Timing: {header.get('timing')}",
        f"Malloc: {header.get('malloc')}",
    ]
    return "\n".join(lines)


def format_table(rows: list[Row]) -> str:
    """Fixed-width table: workload, medians (with IQR), ratio, target, status, note."""
    columns = ["workload", "ours", "ms", "(IQR)", "base", "ms", "(IQR)", "ratio", "target", ""]
    body = [
        [
            row.name,
            row.subject,
            _ms(row.subject_stats.median_ms),
            _ms(row.subject_stats.iqr_ms),
            row.baseline,
            _ms(row.baseline_stats.median_ms),
            _ms(row.baseline_stats.iqr_ms),
            f"{row.ratio:.2f}x",
            f"<= {row.target:.1f}x" if row.target is not None else "-",
            row.status,
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [columns, *body]) for i in range(len(columns))]
    left = {0, 1, 4}

    def fmt(cells: list[str]) -> str:
        parts = [
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    lines = [fmt(columns), "  ".join("-" * width for width in widths)]
    for row, cells in zip(rows, body, strict=True):
        lines.append(fmt(cells))
        if row.note:
            lines.append(f"    {row.note}")
    return "\n".join(lines)


BUSY_LOAD = 1.0  # 1-minute load average above which other work was competing for the cores


def busy_warning(header: dict[str, Any]) -> str | None:
    """A warning when the machine was busy with other work before or after the run."""
    loads = [header.get("load_before"), header.get("load_after")]
    worst = max((load[0] for load in loads if load), default=0.0)
    if worst <= BUSY_LOAD:
        return None
    return (
        f"WARNING: 1-minute load average reached {worst:.2f} around this run: other processes "
        "were using the cores, and NumPy's OpenBLAS threads suffer far more from that than "
        "PyTorch's; rerun on a quiet machine before trusting the ratios."
    )


def format_report(report: Report) -> str:
    summary = report.to_json()["summary"]
    parts = [format_header(report.header), "", format_table(report.rows)]
    if report.skipped:
        parts.append("")
        parts.extend(f"SKIPPED {name}: {reason}" for name, reason in report.skipped)
    parts.append("")
    parts.append(f"{summary['pass']} pass, {summary['miss']} miss, {summary['info']} info")
    warning = busy_warning(report.header)
    if warning:
        parts.append(warning)
    return "\n".join(parts)


def write_json(report: Report, path: Path = DEFAULT_JSON) -> Path:
    """Write the report as JSON (creating the folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


class SkippedError(Exception):
    """A benchmark cannot run here (a module is missing); the message says which and why."""
