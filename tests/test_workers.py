"""The real server with two worker processes: a run made by one worker answers from the other,
and so does a training job (status, list, the job limit and cancel).

Each test starts its own server on a free port from 8110 in its own process group, sends one
image through /forward, then asks for the run's maps with a fresh connection per request (so the
kernel hands them to either worker) and stops the server by its process group.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import WORKED_EXAMPLE, encode, random_pixels
from tests.live_server import free_port, running_server, server_env
from tests.test_parallel import wait_gone
from tests.test_training_api import job

pytestmark = pytest.mark.slow  # real servers, worker processes: make test-quick leaves them out

BIN = Path(sys.executable).parent
REQUESTS = 40
MAX_REQUESTS = 2000


def wait_for_both_workers(base: str, seconds: float = 60) -> None:
    """Health answers once the first worker is up; the second may still be importing (slowly,
    on a loaded machine). Wait until two PIDs have answered, so the test measures sharing, not
    start-up."""
    pids: set[str] = set()
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=10, headers={"Connection": "close"}) as client:
        while len(pids) < 2 and time.monotonic() < deadline:
            pids.add(client.get("/api/v1/health").headers["x-worker-pid"])
            time.sleep(0.05)
    assert len(pids) >= 2, f"only worker {pids} answered /api/v1/health in {seconds} s"


def forward_then_fetch_the_maps(base: str) -> tuple[dict, list[httpx.Response]]:
    """POST /forward, then REQUESTS GETs of the run's URLs, each on a new connection."""
    wait_for_both_workers(base)
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
    # The kernel hands new connections to whichever worker accepts first, which can be the same
    # one many times in a row: go on (bounded) until the worker that did NOT make the run has
    # answered some of its URLs.
    creator = r.headers["x-worker-pid"]
    responses = []
    with httpx.Client(base_url=base, timeout=30, headers={"Connection": "close"}) as client:
        for n in range(MAX_REQUESTS):
            responses.append(client.get(urls[n % len(urls)]))
            others = [x for x in responses if x.headers["x-worker-pid"] != creator]
            if n + 1 >= REQUESTS and len(others) >= len(urls):
                break
    body["creator_pid"] = creator
    return body, responses


def assert_served_by_both_workers(body: dict, responses: list[httpx.Response]) -> None:
    failed = [(r.request.url.path, r.status_code, r.text[:200]) for r in responses
              if r.status_code != 200]  # fmt: skip
    assert not failed
    others = {r.headers["x-worker-pid"] for r in responses} - {body["creator_pid"]}
    assert others, f"all {len(responses)} requests were answered by the run's own worker"


def test_two_workers_share_runs_through_the_default_store(tmp_path):
    env = server_env(free_port(8110), data_dir=tmp_path / "data", workers=2)
    with running_server([str(BIN / "cnn-explorer")], env, tmp_path / "server.log") as base:
        body, responses = forward_then_fetch_the_maps(base)
        assert_served_by_both_workers(body, responses)
        # One worker only (memory) would have failed above; auto chose the disk store.
        assert (tmp_path / "data" / "runs" / "runs" / f"{body['run_id']}.run").is_file()


def test_uvicorn_workers_without_the_setting_still_share_runs(tmp_path):
    port = free_port(8110)
    command = [str(BIN / "uvicorn"), "app.web.main:create_app", "--factory", "--workers", "2",
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    env = server_env(port, data_dir=tmp_path / "data")
    with running_server(command, env, tmp_path / "server.log") as base:
        body, responses = forward_then_fetch_the_maps(base)
        assert_served_by_both_workers(body, responses)


def test_two_workers_share_runs_through_redis(tmp_path, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    env = server_env(free_port(8110), data_dir=tmp_path / "data", workers=2, run_store=redis_url)
    with running_server([str(BIN / "cnn-explorer")], env, tmp_path / "server.log") as base:
        body, responses = forward_then_fetch_the_maps(base)
        assert_served_by_both_workers(body, responses)
        assert client.exists(f"cnn-explorer:run:{body['run_id']}")
        assert not (tmp_path / "data" / "runs").exists()
    client.close()


def connection_to_another_worker(base: str, not_pid: str, tries: int = 400) -> httpx.Client:
    """A keep-alive connection (so every request on it goes to one worker) that a worker other
    than not_pid accepted."""
    for _ in range(tries):
        client = httpx.Client(base_url=base, timeout=30)
        if client.get("/api/v1/health").headers["x-worker-pid"] != not_pid:
            return client
        client.close()
    raise AssertionError(f"every one of {tries} connections went to worker {not_pid}")


def test_a_training_job_on_one_worker_is_read_limited_and_cancelled_through_the_other(tmp_path):
    env = server_env(free_port(8611), data_dir=tmp_path / "data", workers=2,
                     train_max_examples=2000, train_threads=1)  # fmt: skip
    with running_server([str(BIN / "cnn-explorer")], env, tmp_path / "server.log") as base:
        wait_for_both_workers(base)
        with httpx.Client(base_url=base, timeout=30) as owner:
            r = owner.post("/api/v1/train", json=job(epochs=50, batch_size=4))
            assert r.status_code == 202, r.text
            job_id, owner_pid = r.json()["job_id"], r.headers["x-worker-pid"]
            status_url = f"/api/v1/train/{job_id}"
            with contextlib.closing(connection_to_another_worker(base, owner_pid)) as other:

                def other_get(url: str) -> httpx.Response:
                    r = other.get(url)
                    assert r.status_code == 200 and r.headers["x-worker-pid"] != owner_pid
                    return r

                deadline = time.monotonic() + 60
                while other_get(status_url).json()["step"] < 1:
                    assert time.monotonic() < deadline, "the job never showed a step"
                    time.sleep(0.05)
                assert [j["job_id"] for j in other_get("/api/v1/train").json()] == [job_id]
                refused = other.post("/api/v1/train", json=job())  # train_max_jobs is 1
                assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1

                r = other.post(f"{status_url}/cancel")
                assert r.status_code == 200 and r.headers["x-worker-pid"] != owner_pid
                while (status := other_get(status_url).json())["status"] == "running":
                    assert time.monotonic() < deadline + 30, "the cancel never arrived"
                    time.sleep(0.05)
                assert status["status"] == "cancelled" and status["saved_model"] is None
                assert status["step"] < status["total_steps"]
                assert owner.get(status_url).json() == status
                events = other_get(f"{status_url}/events").text
                assert "event: end" in events and "event: progress" not in events

                # The slot is free machine-wide: the other worker trains, the owner follows.
                r = other.post("/api/v1/train", json=job(epochs=1, max_examples=64))
                assert r.status_code == 202, r.text
                second = f"/api/v1/train/{r.json()['job_id']}"
                while (done := owner.get(second).json())["status"] in ("queued", "running"):
                    assert time.monotonic() < deadline + 90, "the second job never ended"
                    time.sleep(0.05)
                assert done["status"] == "done" and done["saved_model"] == "my-digits"


def training_workers(server_pid: int) -> list[int]:
    """PIDs of the training worker processes that server_pid started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == server_pid and b"app.learning.parallel" in cmdline:
            found.append(int(entry.name))
    return found


def test_stopping_the_server_mid_job_keeps_the_weights_and_ends_its_worker_process(tmp_path):
    """A job's worker process runs in a session of its own, outside the server's process group
    (so Ctrl-C does not kill it mid-step): it must still end with the server."""
    env = server_env(free_port(8631), data_dir=tmp_path / "data", train_max_examples=2000)
    command = [str(BIN / "cnn-explorer")]
    with (
        running_server(command, env, tmp_path / "server.log") as base,
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        r = client.post("/api/v1/train", json=job(epochs=50, batch_size=32, name="stopped"))
        assert r.status_code == 202, r.text
        server_pid, status_url = int(r.headers["x-worker-pid"]), r.json()["status_url"]
        deadline = time.monotonic() + 60
        while client.get(status_url).json()["step"] < 1:
            assert time.monotonic() < deadline, "the job never showed a step"
            time.sleep(0.05)
        workers = training_workers(server_pid)
        assert len(workers) == 1
    assert wait_gone(workers), f"worker {workers} outlived the server"
    assert (tmp_path / "data" / "models" / "stopped.npz").is_file()
