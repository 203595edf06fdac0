"""The run store (bytes and age bounds, least recently used first out) and the PNG cache."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest

from app.cnn import ConvSpec, InputSpec, NetworkSpec, ReluSpec, build_network
from app.errors import RunNotFoundError, RunTooLargeError
from app.storage.runs.memory import MemoryRunStore, Run, describe_ttl
from app.web.render_cache import RenderCache

NETWORK = build_network(NetworkSpec(InputSpec(4, 4, 1), (ReluSpec(),)))


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_run(run_id: str, values: int = 16) -> Run:
    """A run whose input is 16 float32 values and whose one output has `values` of them."""
    x = np.zeros((4, 4, 1), np.float32)
    return Run(run_id, NETWORK, x, [np.zeros(values, np.float32)])


def test_a_run_counts_the_bytes_of_its_input_and_outputs():
    assert make_run("a", values=100).nbytes == 4 * 16 + 4 * 100


def test_a_run_counts_the_whole_array_a_view_keeps_alive():
    # A conv computed on the padded width returns a view; the run holds the wider array.
    x = np.zeros((4, 4, 1), np.float32)
    wide = np.zeros((10, 14, 3), np.float32)
    run = Run("v", NETWORK, x, [wide[:, :10], wide[2:, 1:][::2]])
    assert run.nbytes == 4 * 16 + 2 * wide.nbytes
    conv = build_network(
        NetworkSpec(InputSpec(9, 9, 3), (ConvSpec(filters=2, kernel_size=5, padding=2),))
    )
    image = np.ones((9, 9, 3), np.float32)
    out = conv.forward(image)[0]
    assert out.shape == (9, 9, 2)
    assert Run("c", conv, image, [out]).nbytes >= image.nbytes + out.nbytes


def test_put_then_get_returns_the_same_run():
    store = MemoryRunStore(max_bytes=10_000, ttl_seconds=60)
    run = make_run("a")
    store.put(run)
    assert store.get("a") is run and len(store) == 1 and store.nbytes == run.nbytes


def test_an_unknown_run_is_not_found_with_what_to_do():
    store = MemoryRunStore(max_bytes=10_000, ttl_seconds=3600)
    with pytest.raises(RunNotFoundError) as e:
        store.get("abc")
    assert e.value.status_code == 404
    assert "Run abc is unknown or expired" in e.value.message
    assert "60 minutes" in e.value.message and "POST /api/v1/forward again" in e.value.message


def test_the_oldest_runs_are_dropped_when_bytes_run_out():
    one = make_run("x").nbytes
    store = MemoryRunStore(max_bytes=3 * one, ttl_seconds=60)
    for name in "abcd":
        store.put(make_run(name))
    with pytest.raises(RunNotFoundError):
        store.get("a")
    assert [store.get(n).run_id for n in "bcd"] == ["b", "c", "d"]
    assert store.nbytes == 3 * one


def test_using_a_run_keeps_it_over_older_unused_ones():
    one = make_run("x").nbytes
    store = MemoryRunStore(max_bytes=2 * one, ttl_seconds=60)
    store.put(make_run("a"))
    store.put(make_run("b"))
    store.get("a")  # a is now the most recently used
    store.put(make_run("c"))
    assert store.get("a").run_id == "a"
    with pytest.raises(RunNotFoundError):
        store.get("b")


def test_one_big_run_evicts_several_small_ones():
    small = make_run("x").nbytes
    store = MemoryRunStore(max_bytes=4 * small, ttl_seconds=60)
    for name in "abc":
        store.put(make_run(name))
    big = make_run("big", values=(4 * small - 4 * 16) // 4)  # fills the whole store
    assert big.nbytes == 4 * small
    store.put(big)
    assert len(store) == 1 and store.nbytes == big.nbytes
    half = make_run("half", values=(2 * small - 4 * 16) // 4)
    store.put(half)  # the big run must go; the half-size one stays alone
    assert len(store) == 1 and store.get("half") is half


def test_a_run_larger_than_the_whole_store_is_refused():
    store = MemoryRunStore(max_bytes=100, ttl_seconds=60)
    with pytest.raises(RunTooLargeError) as e:
        store.put(make_run("a", values=1000))
    assert e.value.status_code == 413 and len(store) == 0


def test_putting_the_same_id_again_replaces_it_without_counting_twice():
    store = MemoryRunStore(max_bytes=10_000, ttl_seconds=60)
    store.put(make_run("a"))
    replacement = make_run("a", values=32)
    store.put(replacement)
    assert store.get("a") is replacement and store.nbytes == replacement.nbytes


def test_runs_expire_after_the_ttl_since_their_last_use():
    clock = FakeClock()
    store = MemoryRunStore(max_bytes=10_000, ttl_seconds=60, clock=clock)
    store.put(make_run("a"))
    store.put(make_run("b"))
    clock.now += 50
    store.get("a")  # used at +50, so kept until +110
    clock.now += 30  # +80: b (last used at 0) has expired, a has not
    assert store.get("a").run_id == "a"
    with pytest.raises(RunNotFoundError, match="kept 60 seconds"):
        store.get("b")
    clock.now += 61
    with pytest.raises(RunNotFoundError):
        store.get("a")
    assert len(store) == 0 and store.nbytes == 0


def test_delete_forgets_a_run_and_ignores_unknown_ones():
    store = MemoryRunStore(max_bytes=10_000, ttl_seconds=60)
    store.put(make_run("a"))
    store.delete("a")
    store.delete("never")
    assert len(store) == 0 and store.nbytes == 0


def test_the_store_stays_consistent_under_concurrent_use():
    one = make_run("x").nbytes
    store = MemoryRunStore(max_bytes=20 * one, ttl_seconds=60)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(200):
                run_id = f"{worker}-{i}"
                store.put(make_run(run_id))
                with contextlib.suppress(RunNotFoundError):
                    store.get(f"{worker}-{i - 3}")
        except BaseException as e:  # noqa: BLE001 - collected and re-raised by the test
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store) == 20 and store.nbytes == 20 * one


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3600, "60 minutes"), (90, "90 seconds"), (600, "10 minutes"), (1.5, "1.5 seconds")],
)
def test_ttl_is_described_in_words(seconds, text):
    assert describe_ttl(seconds) == text


def test_the_render_cache_drops_least_recently_used_bytes_first():
    cache = RenderCache(max_bytes=10)
    cache.put(("a",), b"1234")
    cache.put(("b",), b"1234")
    assert cache.get(("a",)) == b"1234"  # a is now more recent than b
    cache.put(("c",), b"1234")
    assert cache.get(("b",)) is None and cache.get(("a",)) == b"1234"
    assert cache.nbytes == 8 and len(cache) == 2


def test_the_render_cache_skips_items_larger_than_itself():
    cache = RenderCache(max_bytes=3)
    cache.put(("a",), b"1234")
    assert cache.get(("a",)) is None and cache.nbytes == 0
    disabled = RenderCache(max_bytes=0)
    disabled.put(("a",), b"1")
    assert disabled.get(("a",)) is None


def test_get_or_render_renders_once_then_serves_the_cached_bytes():
    cache = RenderCache(max_bytes=100)
    calls: list[int] = []

    def render() -> bytes:
        calls.append(1)
        return b"png"

    assert cache.get_or_render(("k",), render) == b"png"
    assert cache.get_or_render(("k",), render) == b"png"
    assert len(calls) == 1 and cache.hits == 1
