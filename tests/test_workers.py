"""The real server with two worker processes: a run made by one worker answers from the other.

Each test starts its own server on a free port from 8110 in its own process group, sends one
image through /forward, then asks for the run's maps with a fresh connection per request (so the
kernel hands them to either worker) and stops the server by its process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import WORKED_EXAMPLE, encode, random_pixels
from tests.redis_server import free_port, wait_for_port

BIN = Path(sys.executable).parent
REQUESTS = 40


def server_env(tmp_path: Path, port: int, **settings: str) -> dict[str, str]:
    """The environment of a server: ours without any CNN_EXPLORER_*, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNN_EXPLORER_")}
    env.pop("WEB_CONCURRENCY", None)
    env.update(
        CNN_EXPLORER_PORT=str(port),
        CNN_EXPLORER_DATA_DIR=str(tmp_path / "data"),
        CNN_EXPLORER_LOG_LEVEL="warning",
        NO_PROXY="127.0.0.1",
    )
    env.update({f"CNN_EXPLORER_{k.upper()}": v for k, v in settings.items()})
    return env


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """start_server(command, env) -> base URL; the server is stopped by its process group."""
    started: list[subprocess.Popen] = []

    def start(command: list[str], env: dict[str, str]) -> str:
        log = open(tmp_path / f"server-{len(started)}.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        started.append(process)
        log.close()
        port = int(env["CNN_EXPLORER_PORT"])
        try:
            wait_for_port(port, process, seconds=60)
        except RuntimeError:
            pytest.fail((tmp_path / f"server-{len(started) - 1}.log").read_text())
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def forward_then_fetch_the_maps(base: str) -> tuple[dict, list[httpx.Response]]:
    """POST /forward, then REQUESTS GETs of the run's URLs, each on a new connection."""
    png = encode(random_pixels(32, 32, 3, seed=4))
    with httpx.Client(base_url=base, timeout=30) as client:
        r = client.post(
            "/api/v1/forward",
            files={"image": ("image.png", png, "image/png")},
            data={"network": json.dumps(WORKED_EXAMPLE)},
        )
        assert r.status_code == 200, r.text
    body = r.json()
    conv, pool, flat, dense = body["layers"]
    urls = [
        conv["grid_url"],
        conv["channel_url"].replace("{c}", "3"),
        conv["array_url"],
        conv["explain_url"] + "?y=5&x=7&c=2",
        pool["grid_url"],
        pool["channel_url"].replace("{c}", "9"),
        flat["array_url"],
        dense["explain_url"] + "?i=4",
    ]
    responses = []
    with httpx.Client(base_url=base, timeout=30, headers={"Connection": "close"}) as client:
        for n in range(REQUESTS):
            responses.append(client.get(urls[n % len(urls)]))
    return body, responses


def assert_served_by_both_workers(responses: list[httpx.Response]) -> None:
    failed = [(r.request.url.path, r.status_code, r.text[:200]) for r in responses
              if r.status_code != 200]  # fmt: skip
    assert not failed
    pids = {r.headers["x-worker-pid"] for r in responses}
    assert len(pids) >= 2, f"all {len(responses)} requests were answered by worker {pids}"


def test_two_workers_share_runs_through_the_default_store(start_server, tmp_path):
    port = free_port(8110)
    base = start_server([str(BIN / "cnn-explorer")], server_env(tmp_path, port, workers="2"))
    body, responses = forward_then_fetch_the_maps(base)
    assert_served_by_both_workers(responses)
    # One worker only (memory) would have failed above; auto chose the disk store.
    assert (tmp_path / "data" / "runs" / "runs" / f"{body['run_id']}.run").is_file()


def test_uvicorn_workers_without_the_setting_still_share_runs(start_server, tmp_path):
    port = free_port(8110)
    command = [str(BIN / "uvicorn"), "app.main:create_app", "--factory", "--workers", "2",
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    base = start_server(command, server_env(tmp_path, port))
    _, responses = forward_then_fetch_the_maps(base)
    assert_served_by_both_workers(responses)


def test_two_workers_share_runs_through_redis(start_server, tmp_path, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    port = free_port(8110)
    env = server_env(tmp_path, port, workers="2", run_store=redis_url)
    base = start_server([str(BIN / "cnn-explorer")], env)
    body, responses = forward_then_fetch_the_maps(base)
    assert_served_by_both_workers(responses)
    assert client.exists(f"cnn-explorer:run:{body['run_id']}")
    assert not (tmp_path / "data" / "runs").exists()
    client.close()
