"""Load test: the real server (`cnn-explorer`, one uvicorn process) under mixed traffic.

    python -m tests.load.run [--seconds 30] [--clients 8] [--max-requests 50000] [--port 8103]

Starts the server on 127.0.0.1:PORT (loopback only) with its default settings, checks a few
security basics on the real HTTP stack, then runs CLIENTS concurrent clients for SECONDS (or
until MAX_REQUESTS requests), each looping: POST /shapes, POST /forward (a random image and one
of three networks, or a preset model), then map fetches of that run (a layer grid PNG, a channel
PNG, the .npy, one explanation). Stops the server (by its PID) and prints requests served,
throughput, p50/p99 latency per kind, errors by status (503 counted apart: the admission gate's
deliberate refusals), and the server's RSS before, after and at its peak (VmHWM).

Peak RSS bound (documented, checked at the end). With the defaults the server's memory is
  baseline (interpreter, NumPy, Pillow, the app: measured "before")
  + run_store_max_bytes (512 MiB of kept runs) + render_cache_max_bytes (64 MiB of PNGs)
  + cpu_workers x (max_activation_bytes + decoding), decoding being at most 4 bytes per pixel of
    max_image_pixels twice over (Pillow's decoded image and one converted copy)
  + (cpu_workers + cpu_queue) x max_upload_bytes (uploads held by admitted requests)
because only admitted jobs hold decoded images and activations (the admission gate), each
store is bounded in bytes, and an abandoned job keeps its worker until it ends. With 2 cores
that is baseline + 512 + 64 + 2 x (256 + 128) + 18 x 10 MiB = baseline + about 1.5 GiB. Traffic
like this test's uses a small part of it.

The server inherits the environment, so CNN_EXPLORER_* settings apply to it (and to the bound):
e.g. CNN_EXPLORER_CPU_QUEUE=2 makes the gate refuse part of the traffic with 503.

Exit status 1 when the server answered 5xx other than the gate's 503, a request got no answer,
a security check failed, or the peak RSS went over the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import socket
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from app.settings import Settings
from tests.live_server import server_env, server_process

MB = 2**20
SERVE = [
    sys.executable,
    "-c",
    "from app.web.main import serve; serve()",
]  # what `cnn-explorer` runs

NETWORKS = {
    "worked example": {
        "input": {"height": 32, "width": 32, "channels": 3},
        "layers": [
            {"type": "conv", "filters": 10, "kernel_size": 5, "padding": 2},
            {"type": "maxpool", "size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    },
    "edges 64": {
        "input": {"height": 64, "width": 64, "channels": 1},
        "layers": [
            {"type": "conv", "filters": 2, "kernel_size": 3, "padding": 1, "init": "sobel_x"},
            {"type": "relu"},
            {"type": "avgpool", "size": 2},
            {"type": "globalmaxpool"},
        ],
    },
    "3 conv 128": {
        "input": {"height": 128, "width": 128, "channels": 3},
        "layers": [
            {"type": "conv", "filters": 32, "kernel_size": 5, "padding": 2},
            {"type": "maxpool", "size": 2},
            {"type": "conv", "filters": 64, "kernel_size": 3, "padding": 1},
            {"type": "maxpool", "size": 2},
            {"type": "conv", "filters": 64, "kernel_size": 3, "padding": 1},
            {"type": "globalavgpool"},
            {"type": "flatten"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    },
}
INVALID = {  # /shapes answers 200 valid=false with the arithmetic
    "input": {"height": 7, "width": 7, "channels": 3},
    "layers": [{"type": "conv", "filters": 2, "kernel_size": 3, "stride": 5}],
}


def images(seed: int = 0) -> list[tuple[str, bytes, str]]:
    """A few uploads: PNG and JPEG, smaller and larger than the networks' inputs."""
    rng = np.random.default_rng(seed)
    out = []
    for (h, w), fmt in (((64, 64), "PNG"), ((150, 200), "JPEG"), ((480, 640), "JPEG")):
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        pixels[: h // 2] //= 2  # some structure for the filters to find
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format=fmt)
        out.append((f"upload.{fmt.lower()}", buf.getvalue(), f"image/{fmt.lower()}"))
    return out


# -- the server --------------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


def raw_status(port: int, path: str) -> int:
    """The status line of a GET sent byte for byte (no client-side path normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(64).decode("latin-1")
    return int(head.split()[1])


def security_checks(base: str, port: int) -> list[str]:
    """Problems found on the real HTTP stack (empty when all is well)."""
    problems = []
    page = httpx.get(f"{base}/", timeout=5)
    csp = page.headers.get("content-security-policy", "")
    if "script-src 'self'" not in csp or page.headers.get("x-frame-options") != "DENY":
        problems.append(f"/ lacks the security headers: {dict(page.headers)}")
    escapes = ("/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml",
               "/static/..%2fpyproject.toml", "/static/%2e%2e%2f%2e%2e/etc/hostname")  # fmt: skip
    for path in escapes:
        status = raw_status(port, path)
        if status != 404:
            problems.append(f"GET {path} answered {status}, not 404")
    return problems


# -- the clients -------------------------------------------------------------------------------
@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    by_kind: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    failures: Counter = field(default_factory=Counter)
    count: int = 0

    def add(self, kind: str, status: int, seconds: float) -> None:
        self.count += 1
        self.statuses[status] += 1
        self.by_kind[kind][status] += 1
        if status < 400:
            self.latencies[kind].append(seconds)


async def client_loop(
    client: httpx.AsyncClient,
    results: Results,
    deadline: float,
    max_requests: int,
    seed: int,
    uploads: list[tuple[str, bytes, str]],
    models: list[str],
) -> None:
    rng = random.Random(seed)

    async def call(kind: str, method: str, url: str, **kwargs) -> httpx.Response | None:
        if time.monotonic() >= deadline or results.count >= max_requests:
            return None
        started = time.perf_counter()
        try:
            r = await client.request(method, url, **kwargs)
        except httpx.HTTPError as e:
            results.failures[f"{kind}: {type(e).__name__}"] += 1
            return None
        results.add(kind, r.status_code, time.perf_counter() - started)
        return r

    while time.monotonic() < deadline and results.count < max_requests:
        spec = rng.choice([*NETWORKS.values(), INVALID])
        await call("shapes", "POST", "/api/v1/shapes", json=spec)

        name, data, mime = rng.choice(uploads)
        if models and rng.random() < 0.25:
            form = {"model": rng.choice(models)}
        else:
            form = {"network": json.dumps(NETWORKS[rng.choice(list(NETWORKS))])}
        r = await call("forward", "POST", "/api/v1/forward", files={"image": (name, data, mime)},
                       data=form)  # fmt: skip
        if r is None or r.status_code != 200:
            continue
        layers = r.json()["layers"]
        for _ in range(2):
            layer = rng.choice(layers)
            shape = layer["output_shape"]
            channel = rng.randrange(shape[2]) if len(shape) == 3 else 0
            await call("grid png", "GET", layer["grid_url"])
            await call("channel png", "GET", layer["channel_url"].replace("{c}", str(channel)))
            await call("npy", "GET", layer["array_url"])
            if len(shape) == 1:
                where = {"i": rng.randrange(shape[0])}
            else:
                where = {"y": rng.randrange(shape[0]), "x": rng.randrange(shape[1]), "c": channel}
            await call("explain", "GET", layer["explain_url"], params=where)


async def run_clients(
    base: str, clients: int, seconds: float, max_requests: int, on_tick
) -> tuple[Results, float]:
    results = Results()
    uploads = images()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        models = [m["name"] for m in (await client.get("/api/v1/models")).json()]
        started = time.monotonic()
        deadline = started + seconds
        ticker = asyncio.create_task(on_tick(deadline))
        loops = [
            client_loop(client, results, deadline, max_requests, seed, uploads, models)
            for seed in range(clients)
        ]
        await asyncio.gather(*loops)
        ticker.cancel()
        return results, time.monotonic() - started


# -- the report --------------------------------------------------------------------------------
def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def rss_bound(settings: Settings, baseline: int) -> int:
    decode = 2 * 4 * settings.max_image_pixels
    return (
        baseline
        + settings.run_store_max_bytes
        + settings.render_cache_max_bytes
        + settings.cpu_workers * (settings.max_activation_bytes + decode)
        + (settings.cpu_workers + settings.cpu_queue) * settings.max_upload_bytes
    )


def report(results: Results, wall: float, rss: dict[str, int], bound: int, clients: int) -> bool:
    """Print the summary; True when nothing failed unexpectedly."""
    print(f"\nrequests served: {results.count} in {wall:.1f} s by {clients} clients "
          f"= {results.count / wall:.1f} requests/s")  # fmt: skip
    print(f"{'kind':<12} {'count':>6} {'ok':>6} {'p50 ms':>8} {'p99 ms':>8}   statuses")
    for kind in ("shapes", "forward", "grid png", "channel png", "npy", "explain"):
        counts = results.by_kind.get(kind, Counter())
        ok = sorted(results.latencies.get(kind, []))
        p50 = f"{percentile(ok, 0.50) * 1000:8.1f}" if ok else f"{'-':>8}"
        p99 = f"{percentile(ok, 0.99) * 1000:8.1f}" if ok else f"{'-':>8}"
        shown = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
        print(f"{kind:<12} {sum(counts.values()):>6} {len(ok):>6} {p50} {p99}   {shown}")
    refused = results.statuses.get(503, 0)
    errors = {s: n for s, n in sorted(results.statuses.items()) if s >= 400 and s != 503}
    print(f"503 (admission gate, deliberate): {refused}")
    print(f"other errors by status: {errors or 'none'}")
    print(f"failed requests (no answer): {dict(results.failures) or 'none'}")
    print(f"server RSS: before {rss['before'] / MB:.0f} MiB, after {rss['after'] / MB:.0f} MiB, "
          f"peak (VmHWM) {rss['peak'] / MB:.0f} MiB; documented bound {bound / MB:.0f} MiB "
          f"-> {'within' if rss['peak'] <= bound else 'OVER'}")  # fmt: skip
    server_errors = sum(n for s, n in results.statuses.items() if s >= 500 and s != 503)
    return server_errors == 0 and not results.failures and rss["peak"] <= bound


def measure(base: str, args: argparse.Namespace, settings: Settings, server_pid: int) -> bool:
    """Security checks, then the clients against the running server, then the report; True when
    nothing failed."""
    problems = security_checks(base, args.port)
    print("security checks on the real server: " + ("ok" if not problems else "FAILED"))
    for problem in problems:
        print(f"  {problem}")
    rss = {"before": proc_status(server_pid)["VmRSS"]}
    samples: list[int] = []

    health: list[float] = []

    async def tick(deadline: float) -> None:
        """Every 0.5 s: the server's RSS, and how long /api/v1/health takes."""
        shown = None
        async with httpx.AsyncClient(base_url=base, timeout=10) as probe:
            while True:
                await asyncio.sleep(0.5)
                samples.append(proc_status(server_pid)["VmRSS"])
                started = time.perf_counter()
                if (await probe.get("/api/v1/health")).status_code == 200:
                    health.append(time.perf_counter() - started)
                left = round(deadline - time.monotonic())
                if left % 10 == 0 and left > 0 and left != shown:
                    shown = left
                    print(f"  ... {left} s left, server RSS {samples[-1] / MB:.0f} MiB")

    results, wall = asyncio.run(
        run_clients(base, args.clients, args.seconds, args.max_requests, tick)
    )
    status = proc_status(server_pid)
    rss.update(after=status["VmRSS"], peak=max(status["VmHWM"], *samples, 0))
    ok = report(results, wall, rss, rss_bound(settings, rss["before"]), args.clients)
    if health:
        ms = sorted(h * 1000 for h in health)
        print(f"/api/v1/health during the load: {len(ms)} probes, median "
              f"{percentile(ms, 0.5):.1f} ms, max {ms[-1]:.1f} ms")  # fmt: skip
    return ok and not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to send (30)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="stop after (50000)")
    parser.add_argument("--port", type=int, default=8103, help="server port on 127.0.0.1 (8103)")
    args = parser.parse_args(argv)
    base = f"http://127.0.0.1:{args.port}"
    settings = Settings()
    print(f"server: 127.0.0.1:{args.port}, cpu_workers {settings.cpu_workers}, cpu_queue "
          f"{settings.cpu_queue}, blas_threads {settings.blas_threads}; {args.clients} clients "
          f"for {args.seconds:g} s (at most {args.max_requests} requests)")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="cnn-load-") as tmp:
        log_path = Path(tmp) / "server.log"
        env = server_env(args.port, inherit_settings=True, data_dir=Path(tmp) / "data")
        ok = False
        try:
            with server_process(SERVE, env, log_path, start_seconds=30, stop_seconds=15) as server:
                ok = measure(base, args, settings, server.pid)
        finally:
            if not ok:
                tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
                print(f"server log (tail):\n{tail}")
    print(f"server stopped (exit {server.returncode})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
