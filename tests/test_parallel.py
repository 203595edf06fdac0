"""Worker processes sharing training steps (app/learning/parallel.py): same numbers as
threads, parameters kept in step, failures fall back to threads, and no process is left behind."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.cnn.network import Network, build_network
from app.cnn.spec import NetworkSpec
from app.learning import parallel
from app.learning.optim import Adam
from app.learning.parallel import DataParallel, ShareProcesses, WorkerProcessError, plan_layout
from app.learning.trainer import TrainConfig, train, train_step
from tests.test_training import TINY, bars

pytestmark = pytest.mark.slow  # worker processes: make test-quick leaves them out

ROOT = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def shared(spec: NetworkSpec, dtype: type = np.float32, mode: str = "processes") -> DataParallel:
    """spec's network with each batch shared by this thread and one other worker."""
    return DataParallel(build_network(spec, dtype), 2, mode)


def grads_of(net: Network | DataParallel) -> list[np.ndarray]:
    net = net.net if isinstance(net, DataParallel) else net
    return [g.copy() for _, grads in net.param_groups() for g in grads.values()]


def assert_like_serial(
    loss: float, net: DataParallel, x: np.ndarray, y: np.ndarray, spec: NetworkSpec = TINY
) -> None:
    """loss and net's gradients are those of spec in float64 on x, y in one piece."""
    serial = build_network(spec, np.float64)
    serial_loss, _ = serial.loss_and_backward(x, y)
    assert loss == pytest.approx(serial_loss, rel=1e-12)
    for got, want in zip(grads_of(net), grads_of(serial), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_the_layout_aligns_every_array_and_gives_each_worker_its_own_room() -> None:
    arrays = [(0, "weights", (8, 3, 3, 1)), (0, "bias", (8,)), (5, "weights", (2, 4))]
    layout = plan_layout(arrays, np.dtype(np.float64), 2, (10, 12, 12, 1), np.dtype(np.float32))
    sized = [(s, 8) for s in (*layout.params, *[s for g in layout.grads for s in g])]
    sized += [(s, 4) for s in layout.images]  # float32 images
    assert all(s.offset % 64 == 0 for s, _ in sized)
    spans = sorted((s.offset, s.offset + int(np.prod(s.shape)) * item) for s, item in sized)
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False))
    assert layout.size >= spans[-1][1]
    assert layout.grads[0][2].shape == (2, 4) and layout.images[1].shape == (10, 12, 12, 1)


def test_processes_give_the_same_numbers_as_threads() -> None:
    x, y = bars(21, seed=3)  # shares of 10 and 11 images
    x64 = x.astype(np.float64)
    threads = shared(TINY, np.float64, "threads")
    processes = shared(TINY, np.float64)
    try:
        loss_t, logits_t = threads.loss_and_backward(x64, y)
        loss_p, logits_p = processes.loss_and_backward(x64, y)
        assert processes.mode == "processes" and processes.pids
        assert loss_p == loss_t
        np.testing.assert_array_equal(logits_p, logits_t)
        for gp, gt in zip(grads_of(processes), grads_of(threads), strict=True):
            np.testing.assert_array_equal(gp, gt)
    finally:
        threads.close()
        processes.close()


def test_training_steps_in_processes_follow_the_parameters() -> None:
    """Ten Adam steps with processes land on the same weights as with threads: the workers see
    every update, and a parameter array replaced from outside is picked up too."""
    x, y = bars(32, seed=5)
    nets = [shared(TINY, mode=m) for m in ("threads", "processes")]
    try:
        for net in nets:
            adam = Adam(net.net.param_groups(), learning_rate=1e-2)
            for step in range(10):
                if step == 5:  # replace (not update in place) one parameter array
                    first = net.net.layers[0]
                    first.params["weights"] = first.params["weights"] * 0.5
                train_step(net, adam, x, y)
        for (pt, _), (pp, _) in zip(
            nets[0].net.param_groups(), nets[1].net.param_groups(), strict=True
        ):
            for name in pt:
                np.testing.assert_array_equal(pp[name], pt[name])
    finally:
        for net in nets:
            net.close()


def test_a_share_larger_than_the_image_room_goes_through_the_pipe() -> None:
    small, y_small = bars(8, seed=6)
    big, y_big = bars(30, seed=7)
    net = shared(TINY, np.float64)
    try:
        net.loss_and_backward(small, y_small)  # room for shares of 4 images
        loss, _ = net.loss_and_backward(big, y_big)
        assert net.mode == "processes"
        assert_like_serial(loss, net, big, y_big)
    finally:
        net.close()


def test_close_ends_the_workers_and_the_network_still_trains() -> None:
    x, y = bars(16, seed=8)
    net = shared(TINY)
    net.loss_and_backward(x, y)
    pids = net.pids
    assert pids and all(alive(pid) for pid in pids)
    net.close()
    assert wait_gone(pids, 5.0)
    net.loss_and_backward(x, y)  # starts new workers
    assert net.pids and net.pids != pids
    net.close()


def test_a_killed_worker_means_threads_for_the_rest_with_the_same_gradients(caplog) -> None:
    x, y = bars(20, seed=9)
    x64 = x.astype(np.float64)
    net = shared(TINY, np.float64)
    try:
        net.loss_and_backward(x64, y)
        (pid,) = net.pids
        os.kill(pid, signal.SIGKILL)
        assert wait_gone([pid])
        with caplog.at_level(logging.WARNING, logger="app.learning.parallel"):
            loss, _ = net.loss_and_backward(x64, y)
        assert net.mode == "threads" and net.pids == []
        assert "ended unexpectedly" in caplog.text and "with threads instead" in caplog.text
        assert_like_serial(loss, net, x64, y)
    finally:
        net.close()


def test_workers_that_cannot_start_mean_threads(monkeypatch, caplog) -> None:
    def no_room(size: int) -> int:
        raise WorkerProcessError(f"no room for {size} bytes of shared memory in /dev/shm or tmp")

    monkeypatch.setattr(parallel, "_shared_file", no_room)
    x, y = bars(20, seed=10)
    with caplog.at_level(logging.WARNING, logger="app.learning.parallel"):
        result = train(TINY, x, y, TrainConfig(epochs=2, batch_size=10, workers=2))
    assert "no room for" in caplog.text
    assert len(result.history) == 2


def test_a_worker_that_cannot_build_the_network_says_why(monkeypatch) -> None:
    x, _ = bars(8, seed=11)
    net = build_network(TINY)
    too_big = replace(TINY.layers[0], kernel_size=15)  # wider than the 12x12 input
    monkeypatch.setattr(net, "spec", replace(TINY, layers=(too_big, *TINY.layers[1:])))
    with pytest.raises(WorkerProcessError, match=r"worker 1 could not start: SpecError"):
        ShareProcesses(net, 1, x[:4])


def test_the_setup_message_carries_no_weights() -> None:
    """A worker is given the shared parameters, so its setup stays small for any network (and
    never fills the pipe before the worker reads it)."""
    rng = np.random.default_rng(15)
    layers = (
        replace(TINY.layers[0], weights=rng.random((8, 3, 3, 1)), bias=rng.random(8)),
        *TINY.layers[1:5],
        replace(TINY.layers[5], weights=rng.random((2, 4)), bias=rng.random(2)),
    )
    big = replace(TINY, input=replace(TINY.input, height=600, width=600), layers=layers)
    small = parallel.skeleton(big)
    assert all(getattr(layer, "weights", None) is None for layer in small.layers)
    assert [type(layer) for layer in small.layers] == [type(layer) for layer in big.layers]
    assert len(pickle.dumps(small)) < 4096
    x, y = bars(16, seed=16)
    given = replace(TINY, layers=layers)
    net = shared(given, np.float64)
    try:  # the worker still computes with the given weights, from the shared block
        loss, _ = net.loss_and_backward(x, y)
        assert net.mode == "processes"
        assert_like_serial(loss, net, x, y, given)
    finally:
        net.close()


def test_a_worker_that_dies_at_start_gives_its_exit_code(monkeypatch) -> None:
    x, _ = bars(8, seed=12)
    monkeypatch.setattr(parallel, "_BOOTSTRAP", "import sys; sys.exit(3)")
    with pytest.raises(WorkerProcessError, match=r"ended unexpectedly \(exit code 3\)"):
        ShareProcesses(build_network(TINY), 1, x[:4])


def run_script(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_script_without_a_main_guard_runs_once() -> None:
    """multiprocessing's spawn would re-run the caller's main script in each worker."""
    script = ROOT / "tests" / "_unguarded_training_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np
            from app.learning.trainer import TrainConfig, train
            from tests.test_training import TINY, bars
            print("script ran", flush=True)
            x, y = bars(16, seed=0)
            train(TINY, x, y, TrainConfig(epochs=1, batch_size=16, workers=2))
            """
        )
    )
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("script ran") == 1
    assert "threads instead" not in done.stderr


def test_workers_exit_when_the_trainer_dies() -> None:
    done = run_script(
        """
        import os
        from app.cnn.network import build_network
        from app.learning.parallel import DataParallel
        from tests.test_training import TINY, bars
        net = DataParallel(build_network(TINY), 2)
        x, y = bars(16, seed=0)
        net.loss_and_backward(x, y)
        print(*net.pids, flush=True)
        os._exit(0)  # no close(), no atexit
        """
    )
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert pids and wait_gone(pids)


def test_a_full_dev_shm_puts_the_block_in_the_temp_directory(monkeypatch, tmp_path) -> None:
    """Docker gives /dev/shm 64 MB: a bigger block goes to a file in the temp directory."""
    real_usage = parallel.shutil.disk_usage
    asked: list[str] = []

    def usage(path: str):
        asked.append(str(path))
        full = real_usage(path)
        return full._replace(free=0) if str(path) == "/dev/shm" else full

    monkeypatch.setattr(parallel.shutil, "disk_usage", usage)
    monkeypatch.setattr(parallel.tempfile, "tempdir", str(tmp_path))
    x, y = bars(16, seed=13)
    net = shared(TINY, np.float64)
    try:
        loss, _ = net.loss_and_backward(x, y)
        assert net.mode == "processes" and asked == ["/dev/shm", str(tmp_path)]
        assert list(tmp_path.iterdir()) == []  # unlinked: nothing is left behind
        assert_like_serial(loss, net, x, y)
    finally:
        net.close()


def test_an_error_in_this_process_share_is_raised_and_the_workers_stay_in_step() -> None:
    x, y = bars(16, seed=14)
    net = shared(TINY, np.float64)
    try:
        net.loss_and_backward(x, y)
        bad = y.copy()
        bad[0] = 7  # only 2 classes: fails in the first share, which runs here
        with pytest.raises(IndexError):
            net.loss_and_backward(x, bad)
        loss, _ = net.loss_and_backward(x, y)  # the worker's reply was collected: in step
        assert net.mode == "processes"
        assert_like_serial(loss, net, x, y)
    finally:
        net.close()


def test_a_worker_that_never_comes_up_is_given_up_on_and_stopped(monkeypatch) -> None:
    x, _ = bars(8, seed=17)
    monkeypatch.setattr(parallel, "_BOOTSTRAP", "import time; time.sleep(60)")
    monkeypatch.setattr(parallel, "_START_WAIT_S", 0.5)
    monkeypatch.setattr(parallel, "_EXIT_WAIT_S", 0.5)
    spawned: list[int] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        spawned.append(process.pid)
        return process

    monkeypatch.setattr(parallel.subprocess, "Popen", recording_popen)
    started = time.monotonic()
    with pytest.raises(WorkerProcessError, match="did not start in time"):
        ShareProcesses(build_network(TINY), 1, x[:4])
    assert time.monotonic() - started < 10
    assert len(spawned) == 1 and not alive(spawned[0])  # killed, and reaped
