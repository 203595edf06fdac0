"""Image in, run, activations out: upload, the stage cards in words, and one channel enlarged."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import BrowserLog, Explorer

pytestmark = pytest.mark.e2e


def write_png(path: Path, width: int, height: int) -> Path:
    """A colourful width×height RGB PNG: red ramp left to right, green top to bottom."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), np.full_like(x, 96)],
        axis=-1,
    ).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path, format="PNG")
    return path


def load_npy(api: httpx.Client, url: str) -> np.ndarray:
    response = httpx.get(str(api.base_url.join(url)), timeout=30)
    response.raise_for_status()
    return np.load(io.BytesIO(response.content))


def test_upload_run_and_open_a_channel(
    explorer: Explorer, api: httpx.Client, tmp_path: Path
) -> None:
    page = explorer.page
    explorer.open()
    explorer.preset("32×32×3, ten 5×5 filters, P=2")

    before = explorer.run_id()
    page.set_input_files("#image-file", str(write_png(tmp_path / "ramp.png", 60, 40)))
    expect(page.locator("#input-caption")).to_have_text("32×32×3 · ramp.png")
    page.click("#run-button")
    run_id = explorer.wait_for_run(after=before)

    # The network saw the uploaded picture at its input size: red grows to the right.
    red = page.evaluate(
        """() => {
            const c = document.querySelector('#input-preview');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return [d[(16 * 32 + 1) * 4], d[(16 * 32 + 30) * 4]];
        }"""
    )
    assert red[0] < 40 and red[1] > 215

    cards = page.locator("#layer-results .act-card[data-layer]")
    expect(cards).to_have_count(1)
    conv = cards.first
    expect(conv.locator(".act-words")).to_have_text(
        "32×32×3 colour image → 10 feature maps of 32×32"
    )
    grid = conv.locator("img.act-grid")
    expect(grid).to_have_attribute("src", re.compile(f"/runs/{run_id}/layers/0.png"))
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=grid.element_handle())

    activation = load_npy(api, f"/api/v1/runs/{run_id}/layers/0.npy")
    assert activation.shape == (32, 32, 10)
    stats = conv.locator(".act-stats").text_content() or ""
    assert f"min {activation.min():.3f}" in stats and f"max {activation.max():.3f}" in stats

    conv.get_by_role("button", name="Open layer 0 channel 3").click()
    dialog = page.locator("#channel-dialog")
    expect(dialog).to_be_visible()
    image = page.locator("#channel-image")
    expect(image).to_have_attribute("src", re.compile(f"/runs/{run_id}/layers/0/channels/3.png"))
    expect(page.locator("#channel-sub")).to_contain_text("Channel 3 of 10")
    channel = activation[:, :, 3]
    expect(page.locator("#channel-min")).to_have_text(f"{channel.min():.3f}")
    expect(page.locator("#channel-max")).to_have_text(f"{channel.max():.3f}")
    assert image.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
    assert image.evaluate("img => img.naturalWidth") == 32

    page.click("#channel-next")
    expect(page.locator("#channel-sub")).to_contain_text("Channel 4 of 10")
    expect(page.locator("#channel-min")).to_have_text(f"{activation[:, :, 4].min():.3f}")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # Focus returns to the channel that was last shown.
    page.wait_for_function("() => document.activeElement.dataset.channel === '4'")


def test_a_file_that_is_not_an_image_is_refused_with_a_message(
    explorer: Explorer, tmp_path: Path
) -> None:
    page = explorer.page
    explorer.open()
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    page.set_input_files("#image-file", str(text))
    expect(page.locator("#image-error")).to_be_visible()
    expect(page.locator("#image-error")).to_contain_text("notes.txt")
    expect(page.locator("#input-caption")).to_contain_text("Digit 7")


def test_a_drawing_becomes_the_input(explorer: Explorer) -> None:
    page = explorer.page
    explorer.open()
    before = explorer.run_id()
    page.locator("#draw-canvas").scroll_into_view_if_needed()
    box = page.locator("#draw-canvas").bounding_box()
    assert box
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 10)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] - 10, steps=8)
    page.mouse.up()
    expect(page.locator("#input-caption")).to_have_text("28×28×1 · your drawing")
    explorer.wait_for_run(after=before)
    column = page.evaluate(
        """() => {
            const c = document.querySelector('#input-preview');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return [d[(14 * 28 + 14) * 4], d[(14 * 28 + 3) * 4]];
        }"""
    )
    assert column[0] > 200 and column[1] < 30
    page.click("#draw-clear")
    expect(page.locator("#input-caption")).to_have_text("28×28×1 · your drawing")
    page.wait_for_function(
        """() => {
            const c = document.querySelector('#input-preview');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return d[(14 * 28 + 14) * 4] === 0;
        }"""
    )


def test_shipped_models_are_offered_and_run_with_their_weights_and_labels(
    explorer: Explorer, api: httpx.Client, tmp_path: Path
) -> None:
    page = explorer.page
    explorer.open()
    models = api.get("/models").json()
    expect(page.locator("#preset-list [data-model]")).to_have_count(len(models))
    for model in models[:2]:
        run_id = explorer.preset(model["name"])
        expect(page.locator("#layer-list > li")).to_have_count(len(model["network"]["layers"]))
        expect(page.locator("#model-note")).to_contain_text(model["name"])
        assert explorer.texts("#prediction-chart .prob-label") == [str(x) for x in model["labels"]]
        # The run used the model's trained weights: the same kernel as a run made by name.
        size = model["network"]["input"]
        png = tmp_path / f"{model['name']}.png"
        write_png(png, size["width"], size["height"])
        by_name = api.post(
            "/forward",
            files={"image": ("x.png", png.read_bytes(), "image/png")},
            data={"model": model["name"]},
        ).json()["run_id"]
        where = {"y": 0, "x": 0, "c": 0}
        mine = api.get(f"/runs/{run_id}/layers/0/explain", params=where).json()
        theirs = api.get(f"/runs/{by_name}/layers/0/explain", params=where).json()
        assert np.allclose(mine["kernel"], theirs["kernel"], atol=1e-7)
        # An edit leaves the trained weights behind, and the page says so.
        explorer.page.fill("#input-seed", "3")
        expect(page.locator("#model-note")).to_contain_text("seeded")


DROP_OR_PASTE = """([kind, name, b64]) => {
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type: 'image/png' }));
    if (kind === 'drop') {
        const zone = document.querySelector('#drop-zone');
        zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true }));
        zone.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true }));
    } else {
        document.body.dispatchEvent(
            new ClipboardEvent('paste', { clipboardData: data, bubbles: true }));
    }
}"""


@pytest.mark.parametrize("kind", ["drop", "paste"])
def test_an_image_can_be_dropped_or_pasted(explorer: Explorer, tmp_path: Path, kind: str) -> None:
    page = explorer.page
    explorer.open()
    before = explorer.run_id()
    png = write_png(tmp_path / f"{kind}.png", 20, 20)
    payload = base64.b64encode(png.read_bytes()).decode()
    page.evaluate(DROP_OR_PASTE, [kind, f"{kind}.png", payload])
    expect(page.locator("#input-caption")).to_have_text(f"28×28×1 · {kind}.png")
    explorer.wait_for_run(after=before)
    # Grayscale input: the ramp's red and green mix into grey, brighter to the bottom right.
    corners = page.evaluate(
        """() => {
            const c = document.querySelector('#input-preview');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const at = (y, x) => [...d.slice((y * 28 + x) * 4, (y * 28 + x) * 4 + 3)];
            return [at(1, 1), at(26, 26)];
        }"""
    )
    dark, bright = corners
    assert dark[0] == dark[1] == dark[2] and bright[0] == bright[1] == bright[2]
    assert bright[0] > dark[0] + 100


def test_api_errors_are_shown_with_the_servers_detail_message(
    explorer: Explorer, browser_log: BrowserLog
) -> None:
    page = explorer.page
    browser_log.expect(r"status of (413|404)")
    explorer.open()
    too_big = "Image of 9000x9000 pixels is larger than the 16777216-pixel limit."
    page.route(
        "**/api/v1/forward",
        lambda route: route.fulfill(status=413, json={"detail": too_big}),
    )
    page.click("#run-button")
    expect(page.locator("#run-error")).to_have_text(f"Run failed: {too_big}")
    page.unroute("**/api/v1/forward")

    gone = "Run 0123abcd is unknown or has expired; run the network again."
    page.route(
        "**/explain?*",
        lambda route: route.fulfill(status=404, json={"detail": gone}),
    )
    page.click("#step-last")  # a position not fetched yet
    expect(page.locator("#step-error")).to_have_text(f"Could not explain this position: {gone}")
    page.unroute("**/explain?*")
    page.click("#run-button")
    expect(page.locator("#run-error")).to_be_hidden()
