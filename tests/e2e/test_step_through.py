"""The step-through: every number shown for conv, pooling, flatten and dense agrees with the
API's explain endpoint, and the controls work from the keyboard."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Explorer

pytestmark = pytest.mark.e2e

MATRIX_TOLERANCE = 0.005 + 1e-6  # matrices show 2 decimals
VALUE_TOLERANCE = 0.0005 + 1e-6  # receipts show 3 decimals


def explain(api: httpx.Client, run_id: str, layer: int, **query: int) -> dict[str, Any]:
    response = api.get(f"/runs/{run_id}/layers/{layer}/explain", params=query)
    response.raise_for_status()
    return response.json()


def assert_close(shown: float, expected: float, tolerance: float = VALUE_TOLERANCE) -> None:
    assert abs(shown - expected) <= tolerance, (shown, expected)


def check_conv(explorer: Explorer, data: dict[str, Any], k: int) -> None:
    """The patch, kernel and products of input channel k, and the receipt, against `data`."""
    patch = explorer.matrix("#conv-patch")
    kernel = explorer.matrix("#conv-kernel")
    products = explorer.matrix("#conv-products")
    size = data["window"]["size"]
    assert len(patch) == len(kernel) == len(products) == size
    for r in range(size):
        for s in range(size):
            p = data["patch"][r][s][k]
            w = data["kernel"][r][s][k]
            assert_close(patch[r][s], p, MATRIX_TOLERANCE)
            assert_close(kernel[r][s], w, MATRIX_TOLERANCE)
            assert_close(products[r][s], p * w, MATRIX_TOLERANCE)
    assert_close(explorer.number("#conv-sum"), data["products_sum"])
    assert_close(explorer.number("#conv-bias"), data["bias"])
    assert_close(explorer.number("#conv-pre"), data["pre_activation"])
    assert_close(explorer.number("#conv-value"), data["value"])


def window_label(explorer: Explorer) -> str:
    return explorer.page.get_attribute("#step-view .step-maps canvas >> nth=0", "aria-label") or ""


def test_conv_window_slides_with_the_stride_and_its_numbers_match_explain(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    run_id = explorer.preset("7×7, F=3, S=2")
    expect(page.locator("#step-layer")).to_have_value("0")
    expect(page.locator("#step-position")).to_contain_text("Position 1 of 9")
    for pos in range(4):
        if pos:
            page.click("#step-next")
        explorer.wait_shown(0, pos)
        y, x = divmod(pos, 3)
        data = explain(api, run_id, 0, y=y, x=x, c=0)
        assert (data["window"]["top"], data["window"]["left"]) == (2 * y, 2 * x)
        label = window_label(explorer)
        assert f"row {data['window']['top']}, column {data['window']['left']}" in label
        check_conv(explorer, data, k=0)
        expect(page.locator("#step-position")).to_contain_text(f"Position {pos + 1} of 9")

    page.click("#step-back")
    explorer.wait_shown(0, 2)
    check_conv(explorer, explain(api, run_id, 0, y=0, x=2, c=0), k=0)


def test_conv_on_colour_input_per_filter_and_input_channel(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    run_id = explorer.preset("32×32×3, ten 5×5 filters, P=2")
    page.select_option("#step-channel", "3")
    explorer.wait_shown(0, 0, channel=3)
    page.select_option("#step-inchannel", "1")  # G
    explorer.wait_shown(0, 0, channel=3, in_channel=1)
    expect(page.locator("#conv-patch caption")).to_contain_text("channel G")
    for pos in (1, 2, 3):
        page.click("#step-next")
        explorer.wait_shown(0, pos, channel=3, in_channel=1)
        data = explain(api, run_id, 0, y=0, x=pos, c=3)
        check_conv(explorer, data, k=1)
        assert data["window"]["top"] == -2  # padding 2

    # Click output cell (y=10, x=12) to jump there.
    output = page.locator("#step-view .step-maps canvas").nth(1)
    box = output.bounding_box()
    assert box
    output.click(position={"x": box["width"] * 12.5 / 32, "y": box["height"] * 10.5 / 32})
    explorer.wait_shown(0, 10 * 32 + 12, channel=3, in_channel=1)
    data = explain(api, run_id, 0, y=10, x=12, c=3)
    check_conv(explorer, data, k=1)
    expect(page.locator("#conv-channel-sums")).to_contain_text(f"= {data['products_sum']:.3f}")


def test_pooling_and_flatten_steps_match_explain(explorer: Explorer, api: httpx.Client) -> None:
    page = explorer.page
    run_id = explorer.open()  # the small classifier: 2 maxpool 2x2 on 28x28x8, 6 flatten 7x7x16
    explorer.step_layer(2)
    page.select_option("#step-channel", "5")
    for pos in range(3):
        if pos:
            page.click("#step-next")
        explorer.wait_shown(2, pos, channel=5)
        y, x = divmod(pos, 14)
        data = explain(api, run_id, 2, y=y, x=x, c=5)
        shown = explorer.matrix("#pool-window")
        for r, row in enumerate(data["window_values"]):
            for s, value in enumerate(row):
                assert_close(shown[r][s], value, MATRIX_TOLERANCE)
        assert_close(explorer.number("#pool-value"), data["value"])
        picked = explorer.texts("#pool-window td.is-pick")
        assert picked and all(abs(float(v) - data["value"]) <= MATRIX_TOLERANCE for v in picked)
        expect(page.locator("#pool-op")).to_contain_text("max of 4 values")

    explorer.step_layer(6)
    expect(page.locator("#step-position")).to_contain_text("of 784")
    for pos in (0, 1, 17, 783):
        if pos == 1:
            page.click("#step-next")
        elif pos:
            page.locator("#step-pos").evaluate(
                "(range, pos) => { range.value = pos; range.dispatchEvent(new Event('input')); }",
                pos,
            )
        explorer.wait_shown(6, pos)
        data = explain(api, run_id, 6, i=pos)
        y, x, c = data["source"]
        assert (y * 7 + x) * 16 + c == pos
        expect(page.locator("#flat-source")).to_have_text(f"[{y}, {x}, {c}]")
        expect(page.locator("#flat-index")).to_have_text(str(pos))
        expect(page.locator("#flat-formula")).to_have_text(
            f"i = (y·W + x)·C + c = ({y}·7 + {x})·16 + {c} = {pos}"
        )
        assert_close(explorer.number("#flat-value"), data["value"])


def test_dense_softmax_contributions_and_probabilities_sum_to_one(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    run_id = explorer.open()
    explorer.step_layer(7)
    data = explain(api, run_id, 7, i=0)
    assert_close(explorer.number("#dense-bias"), data["bias"])
    assert_close(explorer.number("#dense-value"), data["value"])
    first = page.locator("#dense-contrib tbody tr").first
    top = data["top_contributions"][0]
    expect(first.locator("th")).to_have_text(str(top["input"]))
    assert_close(float(first.locator("td").nth(2).text_content() or "nan"), top["product"])

    for chart in ("#dense-probs", "#prediction-chart"):
        shown = [float(v) for v in explorer.texts(f"{chart} .prob-value")]
        assert len(shown) == 10
        assert abs(sum(shown) - 1) <= 10 * VALUE_TOLERANCE
        for j, p in enumerate(shown):
            assert_close(p, explain(api, run_id, 7, i=j)["value"])
    labels = explorer.texts("#dense-probs .prob-label")
    assert labels == [f"class {j}" for j in range(10)]
    expect(page.locator("#dense-probs .prob-row.is-current")).to_have_attribute("data-index", "0")
    page.click("#step-next")
    explorer.wait_shown(7, 1)
    expect(page.locator("#dense-probs .prob-row.is-current")).to_have_attribute("data-index", "1")


def test_step_controls_work_from_the_keyboard(explorer: Explorer) -> None:
    page = explorer.page
    explorer.open()
    page.focus("#step-view")
    page.keyboard.press("ArrowRight")
    explorer.wait_shown(0, 1)
    page.keyboard.press("ArrowRight")
    explorer.wait_shown(0, 2)
    page.keyboard.press("ArrowLeft")
    explorer.wait_shown(0, 1)
    page.keyboard.press("End")
    explorer.wait_shown(0, 28 * 28 - 1)
    page.keyboard.press("Home")
    explorer.wait_shown(0, 0)

    play = page.locator("#step-play")
    page.keyboard.press("Space")
    expect(play).to_have_attribute("aria-pressed", "true")
    expect(play).to_contain_text("Pause")
    page.wait_for_function("() => Number(document.querySelector('#step-view').dataset.pos) >= 2")
    page.keyboard.press("Space")
    expect(play).to_have_attribute("aria-pressed", "false")
    paused_at = int(page.get_attribute("#step-view", "data-pos") or "-1")
    page.wait_for_timeout(800)
    assert int(page.get_attribute("#step-view", "data-pos") or "-1") == paused_at

    # Tab reaches the buttons; Enter and Space press them as usual.
    page.focus("#step-next")
    page.keyboard.press("Enter")
    explorer.wait_shown(0, paused_at + 1)
    page.keyboard.press("Space")
    explorer.wait_shown(0, paused_at + 2)
    expect(play).to_have_attribute("aria-pressed", "false")
    page.focus("#step-back")
    page.keyboard.press("Enter")
    explorer.wait_shown(0, paused_at + 1)
