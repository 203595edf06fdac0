"""Browser tests: the real server (uvicorn in a subprocess on a free port) and headless Chromium.

Every test gets a fresh page at 1280x800; a console error, an uncaught page error or a request
to any other origin fails the test.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from tests.live_server import free_port, running_server, server_env

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = os.environ.get("CNN_EXPLORER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real `uvicorn app.web.main:create_app --factory` on a free port, its data
    directory temporary (so only the shipped models are listed)."""
    port = free_port()
    folder = tmp_path_factory.mktemp("server")
    command = [sys.executable, "-m", "uvicorn", "app.web.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    env = server_env(port, data_dir=folder / "data")
    with running_server(command, env, folder / "uvicorn.log") as url:
        yield url


@pytest.fixture(scope="session")
def api(server_url: str) -> Iterator[httpx.Client]:
    """An httpx client on the same server, for checking what the page shows."""
    with httpx.Client(base_url=f"{server_url}/api/v1", timeout=30) as client:
        yield client


# Package scope: Playwright's sync API keeps an asyncio loop running in this thread while it is
# open, which would break every anyio test that pytest runs after it.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: make test installs Debian's chromium "
            "(make system-test-deps)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class BrowserLog:
    """Console errors, page errors and foreign requests seen during one test."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.expected: list[re.Pattern[str]] = []

    def expect(self, pattern: str) -> None:
        """Allow console errors matching `pattern` (a test that provokes an HTTP error)."""
        self.expected.append(re.compile(pattern))

    def console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console.error: {message.text}")

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(e.search(p) for e in self.expected)]


@pytest.fixture
def browser_log() -> BrowserLog:
    return BrowserLog()


def new_page(browser: Browser, server_url: str, log: BrowserLog, viewport: dict[str, int]) -> Page:
    """A page in a fresh context that records problems into `log`."""
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("console", log.console)
    page.on("pageerror", lambda error: log.problems.append(f"pageerror: {error}"))

    def check_origin(request: Any) -> None:
        if not request.url.startswith((server_url, "data:", "blob:")):
            log.problems.append(f"request to another origin: {request.url}")

    page.on("request", check_origin)
    return page


def throttle(
    page: Page, *, latency_ms: float, down_bytes_per_s: float = -1, up_bytes_per_s: float = -1
) -> None:
    """Slow every request of `page` down (Chromium's DevTools network emulation); -1 = unlimited."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": latency_ms,
            "downloadThroughput": down_bytes_per_s,
            "uploadThroughput": up_bytes_per_s,
        },
    )


@pytest.fixture
def page(browser: Browser, server_url: str, browser_log: BrowserLog) -> Iterator[Page]:
    """A 1280x800 page; the test fails if the browser logged an error."""
    page = new_page(browser, server_url, browser_log, DESKTOP)
    yield page
    page.context.close()
    problems = browser_log.unexpected()
    if problems:
        pytest.fail("The browser reported problems:\n" + "\n".join(problems))


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class Explorer:
    """The explorer page as a test drives it: open, pick presets, wait for runs and steps."""

    def __init__(self, page: Page, server_url: str) -> None:
        self.page = page
        self.url = server_url

    def open(self, fragment: str = "") -> str:
        """Load the page (optionally with a #state fragment) and wait for its first run."""
        self.page.goto(f"{self.url}/{fragment}")
        return self.wait_for_run()

    def run_id(self) -> str | None:
        return self.page.get_attribute("#stage-activations", "data-run-id")

    def wait_for_run(self, after: str | None = None) -> str:
        """Wait for a run other than `after` to be shown in stages 3 and 4; its run_id."""
        self.page.wait_for_function(
            """prev => {
                const id = document.querySelector('#stage-activations').dataset.runId;
                return id && id !== prev && document.querySelector('#step-view').dataset.run === id;
            }""",
            arg=after,
        )
        run_id = self.run_id()
        assert run_id
        return run_id

    def preset(self, name: str) -> str:
        """Click an example stack and wait for the run it triggers."""
        before = self.run_id()
        self.preset_button(name).click()
        return self.wait_for_run(after=before)

    def preset_button(self, name: str) -> Locator:
        """The example (or shipped model) button whose name is exactly `name`."""
        return self.page.locator(f'#preset-list .preset:has(.preset-name:text-is("{name}"))')

    def spec(self) -> dict[str, Any]:
        """The network spec the page holds, read back from its URL."""
        self.page.wait_for_function(
            "() => location.hash.includes('net=') && !document.documentElement.dataset.urlPending"
        )
        fragment = self.page.evaluate("location.hash").lstrip("#")
        return json.loads(parse_qs(fragment)["net"][0])

    def wait_shown(self, layer: int, pos: int, channel: int = 0, in_channel: int = 0) -> None:
        """Wait until the step view shows `pos` of `layer` for the current run."""
        want = f"{self.run_id()}/{layer}/{channel}/{in_channel}/{pos}"
        self.page.wait_for_function(
            "want => document.querySelector('#step-view').dataset.shown === want", arg=want
        )

    def step_layer(self, layer: int) -> None:
        """Choose `layer` in the step-through and wait for its first position."""
        self.page.select_option("#step-layer", str(layer))
        self.wait_shown(layer, 0)

    def texts(self, selector: str) -> list[str]:
        return self.page.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent)")

    def number(self, selector: str) -> float:
        return float(self.page.text_content(selector) or "nan")

    def matrix(self, table: str) -> list[list[float]]:
        """A step-view matrix table as rows of floats."""
        rows = self.page.eval_on_selector_all(
            f"{table} tbody tr",
            "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.textContent))",
        )
        return [[float(v) for v in row] for row in rows]


@pytest.fixture
def explorer(page: Page, server_url: str) -> Explorer:
    return Explorer(page, server_url)
