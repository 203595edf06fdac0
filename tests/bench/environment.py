"""What the numbers were measured on: versions, BLAS, thread counts, OpenBLAS tuning variables."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from typing import Any

import numpy as np

# Variables that change which OpenBLAS kernels NumPy runs; reported, never changed.
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
STEADY_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit
STEADY_TRIM_THRESHOLD = 2**30


def steady_heap() -> str:
    """Make glibc keep freed memory for reuse instead of handing it back to the kernel.

    With glibc's defaults, whether a freed multi-megabyte buffer is reused or returned (and then
    page-faulted back in, ~1.4 us per 4 KiB page on this VM) depends on what the process allocated
    before, so the same PyTorch conv measured 0.24 ms in one process and 2 ms in another. A steady
    heap removes that noise for NumPy and PyTorch alike. Returns what was done, for the header.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "unchanged (no glibc mallopt)"
    ok = mallopt(_M_MMAP_THRESHOLD, STEADY_MMAP_THRESHOLD) and mallopt(
        _M_TRIM_THRESHOLD, STEADY_TRIM_THRESHOLD
    )
    if not ok:
        return "unchanged (mallopt refused)"
    return (
        f"steady heap (glibc M_MMAP_THRESHOLD {STEADY_MMAP_THRESHOLD >> 20} MiB, "
        f"M_TRIM_THRESHOLD {STEADY_TRIM_THRESHOLD >> 20} MiB)"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def numpy_blas_threads() -> tuple[int, str]:
    """(threads NumPy's BLAS uses, how we know): threadpoolctl if installed, else env or cores."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        for pool in threadpool_info():
            if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
                return int(pool["num_threads"]), f"threadpoolctl ({pool.get('internal_api')})"
        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return int(pool["num_threads"]), f"threadpoolctl ({pool.get('internal_api')})"
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var]), f"${var}"
    return os.cpu_count() or 1, "os.cpu_count()"


def _blas_details() -> dict[str, Any]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads")
            return {key: pool.get(key) for key in keys}
    return {}


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: other work on a shared machine shows up here."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def describe(torch_threads: int | None, torch_version: str | None) -> dict[str, Any]:
    """Everything the report header shows, JSON-ready."""
    blas_threads, source = numpy_blas_threads()
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch_version,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "numpy_blas": _blas_details(),
        "numpy_blas_threads": blas_threads,
        "numpy_blas_threads_source": source,
        "torch_threads": torch_threads,
        "env": {var: os.environ.get(var) for var in OPENBLAS_VARS},
        "load_before": load_average(),
    }


OPENBLAS_TUNING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def rerun_without_openblas_tuning(module: str, argv: list[str] | None) -> None:
    """Restart `python -m module argv` without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, if set.

    OpenBLAS reads them once, when NumPy loads it, so only a fresh interpreter can drop them;
    it then picks the kernels it would choose for this CPU itself. Returns only if none is set.
    """
    tuning = [var for var in OPENBLAS_TUNING if var in os.environ]
    if not tuning:
        return
    env = {key: value for key, value in os.environ.items() if key not in tuning}
    rest = sys.argv[1:] if argv is None else argv
    os.execve(sys.executable, [sys.executable, "-m", module, *rest], env)
