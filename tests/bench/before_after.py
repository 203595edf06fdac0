"""This tree against an earlier commit, side by side in one run: the explorer and training rows.

    python -m tests.bench.before_after --before REV [--after REV] [--rounds 3]

Checks out REV (and --after REV; default: this working tree) in temporary git worktrees, then
alternates the two trees round by round; the order flips every round, so a drift of the
machine's speed hits both alike. Each round runs, in each tree, that tree's own
`tests.bench.run --quick` for the explorer rows (the 224x224 pipeline's forward pass, and a
/forward through the ASGI app) and its own `run_training` for the training steps, each in a
fresh interpreter with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for these commands only
(the threadpoolctl report of each tree is printed). Reported: the median over rounds of each
tree's NumPy median, and the median over rounds of each round's after / before (below 1 is
faster); over 1 + NOISE is marked SLOWER.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPLORER_ROWS = ("pipeline_224", "server_forward")
# Rounds of the same tree differ by a few percent on this shared machine.
NOISE = 0.03

_TRAINING = """
import json, torch
from tests.bench import environment
from tests.bench.bench_training import run_training
from tests.bench.timing import QUICK_PLAN
torch.set_num_threads(environment.numpy_blas_threads()[0])
print(json.dumps([row.to_json() for row in run_training(torch, QUICK_PLAN)]))
"""
_BLAS = """
import numpy, threadpoolctl
print(json.dumps([(i["internal_api"], i.get("architecture"), i["num_threads"])
                  for i in threadpoolctl.threadpool_info()]))
"""


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    env["PYTHONPATH"] = ""  # the tree in cwd, not this one
    return env


def _python(tree: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=tree, env=_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} failed in {tree}:\n{done.stderr[-2000:]}")
    return done.stdout


def explorer_medians(tree: Path, only: list[str]) -> dict[str, float]:
    """{row name: NumPy median ms} from the tree's own `tests.bench.run --quick`."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "rows.json"
        picks = [arg for name in only for arg in ("--only", name)]
        _python(tree, "-m", "tests.bench.run", "--quick", *picks, "--json", str(out))
        rows = json.loads(out.read_text())["rows"]
    return {row["name"]: row["subject_stats"]["median_ms"] for row in rows if row["name"] in only}


def training_medians(tree: Path) -> dict[str, float]:
    """{row name: NumPy median ms a step} from the tree's own run_training."""
    rows = json.loads(_python(tree, "-c", _TRAINING).strip().splitlines()[-1])
    return {row["name"]: row["subject_stats"]["median_ms"] for row in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.before_after", description=__doc__)
    parser.add_argument("--before", required=True, help="the commit to compare with")
    parser.add_argument("--after", help="the commit to compare (default: this working tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(EXPLORER_ROWS), help="explorer rows")
    parser.add_argument("--no-training", action="store_true", help="explorer rows only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"before": Path(scratch) / "before", "after": ROOT}
        revs = {"before": args.before}
        if args.after:
            trees["after"], revs["after"] = Path(scratch) / "after", args.after
        try:
            for label, rev in revs.items():
                subprocess.run(
                    ["git", "worktree", "add", "--detach", str(trees[label]), rev],
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                )
            return _compare(trees, args)
        finally:
            for label in revs:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(trees[label])],
                    cwd=ROOT,
                    check=False,
                )


def _compare(trees: dict[str, Path], args: argparse.Namespace) -> int:
    for label, tree in trees.items():
        blas = _python(tree, "-c", "import json" + _BLAS).strip()
        print(f"{label}: {tree}  BLAS (threadpoolctl): {blas}")
    print("OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for these commands only.")
    medians: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
    for round_ in range(args.rounds):
        order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
        for label in order:
            found = explorer_medians(trees[label], args.only)
            if not args.no_training:
                found |= training_medians(trees[label])
            for name, ms in found.items():
                medians[label].setdefault(name, []).append(ms)
            print(
                f"round {round_ + 1} {label}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in found.items())
            )
    print(f"\n{'row':22s} {'before ms':>10s} {'after ms':>10s} {'after/before':>13s}")
    slower = 0
    for name, runs in medians["after"].items():
        if name not in medians["before"]:
            continue
        before = medians["before"][name]
        # Paired: each round's after / before (both ran back to back), then the median of those.
        ratio = statistics.median(a / b for a, b in zip(runs, before, strict=False))
        verdict = "SLOWER" if ratio > 1 + NOISE else "ok"
        slower += verdict == "SLOWER"
        b, a = statistics.median(before), statistics.median(runs)
        print(f"{name:22s} {b:10.2f} {a:10.2f} {ratio:12.3f}x  {verdict}")
    return 0 if slower == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
