"""Training jobs shared by worker processes through data_dir/jobs: two apps on one data dir
stand for two workers (each has its own TrainingJobs, as each uvicorn worker does), and one test
kills a real process in the middle of a job.

Status, events, list and cancel answer from either app; train_max_jobs counts both apps' jobs;
a job whose process died reads as failed; old job files are pruned, saved models never.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.settings import Settings
from app.storage.jobs import JobFiles
from tests.conftest import client_for
from tests.test_training_api import (
    API,
    EXAMPLES,
    LONG,
    LONG_APP,
    final,
    job,
    parse_events,
    saved_files,
)

# Worker processes: make test-quick leaves them out.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def two_apps(make_app: Callable[..., FastAPI]) -> Iterator[Callable[..., tuple[FastAPI, FastAPI]]]:
    """two_apps(**settings) -> two apps on the same data dir; their jobs are stopped after."""
    made: list[FastAPI] = []

    def make(**overrides: object) -> tuple[FastAPI, FastAPI]:
        overrides.setdefault("train_max_examples", EXAMPLES)
        overrides.setdefault("train_threads", 1)
        pair = (make_app(**overrides), make_app(**overrides))
        made.extend(pair)
        return pair

    yield make
    for app in made:
        app.state.training_jobs.shutdown(wait_seconds=10)


async def start(client, **changes: object) -> str:
    r = await client.post(f"{API}/train", json=job(**changes))
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


async def wait_for(client, job_id: str, done: Callable[[dict], bool], seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = await client.get(f"{API}/train/{job_id}")
        assert r.status_code == 200, r.text
        if done(r.json()):
            return r.json()
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} never got there: {r.json()}")


def jobs_dir(settings: Settings) -> Path:
    return settings.data_dir / "jobs"


async def test_a_job_started_on_one_worker_is_followed_and_listed_on_the_other(two_apps) -> None:
    a, b = two_apps(**LONG_APP)
    async with client_for(a) as ca, client_for(b) as cb:
        job_id = await start(ca, name="shared", **LONG)
        seen = await wait_for(cb, job_id, lambda s: s["step"] >= 2)
        assert seen["status"] == "running" and seen["job_id"] == job_id
        owner_view = (await ca.get(f"{API}/train/{job_id}")).json()
        for key in ("config", "network", "labels", "created", "total_steps", "train_examples"):
            assert seen[key] == owner_view[key], key
        later = await wait_for(cb, job_id, lambda s: s["step"] > seen["step"])
        # The same losses the owner recorded (thinned later, so a subset of the earlier ones).
        last_seen = seen["batch_losses"][-1][0]
        early = {tuple(p) for p in later["batch_losses"] if p[0] <= last_seen}
        assert early and early <= {tuple(p) for p in seen["batch_losses"]}
        assert [j["job_id"] for j in (await cb.get(f"{API}/train")).json()] == [job_id]
        assert [j["job_id"] for j in (await ca.get(f"{API}/train")).json()] == [job_id]
        await ca.post(f"{API}/train/{job_id}/cancel")
        await wait_for(cb, job_id, final)
        r = await cb.get(f"{API}/train/{'0' * 16}")
        assert r.status_code == 404 and "GET /api/v1/models" in r.json()["detail"]["message"]


async def test_the_other_workers_event_stream_follows_the_file_to_the_end(two_apps) -> None:
    a, b = two_apps()
    async with client_for(a) as ca, client_for(b) as cb:
        job_id = await start(ca, epochs=5)
        async with cb.stream("GET", f"{API}/train/{job_id}/events") as r:
            assert r.status_code == 200
            text = "".join([chunk async for chunk in r.aiter_text()])
        owner_view = (await ca.get(f"{API}/train/{job_id}")).json()
    events = parse_events(text)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and set(kinds[:-1]) <= {"progress"}
    steps = [data["step"] for _, data in events]
    assert steps == sorted(steps)
    last = events[-1][1]
    assert last["status"] == "done" and last["saved_model"] == "my-digits"
    assert len(last["history"]) == 5 and last["step"] == last["total_steps"]
    assert last == owner_view  # the file holds the final state whole


async def test_cancel_through_the_other_worker_stops_the_job_and_saves_nothing(
    two_apps, settings
) -> None:
    a, b = two_apps(**LONG_APP)
    async with client_for(a) as ca, client_for(b) as cb:
        job_id = await start(ca, **LONG)
        await wait_for(cb, job_id, lambda s: s["step"] >= 1)
        r = await cb.post(f"{API}/train/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["job_id"] == job_id
        assert r.json()["message"] == "Stopping at the end of the current batch…"
        status = await wait_for(ca, job_id, final, seconds=30)
        assert (await cb.get(f"{API}/train/{job_id}")).json()["status"] == "cancelled"
    assert status["status"] == "cancelled" and status["saved_model"] is None
    assert 1 <= status["step"] < status["total_steps"]
    assert "nothing was saved" in status["message"]
    assert saved_files(settings) == []
    assert not list(jobs_dir(settings).glob("*.cancel"))


async def test_a_cancel_that_arrives_as_the_job_ends_leaves_no_request_behind(
    two_apps, settings, monkeypatch
) -> None:
    # The other worker last saw the job running; it ended (and cleared its requests) since.
    a, b = two_apps()
    async with client_for(a) as ca, client_for(b) as cb:
        job_id = await start(ca)
        done = await wait_for(ca, job_id, final)
        other = b.state.training_jobs
        stale = {**done, "status": "running"}
        real_snapshot = other.snapshot
        calls = []

        def snapshot_seen_before_the_end(job):
            calls.append(job.job_id)
            return dict(stale) if len(calls) == 1 else real_snapshot(job)

        monkeypatch.setattr(other, "snapshot", snapshot_seen_before_the_end)
        r = await cb.post(f"{API}/train/{job_id}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "done" and r.json()["message"] == done["message"]
    assert not list(jobs_dir(settings).glob("*.cancel"))


async def test_cancel_with_save_through_the_other_worker_keeps_the_weights(two_apps) -> None:
    a, b = two_apps(**LONG_APP)
    async with client_for(a) as ca, client_for(b) as cb:
        job_id = await start(ca, name="halfway", **LONG)
        await wait_for(cb, job_id, lambda s: s["step"] >= 3)
        await cb.post(f"{API}/train/{job_id}/cancel?save=true")
        status = await wait_for(cb, job_id, final, seconds=30)
        assert status["status"] == "cancelled" and status["saved_model"] == "halfway"
        assert "were saved as 'halfway'" in status["message"]
        models = {m["name"]: m for m in (await cb.get(f"{API}/models")).json()}
        assert models["halfway"]["accuracy"] == round(status["final_accuracy"], 4)


async def test_train_max_jobs_counts_the_jobs_of_every_worker(two_apps) -> None:
    a, b = two_apps(**LONG_APP)
    async with client_for(a) as ca, client_for(b) as cb:
        first = await start(ca, **LONG)
        await wait_for(cb, first, lambda s: s["step"] >= 1)
        r = await cb.post(f"{API}/train", json=job())
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 600
        assert (
            "1 training job(s) are running, the most this server runs at once (1)"
            in (r.json()["detail"]["message"])
        )
        await cb.post(f"{API}/train/{first}/cancel")
        await wait_for(cb, first, final, seconds=30)
        second = await start(cb, epochs=1)  # the slot is free as soon as the end is seen
        assert (await wait_for(ca, second, final))["status"] == "done"
    a, b = two_apps(train_max_jobs=2, **LONG_APP)
    async with client_for(a) as ca, client_for(b) as cb:
        ids = [await start(ca, **LONG), await start(cb, **LONG)]
        for client in (ca, cb):
            r = await client.post(f"{API}/train", json=job())
            assert r.status_code == 429 and "at once (2)" in r.json()["detail"]["message"]
        for job_id in ids:
            await ca.post(f"{API}/train/{job_id}/cancel")


async def test_a_name_being_trained_on_one_worker_is_taken_for_the_other(two_apps) -> None:
    a, b = two_apps(train_max_jobs=2, **LONG_APP)
    async with client_for(a) as ca, client_for(b) as cb:
        first = await start(ca, name="mine", **LONG)
        r = await cb.post(f"{API}/train", json=job(name="mine"))
        assert r.status_code == 409
        unnamed = await start(cb, **LONG)
        assert (await ca.get(f"{API}/train/{unnamed}")).json()["status"] in ("queued", "running")
        for job_id in (first, unnamed):
            await cb.post(f"{API}/train/{job_id}/cancel")
            await wait_for(ca, job_id, final, seconds=30)


async def test_only_the_newest_finished_jobs_of_all_workers_are_kept_models_stay(
    two_apps, settings
) -> None:
    a, b = two_apps(train_jobs_kept=2)
    ids = []
    async with client_for(a) as ca, client_for(b) as cb:
        for n, client in enumerate((ca, cb, ca, cb)):
            ids.append(await start(client, epochs=1, name=f"kept-{n}"))
            await wait_for(client, ids[-1], final)
        for client in (ca, cb):
            listed = (await client.get(f"{API}/train")).json()
            assert [j["job_id"] for j in listed] == ids[2:]
            for old in ids[:2]:
                assert (await client.get(f"{API}/train/{old}")).status_code == 404
                assert (await client.get(f"{API}/train/{old}/events")).status_code == 404
                assert (await client.post(f"{API}/train/{old}/cancel")).status_code == 404
    assert sorted(p.stem for p in jobs_dir(settings).glob("*.json")) == sorted(ids[2:])
    assert saved_files(settings) == [
        f"kept-{n}{ext}" for n in range(4) for ext in (".json", ".npz")
    ]


CRASHING_WORKER = """
import json, sys, time
from app.web.main import create_app
from app.settings import Settings
from app.train_schemas import TrainRequest

settings = Settings.model_validate_json(sys.argv[1])
jobs = create_app(settings).state.training_jobs
job = jobs.start(TrainRequest.model_validate_json(sys.argv[2]))
print(job.job_id, flush=True)
time.sleep(600)
"""


def start_in_a_process_then_kill_it(settings: Settings, body: dict) -> str:
    """Start a job in a separate Python process, wait until its file shows a step, SIGKILL the
    process (no shutdown, no final write): the job's id."""
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WORKER, settings.model_dump_json(), json.dumps(body)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        job_id = process.stdout.readline().strip()
        assert job_id, "the worker process did not start a job"
        path = jobs_dir(settings) / f"{job_id}.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if path.exists() and json.loads(path.read_bytes())["state"]["step"] >= 1:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the job in the other process never reported a step")
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    return job_id


async def test_a_job_whose_process_died_reads_as_failed_and_frees_its_slot(
    two_apps, settings
) -> None:
    a, _ = two_apps(**LONG_APP)
    job_settings = settings.model_copy(update={"train_threads": 1, **LONG_APP})
    job_id = start_in_a_process_then_kill_it(job_settings, job(**LONG))
    on_disk = json.loads((jobs_dir(settings) / f"{job_id}.json").read_bytes())
    assert on_disk["state"]["status"] == "running"  # what the dead process left
    async with client_for(a) as client:
        status = (await client.get(f"{API}/train/{job_id}")).json()
        assert status["status"] == "failed" and status["finished"] is not None
        assert status["message"].startswith("The server process running this job stopped at step")
        assert f"of {status['total_steps']}" in status["message"]
        r = await client.get(f"{API}/train/{job_id}/events")
        assert [kind for kind, _ in parse_events(r.text)] == ["end"]
        r = await client.post(f"{API}/train/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "failed"
        listed = (await client.get(f"{API}/train")).json()
        assert [(j["job_id"], j["status"]) for j in listed] == [(job_id, "failed")]
        # The dead process's slot is free again: train_max_jobs is 1.
        second = await start(client, epochs=1)
        assert (await wait_for(client, second, final))["status"] == "done"
    assert not list(jobs_dir(settings).glob("*.cancel"))


def test_slots_exclude_each_other_and_tell_a_live_owner_from_a_gone_one(tmp_path) -> None:
    one, other = JobFiles(tmp_path), JobFiles(tmp_path)
    with one.locked():
        slot = one.take_slot(2, "a" * 16)
    with other.locked():
        second = other.take_slot(2, "b" * 16)
        assert other.take_slot(2, "c" * 16) is None  # both taken
    assert (slot.index, second.index) == (0, 1)
    record = {"job_id": "a" * 16, "owner": {"pid": 1, "host": "elsewhere", "slot": 0}}
    with other.locked():
        assert other.owner_alive(record)
        assert not other.owner_alive(record | {"job_id": "d" * 16})  # the slot names another job
    slot.release()
    with other.locked():
        assert not other.owner_alive(record)
        third = other.take_slot(2, "c" * 16)
    assert third.index == 0
    second.release()
    third.release()
