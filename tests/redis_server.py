"""A real redis-server for tests and benchmarks: loopback, a free port, a temporary directory, no
persistence, stopped by its PID. Debian's package redis-server provides the binary."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from tests.live_server import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 10) -> None:
    """Return once something accepts connections on 127.0.0.1:port; fail if process exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within {seconds} s")


@contextlib.contextmanager
def redis_server(maxmemory: str = "256mb") -> Iterator[str]:
    """Run redis-server until the block ends; yields its URL, redis://127.0.0.1:<port>/0.

    Configured as deploy/ should be: no snapshots, no append-only file, and maxmemory with
    volatile-lru so that Redis itself can only drop keys with a TTL (runs), never the index.
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cnn-explorer-redis-") as directory:
        process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
             "--save", "", "--appendonly", "no", "--maxmemory", maxmemory,
             "--maxmemory-policy", "volatile-lru", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for_port(port, process)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
