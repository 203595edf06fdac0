"""Every stage at a laptop size and a phone size: nothing wider than the screen, and a
screenshot of each stage in tests/e2e/screenshots/ (git-ignored) for a person to look at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import DESKTOP, PHONE, BrowserLog, Explorer, new_page

pytestmark = pytest.mark.e2e


@pytest.fixture(params=[DESKTOP, PHONE], ids=["1280x800", "390x844"])
def sized_page(
    request: pytest.FixtureRequest, browser: Browser, server_url: str, browser_log: BrowserLog
) -> Iterator[Page]:
    page = new_page(browser, server_url, browser_log, request.param)
    yield page
    page.context.close()
    problems = browser_log.unexpected()
    if problems:
        pytest.fail("The browser reported problems:\n" + "\n".join(problems))


def assert_fits(page: Page, what: str) -> None:
    """No horizontal scrolling of the page, and no stage sticking out of the viewport."""
    width = page.evaluate("window.innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width, what
    for box in page.eval_on_selector_all(
        ".panel", "nodes => nodes.map(n => n.getBoundingClientRect().right)"
    ):
        assert box <= width + 0.5, what


def shoot(page: Page, folder: Path, name: str, selector: str) -> None:
    page.locator(selector).first.scroll_into_view_if_needed()
    page.evaluate(
        "sel => document.querySelector(sel).scrollIntoView({block: 'start', behavior: 'instant'})",
        selector,
    )
    page.wait_for_timeout(150)
    size = page.viewport_size or {}
    assert_fits(page, name)
    page.screenshot(path=str(folder / f"{size.get('width')}x{size.get('height')}-{name}.png"))


def test_every_stage_fits_and_is_photographed(
    sized_page: Page, server_url: str, screenshot_dir: Path
) -> None:
    page = sized_page
    explorer = Explorer(page, server_url)
    explorer.open()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#layer-results img')].every(i => i.complete)"
    )
    shoot(page, screenshot_dir, "1-image", "#stage-input")
    shoot(page, screenshot_dir, "2-network", "#stage-network")
    shoot(page, screenshot_dir, "3-activations", "#stage-activations")
    shoot(page, screenshot_dir, "3-activations-cards", "#layer-results")

    page.get_by_role("button", name="Open layer 0 channel 2").click()
    expect(page.locator("#channel-dialog")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#channel-min').textContent !== '…'")
    shoot(page, screenshot_dir, "3-channel", "#channel-dialog")
    page.keyboard.press("Escape")

    for _ in range(3):
        page.click("#step-next")
    explorer.wait_shown(0, 3)
    # Then drag the position slider into the digit's stroke: (y=4, x=12).
    page.locator("#step-pos").evaluate(
        "r => { r.value = 4 * 28 + 12; r.dispatchEvent(new Event('input')); }"
    )
    explorer.wait_shown(0, 4 * 28 + 12)
    shoot(page, screenshot_dir, "4-step-conv", "#step-body")
    shoot(page, screenshot_dir, "4-step-conv-numbers", "#step-view")
    explorer.step_layer(2)
    page.click("#step-next")
    explorer.wait_shown(2, 1)
    shoot(page, screenshot_dir, "4-step-pool", "#step-view")
    explorer.step_layer(6)
    page.keyboard.press("End")
    explorer.step_layer(6)
    for _ in range(20):
        page.click("#step-next")
    explorer.wait_shown(6, 20)
    shoot(page, screenshot_dir, "4-step-flatten", "#step-view")
    explorer.step_layer(7)
    shoot(page, screenshot_dir, "4-step-dense", "#step-view")

    explorer.preset("7×7, F=3, S=2")
    page.click("#step-next")
    explorer.wait_shown(0, 1)
    shoot(page, screenshot_dir, "4-step-conv-7x7", "#step-view")
    explorer.preset_button("7×7, F=3, S=5").click()
    expect(page.locator("#layer-card-0 .btn-fix")).to_be_visible()
    shoot(page, screenshot_dir, "2-network-error", "#stage-network")
    shoot(page, screenshot_dir, "2-network-error-fix", "#layer-card-0")  # the card, on a phone too
    page.screenshot(
        path=str(screenshot_dir / f"{page.viewport_size['width']}-full.png"), full_page=True
    )
