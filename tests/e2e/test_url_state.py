"""The stack, input size, seed and step selection live in the URL: a reload or a shared link
brings them back."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Explorer

pytestmark = pytest.mark.e2e


def test_reload_and_shared_link_restore_the_stack_and_the_step(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    explorer.preset("Edge detectors")
    before = explorer.run_id()
    page.fill("#input-seed", "7")
    page.fill("#input-width", "24")
    page.select_option("#add-layer-type", "avgpool")
    page.click("#add-layer")
    expect(page.locator("#layer-card-1 .layer-out")).to_have_text("→ 16×12×2")
    explorer.wait_for_run(after=before)
    explorer.step_layer(1)
    page.select_option("#step-channel", "1")
    explorer.wait_shown(1, 0, channel=1)
    page.click("#step-next")
    page.click("#step-next")
    explorer.wait_shown(1, 2, channel=1)
    page.wait_for_function("() => location.hash.includes('pos=2')")

    spec = explorer.spec()
    assert spec["seed"] == 7
    assert spec["input"] == {"height": 32, "width": 24, "channels": 1}
    assert [layer["type"] for layer in spec["layers"]] == ["conv", "avgpool"]
    assert spec["layers"][0]["weights"][1][0][1] == [-2]  # Sobel y survives in the link
    assert api.post("/shapes", json=spec).json()["valid"]
    link = page.url

    page.reload()
    explorer.wait_for_run()
    assert explorer.spec() == spec
    expect(page.locator("#input-seed")).to_have_value("7")
    expect(page.locator("#input-width")).to_have_value("24")
    expect(page.locator("#layer-card-1")).to_have_attribute("data-type", "avgpool")
    expect(page.locator("#layer-card-0 .weights-given")).to_contain_text("2×3×3×1")
    explorer.wait_shown(1, 2, channel=1)
    expect(page.locator("#step-layer")).to_have_value("1")
    expect(page.locator("#step-channel")).to_have_value("1")

    # The same link in another tab.
    other = page.context.new_page()
    errors: list[str] = []
    other.on("pageerror", lambda error: errors.append(str(error)))
    other.goto(link)
    shared = Explorer(other, explorer.url)
    shared.wait_for_run()
    shared.wait_shown(1, 2, channel=1)
    assert shared.spec() == spec
    expect(other.locator("#layer-list > li")).to_have_count(2)
    assert errors == []
    other.close()


def test_a_broken_link_falls_back_to_the_default_example(explorer: Explorer) -> None:
    page = explorer.page
    explorer.open("#net=%7Bnot-json&layer=99")
    expect(page.locator("#layer-list > li")).to_have_count(8)
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "valid")
    expect(page.locator("#step-layer")).to_have_value("0")
