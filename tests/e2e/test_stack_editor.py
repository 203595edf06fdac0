"""The layer-stack editor: presets, live validation through /shapes, one-click fixes, keyboard
reordering, and the model summary against the API."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Explorer

pytestmark = pytest.mark.e2e


def card(page: Page, index: int) -> Locator:
    return page.locator(f"#layer-card-{index}")


def shape_text(shape: list[int]) -> str:
    return "×".join(str(n) for n in shape)


def focused_label(page: Page) -> str | None:
    return page.evaluate("document.activeElement.getAttribute('aria-label')")


def test_stride_5_on_7x7_shows_the_arithmetic_and_one_click_fixes_it(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    explorer.preset_button("7×7, F=3, S=5").click()

    bad = card(page, 0)
    expect(bad).to_have_class(re.compile("is-invalid"))
    expect(bad.locator(".error-text")).to_contain_text("(7 - 3 + 2*0)/5 + 1 = 1.8")
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "invalid")
    reply = api.post("/shapes", json=explorer.spec()).json()
    assert not reply["valid"]
    expect(bad.locator(".suggestion")).to_have_text(reply["errors"][0]["suggestion"])

    before = explorer.run_id()
    bad.locator(".btn-fix").click()
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "valid")
    expect(card(page, 0)).not_to_have_class(re.compile("is-invalid"))
    spec = explorer.spec()
    stride = spec["layers"][0]["stride"]
    assert stride != 5 and (7 - 3) % stride == 0
    fixed = api.post("/shapes", json=spec).json()
    assert fixed["valid"]
    expect(card(page, 0).locator('[data-field="stride"]')).to_have_value(str(stride))
    expect(card(page, 0).locator(".layer-out")).to_have_text(
        f"→ {shape_text(fixed['layers'][0]['output_shape'])}"
    )
    expect(card(page, 0).locator(".formula")).to_contain_text(fixed["layers"][0]["formula"])
    # A fixed stack runs again by itself.
    explorer.wait_for_run(after=before)


def test_a_stack_built_by_hand_matches_the_api_summary(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    explorer.preset("32×32×3, ten 5×5 filters, P=2")
    expect(page.locator("#summary-total")).to_have_text("760")

    page.select_option("#add-layer-type", "maxpool")
    page.click("#add-layer")
    page.select_option("#add-layer-type", "dense")
    page.click("#add-layer")
    dense = card(page, 2)
    expect(dense.locator(".error-text")).to_contain_text("flat")
    expect(dense.locator(".btn-fix")).to_contain_text("flatten")
    dense.locator(".btn-fix").click()
    expect(card(page, 2)).to_have_attribute("data-type", "flatten")
    expect(card(page, 3)).to_have_attribute("data-type", "dense")

    units = card(page, 3).locator('[data-field="units"]')
    units.fill("5")
    expect(card(page, 3).locator(".layer-out")).to_have_text("→ 5")
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "valid")

    reply = api.post("/shapes", json=explorer.spec()).json()
    assert reply["valid"] and len(reply["layers"]) == 4
    rows = page.locator("#summary-body tr")
    expect(rows).to_have_count(len(reply["layers"]) + 1)
    for layer in reply["layers"]:
        cells = rows.nth(layer["index"] + 1).locator("td")
        expect(cells.nth(1)).to_have_text(shape_text(layer["output_shape"]))
        expect(cells.nth(2)).to_have_text(f"{layer['params']:,}")
        expect(card(page, layer["index"]).locator(".formula")).to_contain_text(layer["formula"])
    expect(page.locator("#summary-total")).to_have_text(f"{reply['total_params']:,}")


def test_layers_move_and_go_with_the_keyboard(explorer: Explorer) -> None:
    page = explorer.page
    explorer.open()  # the small classifier: ... 6 flatten, 7 dense
    expect(card(page, 6)).to_have_attribute("data-type", "flatten")

    page.get_by_role("button", name="Move layer 6 down").focus()
    page.keyboard.press("Enter")
    expect(card(page, 6)).to_have_attribute("data-type", "dense")
    expect(card(page, 7)).to_have_attribute("data-type", "flatten")
    # The moved layer keeps the focus (its "down" button is now disabled, so "up").
    assert focused_label(page) == "Move layer 7 up"
    expect(card(page, 6).locator(".error-text")).to_contain_text("flat")

    page.keyboard.press("Enter")
    expect(card(page, 6)).to_have_attribute("data-type", "flatten")
    assert focused_label(page) == "Move layer 6 up"
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "valid")

    page.get_by_role("button", name="Remove layer 1").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#layer-list > li")).to_have_count(7)
    expect(card(page, 1)).to_have_attribute("data-type", "maxpool")
    assert focused_label(page) == "Layer 1 type"


def test_a_value_over_the_servers_limit_shows_its_message_on_the_layer(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    filters = card(page, 0).locator('[data-field="filters"]')
    filters.fill("")
    expect(card(page, 0).locator(".error-text")).to_contain_text("whole number")
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "invalid")
    filters.fill("100000")
    expect(card(page, 0).locator(".error-text")).to_contain_text("100000")
    spec = explorer.spec()
    assert spec["layers"][0]["filters"] == 100000
    reply = api.post("/shapes", json=spec).json()
    assert not reply["valid"]
    error = reply["errors"][0]
    expect(card(page, 0).locator(".error-text")).to_have_text(error["message"])
    expect(card(page, 0).locator(".suggestion")).to_have_text(error["suggestion"])
    expect(page.locator("#stack-status")).to_contain_text(error["message"])
    # The fix uses the limit the page was given, then the API agrees.
    card(page, 0).locator(".btn-fix").click()
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "valid")
    assert api.post("/shapes", json=explorer.spec()).json()["valid"]
