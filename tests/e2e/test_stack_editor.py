"""The layer-stack editor: presets, live validation through /shapes, one-click fixes, keyboard
reordering, and the model summary against the API."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

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
    error = reply["errors"][0]
    expect(bad.locator(".suggestion")).to_have_text(error["suggestion"])
    # The button is the server's own fix, applied as given: no arithmetic of the page's own.
    fix = error["fix"]
    assert fix["set"] and not fix["insert_before"] and not fix["drop"]
    expect(bad.locator(".btn-fix")).to_have_text(f"Fix: {fix['label']}")

    before = explorer.run_id()
    bad.locator(".btn-fix").click()
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "valid")
    expect(card(page, 0)).not_to_have_class(re.compile("is-invalid"))
    spec = explorer.spec()
    assert {key: spec["layers"][0][key] for key in fix["set"]} == fix["set"]
    stride = spec["layers"][0]["stride"]
    assert stride != 5 and (7 - 3) % stride == 0
    assert page.evaluate("document.activeElement.dataset.field") == next(iter(fix["set"]))
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
    fix = api.post("/shapes", json=explorer.spec()).json()["errors"][0]["fix"]
    assert fix["insert_before"]["type"] == "flatten"
    expect(dense.locator(".btn-fix")).to_have_text(f"Fix: {fix['label']}")
    dense.locator(".btn-fix").click()
    expect(card(page, 2)).to_have_attribute("data-type", "flatten")
    expect(card(page, 3)).to_have_attribute("data-type", "dense")
    assert focused_label(page) == "Layer 2 type"  # the inserted layer

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
    # The fix is the server's (its own limit), then the API agrees.
    expect(card(page, 0).locator(".btn-fix")).to_have_text(f"Fix: {error['fix']['label']}")
    card(page, 0).locator(".btn-fix").click()
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "valid")
    spec = explorer.spec()
    assert spec["layers"][0]["filters"] == error["fix"]["set"]["filters"]
    assert api.post("/shapes", json=spec).json()["valid"]


def test_the_weights_picker_offers_every_preset_kernel_the_server_has(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()  # the small classifier starts with a conv layer
    kernels = api.get("/kernels").json()["kernels"]
    assert len(kernels) == 7
    init = card(page, 0).locator('[data-field="init"]')
    want = [["he", "He"]] + [[k["name"], k["label"]] for k in kernels]
    expect(init.locator("option")).to_have_count(len(want))
    options = init.evaluate("s => [...s.options].map(o => [o.value, o.textContent])")
    assert options == want

    # Each is a spec the server takes: the last one, chosen, validates and runs.
    before = explorer.run_id()
    name = kernels[-1]["name"]
    card(page, 0).locator('[data-field="kernel_size"]').fill(str(kernels[-1]["size"]))
    init.select_option(name)
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "valid")
    assert explorer.spec()["layers"][0]["init"] == name
    explorer.wait_for_run(after=before)


def test_the_servers_fixes_for_given_weights_and_for_the_input_apply_in_one_click(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    # A conv layer given 1x1 weights where 3x3 are needed: the server's fix drops them.
    network = {
        "input": {"height": 8, "width": 8, "channels": 1},
        "seed": 0,
        "layers": [{"type": "conv", "filters": 1, "kernel_size": 3, "weights": [[[[1.0]]]]}],
    }
    page.goto(f"{explorer.url}/#net={quote(json.dumps(network))}")
    fix = api.post("/shapes", json=network).json()["errors"][0]["fix"]
    assert fix["drop"] == ["weights", "bias"]
    button = card(page, 0).locator(".btn-fix")
    expect(button).to_have_text(f"Fix: {fix['label']}")
    button.click()
    expect(page.locator("#stack-status")).to_have_attribute("data-state", "valid")
    assert "weights" not in explorer.spec()["layers"][0]
    assert page.evaluate("document.activeElement.dataset.field") == "init"

    # An input taller than the server allows: the problem has no layer, so its fix is offered
    # in the stack's status line, and it sets the input's own field.
    limit = int(page.get_attribute("#input-height", "max") or 0)
    assert limit > 0
    page.fill("#input-height", str(limit + 1))
    status = page.locator("#stack-status")
    expect(status).to_have_attribute("data-state", "invalid")
    error = api.post("/shapes", json=explorer.spec()).json()["errors"][0]
    assert error["layer"] is None and error["fix"]["set"] == {"height": limit}
    expect(status.locator(".btn-fix")).to_have_text(f"Fix: {error['fix']['label']}")
    status.locator(".btn-fix").click()
    expect(status).to_have_attribute("data-state", "valid")
    expect(page.locator("#input-height")).to_have_value(str(limit))
    assert explorer.spec()["input"]["height"] == limit
    assert page.evaluate("document.activeElement.id") == "input-height"
