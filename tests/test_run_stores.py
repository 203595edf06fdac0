"""The stores shared between worker processes (disk, Redis): the same promises as the memory
store (bounded by bytes and age, 404 for an unknown run), a run readable from another process,
and the API's run endpoints against every store."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import logging
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from app.cnn import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    InputSpec,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
    backprop,
    build_network,
    explain,
)
from app.cnn.backprop import Gradients
from app.errors import RunNotFoundError, RunTooLargeError
from app.settings import Settings
from app.storage.runs import DiskRunStore, disk, open_run_store, resolve_run_store
from app.storage.runs.blobs import (
    BlobError,
    NetworkKeys,
    RecentRuns,
    decode_gradients,
    decode_network,
    decode_run,
    encode_gradients,
    encode_network,
    encode_run,
)
from app.storage.runs.memory import MemoryRunStore, Run, RunStore, gradients_nbytes
from app.storage.runs.redis_store import RedisRunStore, RunStoreUnavailableError
from app.web.main import create_app
from tests.conftest import WORKED_EXAMPLE, client_for
from tests.redis_server import free_port
from tests.test_runs import FakeClock

API = "/api/v1"
SHARED = ["disk", "redis"]
EVERY = ["memory", *SHARED]

# 4x4 grey -> conv 2 (seeded 3x3) -> relu -> maxpool 2 -> flatten -> dense 3 softmax.
NETWORK = build_network(
    NetworkSpec(
        InputSpec(4, 4, 1),
        (
            ConvSpec(2, 3, padding=1, activation="none"),
            ReluSpec(),
            PoolSpec("max", 2),
            FlattenSpec(),
            DenseSpec(3, activation="softmax"),
        ),
        seed=5,
    )
)


def make_run(run_id: str, seed: int = 0, network=NETWORK) -> Run:
    """A run of `network` on random (4, 4, 1) pixels."""
    x = np.random.default_rng(seed).random(network.input_shape, dtype=np.float32)
    return Run(run_id, network, x, network.forward(x), labels=["a", "b", "c"], model="tiny")


def stored_sizes() -> tuple[int, int]:
    """(bytes of NETWORK's blob, bytes of one run's blob) in the shared stores."""
    key, network_blob = NetworkKeys().encode(NETWORK)
    return network_blob.nbytes, encode_run(make_run("r0"), key, time.time()).nbytes


def room_for(runs: int) -> int:
    """A max_bytes that holds the network and `runs` runs, not one more."""
    network, run = stored_sizes()
    return network + runs * run + run // 2


def gradients_of(run: Run, target: int = 1, loss: str = "cross_entropy") -> Gradients:
    """The engine's backward pass of a run."""
    return backprop.gradients(run.network, run.input, target, loss)


def charged(kind: str, runs: list[Run], grads: list[tuple[Run, Gradients]]) -> int:
    """The bytes a store of `kind` charges for these runs of NETWORK and gradient sets: in
    memory each Run's and Gradients' arrays, in a shared store their blobs and one network's."""
    if kind == "memory":
        return sum(r.nbytes for r in runs) + sum(gradients_nbytes(g, r) for r, g in grads)
    network, run = stored_sizes()
    return network + run * len(runs) + sum(encode_gradients(g).nbytes for _, g in grads)


def gradient_files(tmp_path: Path) -> list[str]:
    """The names of the gradient files of the disk store under tmp_path/runs."""
    return sorted(p.name for p in (tmp_path / "runs" / "gradients").iterdir())


def assert_same_gradients(got: Gradients | None, want: Gradients) -> None:
    """Every array bit for bit (dtype, shape and bytes), and the same layers without one."""
    assert got is not None
    assert (got.target, got.loss, got.loss_value) == (want.target, want.loss, want.loss_value)
    for field in dataclasses.fields(Gradients):
        mine, theirs = getattr(got, field.name), getattr(want, field.name)
        if isinstance(theirs, np.ndarray):
            mine, theirs = [mine], [theirs]
        elif not isinstance(theirs, list):
            continue
        assert len(mine) == len(theirs), field.name
        for a, b in zip(mine, theirs, strict=True):
            assert (a is None) == (b is None), field.name
            if b is not None:
                assert (a.dtype, a.shape) == (b.dtype, b.shape), field.name
                assert a.tobytes() == b.tobytes(), field.name


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the session's redis-server, emptied before each test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def make_store(request, tmp_path: Path) -> Iterator[Callable[..., RunStore]]:
    """make_store(kind, max_bytes, ttl_seconds, clock=None): a new store; two calls with the same
    kind share their runs, as two worker processes do."""
    made: list[RunStore] = []
    prefix = f"test-{uuid.uuid4().hex[:8]}:"

    def make(kind: str, max_bytes: int = 2**24, ttl_seconds: float = 60, clock=None) -> RunStore:
        timing = {} if clock is None else {"clock": clock}
        if kind == "memory":
            store = MemoryRunStore(max_bytes, ttl_seconds, **timing)
        elif kind == "disk":
            store = DiskRunStore(tmp_path / "runs", max_bytes, ttl_seconds, **timing)
        else:
            url = request.getfixturevalue("redis_url")
            store = RedisRunStore(url, max_bytes, ttl_seconds, prefix=prefix)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def assert_same_run(got: Run, want: Run) -> None:
    assert got.run_id == want.run_id and got.labels == want.labels and got.model == want.model
    np.testing.assert_array_equal(got.input, want.input)
    assert len(got.outputs) == len(want.outputs)
    for a, b in zip(got.outputs, want.outputs, strict=True):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


# -- blobs -------------------------------------------------------------------------------------
def test_a_network_blob_rebuilds_the_same_layers_whatever_made_the_weights():
    spec = NetworkSpec(
        InputSpec(6, 5, 3),
        (
            ConvSpec(4, 3, padding="same", init="sobel_x"),
            ConvSpec(2, 3, stride=1, padding=0, activation="none"),
            PoolSpec("avg", 2, stride=1, padding=1),
            FlattenSpec(),
            DenseSpec(2, weights=np.arange(2 * 5 * 4 * 2, dtype=np.float32).reshape(2, 40) / 99,
                      bias=np.array([0.5, -0.5], np.float32)),
        ),
        seed=11,
    )  # fmt: skip
    original = build_network(spec)
    rebuilt = decode_network(encode_network(original).to_bytes())
    assert [layer.type for layer in rebuilt.layers] == [layer.type for layer in original.layers]
    x = np.random.default_rng(1).random((6, 5, 3), dtype=np.float32)
    for a, b in zip(rebuilt.forward(x), original.forward(x), strict=True):
        np.testing.assert_array_equal(a, b)
    # The seed no longer matters: the stored weights are the ones the run used.
    assert rebuilt.spec.layers[2] == spec.layers[2] and rebuilt.spec.seed == 11


def test_a_run_blob_gives_back_read_only_views_of_the_same_arrays():
    run = make_run("r1")
    key, _ = NetworkKeys().encode(NETWORK)
    data = encode_run(run, key, created=0.0).to_bytes()
    back = decode_run(data, lambda k: NETWORK if k == key else pytest.fail(k))
    assert_same_run(back, run)
    assert not back.outputs[0].flags.writeable and back.outputs[0].base is not None


def test_equal_networks_have_one_key_and_different_weights_another():
    keys = NetworkKeys()
    again = build_network(NETWORK.spec)  # same spec, same seed: same weights
    other = build_network(NetworkSpec(NETWORK.spec.input, NETWORK.spec.layers, seed=6))
    assert keys.encode(NETWORK)[0] == keys.encode(again)[0] != keys.encode(other)[0]


def test_a_gradients_blob_gives_back_every_array_bit_for_bit_and_each_buffer_once():
    grads = gradients_of(make_run("r1"), target=2)
    blob = encode_gradients(grads)
    back = decode_gradients(blob.to_bytes())
    assert_same_gradients(back, grads)
    assert not back.input_grad.flags.writeable and back.input_grad.base is not None
    # a linear layer's dL/dz is its dL/dy: one array when kept, and one when read back
    assert grads.pre_activation_grads[0] is grads.output_grads[0]
    assert back.pre_activation_grads[0] is back.output_grads[0]
    copies = [None if a is None else a.copy() for a in grads.pre_activation_grads]
    unshared = dataclasses.replace(grads, pre_activation_grads=copies)
    assert blob.nbytes < encode_gradients(unshared).nbytes
    with pytest.raises(BlobError):
        decode_gradients(blob.to_bytes()[:-64])


@pytest.mark.parametrize("cut", [0, 7, 20, -1])
def test_a_truncated_blob_is_refused_not_misread(cut):
    data = encode_run(make_run("r1"), "k", created=0.0).to_bytes()
    with pytest.raises(BlobError):
        decode_run(data[:cut], lambda k: NETWORK)


def test_recent_runs_are_reused_only_for_the_version_decoded_and_stay_bounded():
    recent = RecentRuns(max_runs=2, max_bytes=1000)
    runs = {r: make_run(r) for r in ("r1", "r2", "r3")}
    recent.put("r1", 11, "net", runs["r1"], 100)
    assert recent.get("r1", 11) == ("net", runs["r1"])
    assert recent.get("r1", 12) is None  # the file was replaced since
    recent.put("r2", 21, "net", runs["r2"], 100)
    recent.put("r3", 31, "net", runs["r3"], 100)  # over max_runs: r1 goes
    assert recent.get("r1", 11) is None and recent.get("r3", 31) is not None
    recent.put("big", 1, "net", runs["r1"], 901)  # 901 + 100 > max_bytes: r2 and r3 go
    assert recent.get("r2", 21) is None and recent.get("r3", 31) is None
    recent.put("huge", 1, "net", runs["r1"], 1001)  # bigger than the whole cache: not kept
    assert recent.get("huge", 1) is None and recent.get("big", 1) is not None


# -- every store keeps the same promises ---------------------------------------------------------
@pytest.mark.parametrize("kind", SHARED)
def test_a_run_put_by_one_process_is_read_whole_by_another(make_store, kind):
    writer, reader = make_store(kind), make_store(kind)
    run = make_run("r1")
    writer.put(run)
    got = reader.get("r1")
    assert_same_run(got, run)
    inputs = [got.input, *got.outputs]
    want = explain(NETWORK, [run.input, *run.outputs], 4, i=1)
    assert explain(got.network, inputs, 4, i=1) == want  # the rebuilt weights explain the same
    assert len(reader) == 1


@pytest.mark.parametrize("kind", ["memory", *SHARED])
def test_an_unknown_run_is_the_same_404_in_every_store(make_store, kind):
    store = make_store(kind, ttl_seconds=3600)
    for run_id in ("abc", "../../etc/passwd", "x" * 100):
        with pytest.raises(RunNotFoundError) as e:
            store.get(run_id)
        assert e.value.status_code == 404
        assert f"Run {run_id} is unknown or expired" in e.value.message
        assert "60 minutes" in e.value.message and "POST /api/v1/forward again" in e.value.message


@pytest.mark.parametrize("kind", SHARED)
def test_the_least_recently_used_runs_go_first_when_bytes_run_out(make_store, kind):
    store = make_store(kind, max_bytes=room_for(3))
    for run_id in ("r1", "r2", "r3"):
        store.put(make_run(run_id))
    store.get("r1")  # r2 is now the least recently used
    store.put(make_run("r4"))
    with pytest.raises(RunNotFoundError):
        store.get("r2")
    assert [store.get(r).run_id for r in ("r1", "r3", "r4")] == ["r1", "r3", "r4"]
    assert len(store) == 3 and store.nbytes <= room_for(3)


@pytest.mark.parametrize("kind", SHARED)
def test_runs_of_one_network_share_its_stored_weights(make_store, kind):
    network, run = stored_sizes()
    store = make_store(kind)
    store.put(make_run("r1"))
    store.put(make_run("r2", seed=1))
    assert store.nbytes == network + 2 * run
    other = build_network(NetworkSpec(NETWORK.spec.input, NETWORK.spec.layers, seed=6))
    store.put(make_run("r3", network=other))
    assert store.nbytes == 2 * network + 3 * run


@pytest.mark.parametrize("kind", SHARED)
def test_a_run_larger_than_the_whole_store_is_refused(make_store, kind):
    network, run = stored_sizes()
    store = make_store(kind, max_bytes=network + run - 1)
    with pytest.raises(RunTooLargeError) as e:
        store.put(make_run("r1"))
    assert e.value.status_code == 413 and len(store) == 0 and store.nbytes == 0


@pytest.mark.parametrize("kind", SHARED)
def test_putting_the_same_id_again_replaces_it_without_counting_twice(make_store, kind):
    network, run = stored_sizes()
    store = make_store(kind)
    store.put(make_run("r1"))
    store.put(make_run("r1", seed=9))
    assert_same_run(store.get("r1"), make_run("r1", seed=9))
    assert len(store) == 1 and store.nbytes == network + run


@pytest.mark.parametrize("kind", SHARED)
def test_delete_forgets_a_run_and_ignores_unknown_ones(make_store, kind):
    store = make_store(kind)
    store.put(make_run("r1"))
    store.delete("r1")
    store.delete("never")
    assert len(store) == 0
    with pytest.raises(RunNotFoundError):
        store.get("r1")


@pytest.mark.parametrize("kind", SHARED)
def test_a_run_another_process_dropped_is_404_here_too(make_store, kind):
    here, there = make_store(kind, max_bytes=room_for(1)), make_store(kind, max_bytes=room_for(1))
    here.put(make_run("r1"))
    here.get("r1")  # now also among this process's recent runs
    there.put(make_run("r2"))  # evicts r1
    with pytest.raises(RunNotFoundError):
        here.get("r1")
    there.put(make_run("r1", seed=3))  # the same id again, elsewhere: read afresh
    assert_same_run(here.get("r1"), make_run("r1", seed=3))
    there.delete("r1")
    with pytest.raises(RunNotFoundError):
        here.get("r1")


def test_disk_runs_expire_after_the_ttl_since_their_last_use(make_store):
    clock = FakeClock()
    store = make_store("disk", ttl_seconds=60, clock=clock)
    store.put(make_run("r1"))
    store.put(make_run("r2"))
    clock.now += 50
    store.get("r1")  # used at +50, so kept until +110
    clock.now += 30
    assert store.get("r1").run_id == "r1"
    with pytest.raises(RunNotFoundError, match="kept 60 seconds"):
        store.get("r2")
    clock.now += 61
    with pytest.raises(RunNotFoundError):
        store.get("r1")
    assert len(store) == 0 and store.nbytes == 0  # the network expired with its last run


def test_redis_runs_expire_after_the_ttl_since_their_last_use(make_store, redis_client):
    store = make_store("redis", ttl_seconds=1.0)
    store.put(make_run("r1"))
    store.put(make_run("r2"))
    time.sleep(0.6)
    store.get("r1")  # renewed: kept until about +1.6
    time.sleep(0.6)
    assert store.get("r1").run_id == "r1"
    with pytest.raises(RunNotFoundError, match="kept 1 seconds"):
        store.get("r2")  # last used at 0, gone at about +1.0
    time.sleep(1.2)
    with pytest.raises(RunNotFoundError):
        store.get("r1")
    assert len(store) == 0 and store.nbytes == 0
    assert not [k for k in redis_client.keys("*") if b":run:" in k or b":net:" in k]


def test_a_run_whose_key_redis_dropped_is_404_and_leaves_the_index(make_store, redis_client):
    network, run = stored_sizes()
    store = make_store("redis")
    store.put(make_run("r1"))
    store.put(make_run("r2"))
    (dropped,) = [k for k in redis_client.keys("*:run:r1")]
    redis_client.delete(dropped)  # as maxmemory with volatile-lru would
    with pytest.raises(RunNotFoundError):
        store.get("r1")
    assert len(store) == 1 and store.nbytes == network + run


def test_redis_that_does_not_answer_is_a_503_without_the_password():
    port = free_port()  # nothing listens there
    store = RedisRunStore(
        f"redis://user:hunter2@127.0.0.1:{port}/0", 2**20, 60, timeout_seconds=0.5
    )
    for call in (lambda: store.get("r1"), lambda: store.put(make_run("r1"))):
        with pytest.raises(RunStoreUnavailableError) as e:
            call()
        assert e.value.status_code == 503
        assert f"127.0.0.1:{port}/0" in e.value.message and "hunter2" not in e.value.message
    store.close()


# -- gradients, kept with their run -----------------------------------------------------------
@pytest.mark.parametrize("kind", EVERY)
def test_gradients_put_by_one_process_come_back_bit_for_bit_in_another(make_store, kind):
    writer = make_store(kind)
    reader = writer if kind == "memory" else make_store(kind)  # another worker's store
    run = make_run("r1")
    writer.put(run)
    sets = [gradients_of(run, 1, "cross_entropy"), gradients_of(run, 2, "cross_entropy")]
    sets.append(gradients_of(run, 0, "score"))
    assert writer.put_gradients("r1", sets[0]) and writer.put_gradients("r1", sets[2])
    assert reader.put_gradients("r1", sets[1])  # and the other way round
    for grads in sets:
        for store in (reader, writer):
            assert_same_gradients(store.get_gradients("r1", grads.target, grads.loss), grads)
    assert reader.get_gradients("r1", 0, "cross_entropy") is None  # never put
    assert reader.get_gradients("r2", 1, "cross_entropy") is None  # no such run
    assert reader.get_gradients("../etc", 1, "cross_entropy") is None
    assert writer.nbytes == charged(kind, [run], [(run, g) for g in sets])
    assert writer.put_gradients("r1", sets[0])  # again: replaced, not counted twice
    assert writer.nbytes == charged(kind, [run], [(run, g) for g in sets]) and len(reader) == 1


@pytest.mark.parametrize("kind", EVERY)
def test_gradients_count_towards_the_bytes_and_go_with_their_run(make_store, kind, tmp_path):
    runs = {r: make_run(r, seed=i) for i, r in enumerate(("r1", "r2", "r3"))}
    grads = {r: gradients_of(run) for r, run in runs.items()}
    r1, r2, r3 = runs.values()
    # r1 with its gradients and r2, and less than one more run or gradient set (>= 648 bytes)
    room = charged(kind, [r1, r2], [(r1, grads["r1"])]) + 100
    store = make_store(kind, max_bytes=room)
    store.put(r1)
    assert store.put_gradients("r1", grads["r1"])
    store.put(r2)
    assert store.get_gradients("r1", 1, "cross_entropy") is not None  # a use of r1: r2 is older
    store.put(r3)  # no room: r2 goes
    with pytest.raises(RunNotFoundError):
        store.get("r2")
    assert store.nbytes == charged(kind, [r1, r3], [(r1, grads["r1"])])
    assert store.put_gradients("r3", grads["r3"])  # no room: r1 goes, with its gradients
    with pytest.raises(RunNotFoundError):
        store.get("r1")
    assert store.get_gradients("r1", 1, "cross_entropy") is None
    assert_same_gradients(store.get_gradients("r3", 1, "cross_entropy"), grads["r3"])
    assert not store.put_gradients("r1", grads["r1"])  # a run that is gone keeps none
    assert store.nbytes == charged(kind, [r3], [(r3, grads["r3"])]) <= room  # no orphan bytes
    assert len(store) == 1
    if kind == "disk":
        assert gradient_files(tmp_path) == ["r3.1.cross_entropy.grad"]


@pytest.mark.parametrize("kind", EVERY)
def test_deleting_or_replacing_a_run_drops_its_gradients(make_store, kind, tmp_path):
    store = make_store(kind)
    run = make_run("r1")
    store.put(run)
    assert store.put_gradients("r1", gradients_of(run))
    store.delete("r1")
    assert store.get_gradients("r1", 1, "cross_entropy") is None
    assert store.nbytes == charged(kind, [], [])  # a shared store keeps the network a while
    store.put(run)
    assert store.get_gradients("r1", 1, "cross_entropy") is None  # not back with the run
    assert store.put_gradients("r1", gradients_of(run))
    other = make_run("r1", seed=9)
    store.put(other)  # the same id again: the gradients were of the run it replaces
    assert store.get_gradients("r1", 1, "cross_entropy") is None
    assert store.nbytes == charged(kind, [other], [])
    if kind == "disk":
        assert gradient_files(tmp_path) == []


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_gradients_are_a_use_of_their_run_and_expire_with_it(make_store, kind, tmp_path):
    clock = FakeClock()
    store = make_store(kind, ttl_seconds=60, clock=clock)
    run = make_run("r1")
    store.put(run)
    assert store.put_gradients("r1", gradients_of(run))
    store.put(make_run("r2"))
    clock.now += 50
    assert store.get_gradients("r1", 1, "cross_entropy") is not None  # renews r1
    clock.now += 30
    assert store.get("r1").run_id == "r1"
    with pytest.raises(RunNotFoundError):
        store.get("r2")
    clock.now += 61
    assert store.get_gradients("r1", 1, "cross_entropy") is None
    with pytest.raises(RunNotFoundError):
        store.get("r1")
    three = make_run("r3")
    store.put(three)
    assert store.nbytes == charged(kind, [three], []) and len(store) == 1
    if kind == "disk":
        assert gradient_files(tmp_path) == []


def test_redis_gradients_are_a_use_of_their_run_and_expire_with_it(make_store, redis_client):
    store = make_store("redis", ttl_seconds=1.0)
    run = make_run("r1")
    store.put(run)
    assert store.put_gradients("r1", gradients_of(run))
    time.sleep(0.6)
    assert store.get_gradients("r1", 1, "cross_entropy") is not None  # renews r1
    time.sleep(0.6)
    assert store.get("r1").run_id == "r1"  # would have gone at about +1.0
    time.sleep(1.2)
    assert store.get_gradients("r1", 1, "cross_entropy") is None
    assert len(store) == 0 and store.nbytes == 0
    assert not [k for k in redis_client.keys("*") if b":run:" in k or b":net:" in k]


@pytest.mark.parametrize("kind", EVERY)
def test_gradients_bigger_than_the_whole_store_are_not_kept(make_store, kind):
    run = make_run("r1")
    grads = gradients_of(run)
    size = charged(kind, [], [(run, grads)]) - charged(kind, [], [])
    assert charged(kind, [run], []) < size  # the run fits where its gradients never could
    store = make_store(kind, max_bytes=size - 1)
    store.put(run)
    assert not store.put_gradients("r1", grads)
    assert store.get_gradients("r1", 1, "cross_entropy") is None
    assert store.get("r1").run_id == "r1" and store.nbytes == charged(kind, [run], [])


@pytest.mark.parametrize("kind", EVERY)
def test_gradients_that_do_not_fit_beside_their_run_drop_nothing(make_store, kind):
    one, two = make_run("r1"), make_run("r2", seed=1)
    grads = gradients_of(two)
    store = make_store(kind, max_bytes=charged(kind, [two], [(two, grads)]) - 1)
    store.put(one)
    store.put(two)
    assert not store.put_gradients("r2", grads)  # only dropping r2 itself would make room
    assert [store.get(r).run_id for r in ("r1", "r2")] == ["r1", "r2"]
    assert store.nbytes == charged(kind, [one, two], [])


@pytest.mark.parametrize("kind", SHARED)
def test_gradients_of_a_run_another_process_dropped_are_gone_here_too(make_store, kind):
    here, there = make_store(kind), make_store(kind)
    run = make_run("r1")
    here.put(run)
    assert here.put_gradients("r1", gradients_of(run))
    assert there.get_gradients("r1", 1, "cross_entropy") is not None  # read, and decoded there
    here.delete("r1")
    assert there.get_gradients("r1", 1, "cross_entropy") is None


def test_a_full_disk_keeps_no_gradients_and_says_why(make_store, tmp_path, monkeypatch, caplog):
    store = make_store("disk")
    run = make_run("r1")
    store.put(run)
    replace = os.replace

    def full(source, target):
        if str(target).endswith(".grad"):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(disk.os, "replace", full)
    with caplog.at_level(logging.WARNING, logger="cnn_explorer"):
        assert not store.put_gradients("r1", gradients_of(run))
    assert "gradients of run r1 not kept" in caplog.text and "No space left" in caplog.text
    assert store.get_gradients("r1", 1, "cross_entropy") is None
    assert gradient_files(tmp_path) == [] and list((tmp_path / "runs" / "tmp").iterdir()) == []
    assert store.get("r1").run_id == "r1" and store.nbytes == charged("disk", [run], [])


def test_a_redis_out_of_memory_keeps_no_gradients_and_says_why(make_store, redis_client, caplog):
    store = make_store("redis")
    run = make_run("r1")
    store.put(run)
    before = redis_client.config_get("maxmemory*")
    redis_client.config_set("maxmemory-policy", "noeviction")  # refuse writes, drop nothing
    redis_client.config_set("maxmemory", 1)
    try:
        with caplog.at_level(logging.WARNING, logger="cnn_explorer"):
            assert not store.put_gradients("r1", gradients_of(run))
    finally:
        redis_client.config_set("maxmemory", before["maxmemory"])
        redis_client.config_set("maxmemory-policy", before["maxmemory-policy"])
    assert "gradients of run r1 not kept" in caplog.text and "maxmemory" in caplog.text
    assert store.get_gradients("r1", 1, "cross_entropy") is None
    assert store.get("r1").run_id == "r1" and store.nbytes == charged("redis", [run], [])


def test_redis_that_does_not_answer_keeps_no_gradients_and_reads_are_a_503(caplog):
    port = free_port()  # nothing listens there
    store = RedisRunStore(f"redis://127.0.0.1:{port}/0", 2**20, 60, timeout_seconds=0.5)
    with caplog.at_level(logging.WARNING, logger="cnn_explorer"):
        assert not store.put_gradients("r1", gradients_of(make_run("r1")))
    assert "gradients of run r1 not kept" in caplog.text
    with pytest.raises(RunStoreUnavailableError) as e:
        store.get_gradients("r1", 1, "cross_entropy")
    assert e.value.status_code == 503
    store.close()


# -- disk: files, partial writes, other processes ----------------------------------------------
def test_disk_never_serves_a_damaged_or_unfinished_file(make_store, tmp_path):
    make_store("disk").put(make_run("r1"))
    path = tmp_path / "runs" / "runs" / "r1.run"
    whole = path.read_bytes()
    for damaged in (b"", whole[:100], whole[: len(whole) // 2], b"not a run" * 10):
        path.write_bytes(damaged)
        with pytest.raises(RunNotFoundError):
            make_store("disk").get("r1")  # another worker's first look
    unfinished = tmp_path / "runs" / "tmp" / "r2.run"  # a writer that is still writing
    unfinished.write_bytes(whole)
    with pytest.raises(RunNotFoundError):
        make_store("disk").get("r2")


def test_disk_sweeps_files_left_by_a_writer_that_died(make_store, tmp_path):
    store = make_store("disk")
    tmp = tmp_path / "runs" / "tmp"
    old, young = tmp / "old.tmp", tmp / "young.tmp"
    for leftover in (old, young):
        leftover.write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    store.put(make_run("r1"))
    assert sorted(p.name for p in tmp.iterdir()) == ["young.tmp"]  # young may be in progress


def _put_many(root: str, max_bytes: int, worker: int, errors: multiprocessing.Queue) -> None:
    """One process of the concurrency test: puts 15 runs and reads its neighbours' runs."""
    try:
        store = DiskRunStore(Path(root), max_bytes, 60)
        for i in range(15):
            store.put(make_run(f"w{worker}-{i:02d}", seed=i))
            with contextlib.suppress(RunNotFoundError):
                got = store.get(f"w{(worker + 1) % 3}-{max(i - 1, 0):02d}")
                assert len(got.outputs) == len(NETWORK.layers)
    except BaseException as e:  # noqa: BLE001 - reported to the test
        errors.put(repr(e))


def test_disk_processes_putting_at_once_keep_the_byte_bound(tmp_path):
    max_bytes = room_for(5)
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    root = str(tmp_path / "runs")
    DiskRunStore(Path(root), max_bytes, 60)  # the directories exist before the race
    processes = [
        context.Process(target=_put_many, args=(root, max_bytes, w, errors)) for w in range(3)
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert errors.empty(), errors.get()
    store = DiskRunStore(Path(root), max_bytes, 60)
    assert len(store) == 5 and store.nbytes <= max_bytes
    for path in (tmp_path / "runs" / "runs").iterdir():
        assert_same_run(store.get(path.stem), make_run(path.stem, seed=int(path.stem[-2:])))
    assert list((tmp_path / "runs" / "tmp").iterdir()) == []


# -- choosing a store --------------------------------------------------------------------------
def test_auto_is_memory_for_one_worker_and_disk_for_more(settings, monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert resolve_run_store(settings) == "memory"
    assert isinstance(open_run_store(settings), MemoryRunStore)
    two = settings.model_copy(update={"workers": 2})
    assert resolve_run_store(two) == f"disk://{(settings.data_dir / 'runs').resolve()}"
    store = open_run_store(two)
    assert isinstance(store, DiskRunStore) and (settings.data_dir / "runs" / "runs").is_dir()
    monkeypatch.setenv("WEB_CONCURRENCY", "3")  # uvicorn's and gunicorn's --workers default
    assert resolve_run_store(settings).startswith("disk://")


def test_a_store_can_be_named_explicitly(settings, tmp_path, redis_url):
    memory = settings.model_copy(update={"run_store": "memory", "workers": 4})
    assert isinstance(open_run_store(memory), MemoryRunStore)
    elsewhere = settings.model_copy(update={"run_store": f"disk://{tmp_path}/elsewhere"})
    assert open_run_store(elsewhere).root == tmp_path / "elsewhere"
    relative = settings.model_copy(update={"run_store": "disk://runs"})
    with pytest.raises(ValueError, match="absolute path"):
        open_run_store(relative)
    shared = open_run_store(settings.model_copy(update={"run_store": redis_url}))
    assert isinstance(shared, RedisRunStore) and shared.url == redis_url
    shared.close()
    with pytest.raises(ValueError, match="run_store"):
        Settings(run_store="postgres://db")


# -- the API against every store ---------------------------------------------------------------
@pytest.fixture(params=["memory", "disk", "redis"])
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def make_store_app(request, store_kind: str, settings: Settings):
    """create_app with run_store set to store_kind; apps made by one test share their runs
    (except with memory), like the worker processes of one server."""
    run_store = store_kind
    if store_kind == "redis":
        run_store = request.getfixturevalue("redis_url")
        request.getfixturevalue("redis_client")  # an empty database
    apps = []

    def make(**overrides: object):
        app = create_app(settings.model_copy(update={"run_store": run_store, **overrides}))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.run_store.close()


async def forward(client: httpx.AsyncClient, png: bytes) -> dict:
    r = await client.post(
        f"{API}/forward",
        files={"image": ("image.png", png, "image/png")},
        data={"network": json.dumps(WORKED_EXAMPLE)},
    )
    assert r.status_code == 200, r.text
    return r.json()


def run_urls(body: dict) -> list[str]:
    """Every URL of a run: input, and each layer's grid, first channel, .npy and an explanation."""
    urls = [body["input_url"]]
    for layer in body["layers"]:
        at = "?i=0" if len(layer["output_shape"]) == 1 else "?y=0&x=0&c=0"
        urls += [layer["grid_url"], layer["channel_url"].replace("{c}", "0"),
                 layer["array_url"], layer["explain_url"] + at]  # fmt: skip
    return urls


@pytest.mark.anyio
async def test_every_run_url_answers_from_another_worker_of_a_shared_store(
    make_store_app, store_kind, png_bytes
):
    one, other = make_store_app(), make_store_app()
    async with client_for(one) as first, client_for(other) as second:
        body = await forward(first, png_bytes)
        for url in run_urls(body):
            mine, theirs = await first.get(url), await second.get(url)
            assert mine.status_code == 200, (url, mine.text)
            if store_kind == "memory":  # the reason shared stores exist
                assert theirs.status_code == 404
                continue
            assert theirs.status_code == 200, (url, theirs.text)
            assert theirs.content == mine.content
        conv = body["layers"][0]
        a = np.load(io.BytesIO((await first.get(conv["array_url"])).content))
        assert a.shape == (32, 32, 10) and a.dtype == np.float32


@pytest.mark.anyio
async def test_an_unknown_run_is_404_with_what_to_do_in_every_store(make_store_app, png_bytes):
    async with client_for(make_store_app()) as client:
        body = await forward(client, png_bytes)
        for url in run_urls(body):
            r = await client.get(url.replace(body["run_id"], "abc"))
            assert r.status_code == 404, url
            message = r.json()["detail"]["message"]
            assert "Run abc is unknown or expired" in message
            assert "POST /api/v1/forward again" in message


@pytest.mark.anyio
async def test_a_run_evicted_by_the_byte_bound_is_404_in_every_store(make_store_app, png_bytes):
    measure = make_store_app()
    store = measure.state.run_store
    async with client_for(measure) as client:
        runs = [(await forward(client, png_bytes))["run_id"] for _ in range(2)]
    two_runs = store.nbytes  # and, in a shared store, the network they share
    for run_id in runs:
        store.delete(run_id)

    app = make_store_app(run_store_max_bytes=two_runs - 1)
    async with client_for(app) as client:
        first = await forward(client, png_bytes)
        second = await forward(client, png_bytes)
        r = await client.get(first["layers"][0]["grid_url"])
        assert r.status_code == 404
        assert f"Run {first['run_id']} is unknown or expired" in r.json()["detail"]["message"]
        assert (await client.get(second["layers"][0]["grid_url"])).status_code == 200
    assert len(app.state.run_store) == 1


@pytest.mark.anyio
async def test_gradients_one_worker_computed_are_served_by_another_of_a_shared_store(
    make_store_app, store_kind, png_bytes, monkeypatch
):
    computed = []  # (target, loss) of each backward pass the apps compute
    real = backprop.gradients

    def counted(network, image, target, loss):
        computed.append((target, loss))
        return real(network, image, target, loss)

    monkeypatch.setattr(backprop, "gradients", counted)
    one, other = make_store_app(), make_store_app()
    async with client_for(one) as first, client_for(other) as second:
        body = await forward(first, png_bytes)
        urls = [f"{API}/runs/{body['run_id']}/{path}?target=1" for path in
                ("gradients", "input_gradient.npy", "layers/0/gradient.npy")]  # fmt: skip
        mine = [await first.get(url) for url in urls]
        assert [r.status_code for r in mine] == [200] * 3 and len(computed) == 1
        for url, a in zip(urls, mine, strict=True):
            theirs = await second.get(url)
            if store_kind == "memory":
                assert theirs.status_code == 404
                continue
            assert theirs.status_code == 200 and theirs.content == a.content, url
        assert computed == [(1, "cross_entropy")]
