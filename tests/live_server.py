"""The real server in a subprocess, for tests and the load test.

    port = free_port()
    env = server_env(port, data_dir=tmp_path / "data", workers=2)
    with running_server([str(BIN / "cnn-explorer")], env, tmp_path / "server.log") as url:
        httpx.get(f"{url}/api/v1/health")

The server starts in its own process group, counts as up once GET /api/v1/health answers 200 on
127.0.0.1:$CNN_EXPLORER_PORT, and is stopped by its process group id (its PID): SIGTERM, then
SIGKILL if it has not exited in time. A plain `uvicorn` command must be given the same --port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port(start: int = 0) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on: the first free one from start, or any
    free one (start 0)."""
    for port in range(start, start + 200) if start else [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in {start}..{start + 199}")


def server_env(port: int, *, inherit_settings: bool = False, **settings: object) -> dict[str, str]:
    """The environment of a server on 127.0.0.1:port that logs warnings, with `settings` (e.g.
    data_dir=..., workers=2) as CNN_EXPLORER_<NAME>.

    Ours without any CNN_EXPLORER_* or WEB_CONCURRENCY (uvicorn's default worker count), so a
    developer's shell does not change the test; inherit_settings=True keeps them (the load test
    measures the server as configured).
    """
    if inherit_settings:
        env = dict(os.environ)
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CNN_EXPLORER_")}
        env.pop("WEB_CONCURRENCY", None)
    env.update(
        CNN_EXPLORER_HOST="127.0.0.1",
        CNN_EXPLORER_PORT=str(port),
        CNN_EXPLORER_LOG_LEVEL="warning",
        NO_PROXY="127.0.0.1",
    )
    env.update({f"CNN_EXPLORER_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def base_url(env: dict[str, str]) -> str:
    """http://127.0.0.1:<port> of the server that env (from server_env) configures."""
    if "CNN_EXPLORER_PORT" not in env:
        raise ValueError("env has no CNN_EXPLORER_PORT: build it with server_env(port, ...)")
    return f"http://127.0.0.1:{env['CNN_EXPLORER_PORT']}"


def wait_for_health(url: str, process: subprocess.Popen, log_path: Path, seconds: float) -> None:
    """Return once GET url/api/v1/health answers 200; fail with the server's log if the process
    exits or `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            pytest.fail(f"The server exited with {process.returncode}:\n{log}", pytrace=False)
        with contextlib.suppress(httpx.HTTPError):
            # trust_env=False: a proxy from the environment must not carry loopback requests.
            if httpx.get(f"{url}/api/v1/health", timeout=2, trust_env=False).status_code == 200:
                return
        if time.monotonic() > deadline:
            log = log_path.read_text(errors="replace")
            pytest.fail(
                f"The server did not answer {url}/api/v1/health within {seconds:g} s:\n{log}",
                pytrace=False,
            )
        time.sleep(0.1)


def stop_group(process: subprocess.Popen, seconds: float) -> None:
    """SIGTERM the process group led by `process`, SIGKILL it after `seconds`; reap the leader.

    Whatever is left in the group once the leader has exited (a stray child) is killed too.
    """
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(seconds)
    except ProcessLookupError:  # the whole group has already exited
        pass
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def server_process(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    cwd: Path = ROOT,
    start_seconds: float = 60,
    stop_seconds: float = 20,
) -> Iterator[subprocess.Popen]:
    """Run `command` (output to log_path) until the block ends; yields the process once it is
    healthy, for callers that watch it (its PID, its exit status afterwards)."""
    url = base_url(env)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_health(url, process, log_path, start_seconds)
        yield process
    finally:
        stop_group(process, stop_seconds)


@contextlib.contextmanager
def running_server(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    cwd: Path = ROOT,
    start_seconds: float = 60,
    stop_seconds: float = 20,
) -> Iterator[str]:
    """Run `command` until the block ends; yields its base URL, http://127.0.0.1:<port>, once
    /api/v1/health answers (env must hold CNN_EXPLORER_PORT: see server_env)."""
    with server_process(
        command, env, log_path, cwd=cwd, start_seconds=start_seconds, stop_seconds=stop_seconds
    ):
        yield base_url(env)
