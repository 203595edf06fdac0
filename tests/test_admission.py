"""The admission gate: a bounded pool and queue for CPU work, 503 + Retry-After past it, 503/504
past the time budget, and a health check that never waits.

Jobs are held with threading events (never sleeps), so every outcome here is decided by the
order of events, not by the speed of the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import app.settings as settings_module
import app.web.routers.forward as forward_module
from app.errors import OverloadedError
from app.settings import Settings
from app.web.admission import AdmissionGate
from tests.conftest import WORKED_EXAMPLE, client_for

pytestmark = pytest.mark.anyio

API = "/api/v1"
WAIT = 30  # seconds: an upper bound for an event that should come at once (a hung test fails)


class Blocker:
    """A job that says it started, then waits until released."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        self.started.release()
        assert self.release.wait(WAIT), "the test never released its job"
        return "done"

    async def wait_started(self, n: int) -> None:
        for _ in range(n):
            assert await asyncio.to_thread(self.started.acquire, timeout=WAIT)


async def saturate(gate: AdmissionGate, blocker: Blocker) -> list[asyncio.Task]:
    """Fill every worker and queue slot with blocked jobs; returns their tasks."""
    tasks = [asyncio.create_task(gate.run(blocker)) for _ in range(gate.capacity)]
    await blocker.wait_started(gate.workers)
    assert (gate.running, gate.in_flight) == (gate.workers, gate.capacity)
    return tasks


async def forward(client, png: bytes):
    return await client.post(
        f"{API}/forward",
        files={"image": ("i.png", png, "image/png")},
        data={"network": json.dumps(WORKED_EXAMPLE)},
    )


def assert_busy(r) -> None:
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert "busy" in detail["message"]
    assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
    assert detail["retry_after"] == int(r.headers["retry-after"])


async def test_a_full_gate_refuses_cpu_work_with_503_while_health_answers(make_app, png_bytes):
    app = make_app(cpu_workers=2, cpu_queue=3)
    gate = app.state.gate
    async with client_for(app) as client:
        body = (await forward(client, png_bytes)).json()
        conv = body["layers"][0]
        cached = conv["grid_url"]
        assert (await client.get(cached)).status_code == 200

        blocker = Blocker()
        tasks = await saturate(gate, blocker)

        started = time.monotonic()
        r = await client.get(f"{API}/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert time.monotonic() - started < 1.0  # generous: it waits for nothing

        assert_busy(await forward(client, png_bytes))
        # A channel of a layer not coloured yet needs the gate (colouring the layer is real work).
        uncoloured = body["layers"][1]["channel_url"].replace("{c}", "0")
        for url in (uncoloured, conv["array_url"],
                    body["input_url"], f"{conv['explain_url']}?y=1&x=1&c=1"):  # fmt: skip
            assert_busy(await client.get(url))
        assert gate.refused == 5
        # No CPU slot needed: a PNG already rendered, a small channel of a layer whose colours
        # the grid worked out (encoded on the event loop), /shapes' arithmetic, the model list.
        assert (await client.get(cached)).status_code == 200
        assert (await client.get(conv["channel_url"].replace("{c}", "3"))).status_code == 200
        assert (await client.post(f"{API}/shapes", json=WORKED_EXAMPLE)).status_code == 200
        assert (await client.get(f"{API}/models")).status_code == 200

        blocker.release.set()
        assert await asyncio.gather(*tasks) == ["done"] * gate.capacity
        assert gate.in_flight == 0 and blocker.calls == gate.capacity
        assert (await forward(client, png_bytes)).status_code == 200


async def test_a_job_still_queued_at_the_end_of_its_budget_never_runs():
    gate = AdmissionGate(workers=1, queue=1, budget_seconds=WAIT)
    blocker = Blocker()
    running = asyncio.create_task(gate.run(blocker))
    await blocker.wait_started(1)
    ran = threading.Event()
    with pytest.raises(OverloadedError, match="waited .* without starting") as caught:
        await gate.run(ran.set, budget_seconds=0.05)
    assert caught.value.retry_after >= 1 and gate.timed_out == 1
    blocker.release.set()
    assert await running == "done"
    assert gate.in_flight == 0 and not ran.is_set()
    gate.shutdown()


async def test_a_cancelled_request_gives_back_its_queue_slot():
    gate = AdmissionGate(workers=1, queue=1, budget_seconds=WAIT)
    blocker = Blocker()
    running = asyncio.create_task(gate.run(blocker))
    await blocker.wait_started(1)
    ran = threading.Event()
    queued = asyncio.create_task(gate.run(ran.set))
    await asyncio.sleep(0)  # let it be admitted
    assert gate.in_flight == 2
    queued.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert gate.in_flight == 1
    blocker.release.set()
    await running
    assert gate.in_flight == 0 and not ran.is_set()
    gate.shutdown()


async def test_a_failing_job_raises_its_own_error_and_frees_its_slot():
    gate = AdmissionGate(workers=1, queue=0, budget_seconds=WAIT)

    def broken() -> None:
        raise ValueError("the job's own error")

    with pytest.raises(ValueError, match="the job's own error"):
        await gate.run(broken)
    assert gate.in_flight == 0 and await gate.run(lambda: 42) == 42
    gate.shutdown()


async def test_a_forward_over_its_budget_is_504_and_its_work_is_dropped(
    make_app, png_bytes, monkeypatch
):
    app = make_app(cpu_workers=1, cpu_queue=0, cpu_time_budget_seconds=0.05)
    gate = app.state.gate
    blocker = Blocker()
    finished = threading.Event()
    real_decode = forward_module.decode_image

    def slow_decode(*args, **kwargs):
        blocker()
        try:
            return real_decode(*args, **kwargs)
        finally:
            finished.set()

    monkeypatch.setattr("app.web.routers.forward.decode_image", slow_decode)
    async with client_for(app) as client:
        r = await forward(client, png_bytes)
        assert r.status_code == 504
        assert "longer than this server's 0.05 s budget" in r.json()["detail"]["message"]
        # The abandoned job still holds the only worker: the next request is refused at once.
        assert gate.running == 1 and gate.in_flight == 1
        assert_busy(await forward(client, png_bytes))
        blocker.release.set()
        assert await asyncio.to_thread(finished.wait, WAIT)
    assert len(app.state.run_store) == 0  # its result was never kept as a run


def test_the_pool_defaults_to_the_cores_this_process_may_use_shared_by_the_workers(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    assert Settings().cpu_workers == cores
    assert Settings(workers=2).cpu_workers == max(1, cores // 2)
    assert Settings(workers=4 * cores).cpu_workers == 1
    monkeypatch.setenv("CNN_EXPLORER_WORKERS", "2")
    assert Settings().cpu_workers == max(1, cores // 2)
    assert Settings(cpu_workers=3).cpu_workers == 3  # set explicitly, it is kept


def test_the_pool_is_shared_by_workers_that_uvicorn_or_gunicorn_started(monkeypatch):
    # `uvicorn --workers N` or gunicorn, without the cnn-explorer command setting `workers`.
    monkeypatch.setattr(settings_module, "cpu_cores", lambda: 8)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert Settings().cpu_workers == 8
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    assert Settings().cpu_workers == 2
    monkeypatch.delenv("WEB_CONCURRENCY")
    # A uvicorn worker is a multiprocessing child; how many siblings it has is not said.
    monkeypatch.setattr(settings_module.multiprocessing, "parent_process", lambda: object())
    assert Settings().cpu_workers == 4
    assert Settings(workers=8).cpu_workers == 1


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_blas_threads_are_set_by_the_app_factory(make_app):
    assert blas_threads(), "NumPy's wheel bundles OpenBLAS, which threadpoolctl should see"
    with threadpool_limits(limits=None):  # restores the process's limits afterwards
        make_app(blas_threads=1)
        assert blas_threads() == {1}
        make_app(blas_threads=2)
        assert blas_threads() == {min(2, os.cpu_count() or 1)}
