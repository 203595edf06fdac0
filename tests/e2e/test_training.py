"""Training from the page: a stack learns the digits live (curves drawn from server-sent events),
a second job is cancelled, the saved model survives a reload, runs, shows its saliency and
Grad-CAM, and is deleted; on a phone the fit button makes a stack trainable and polling takes
over when the event stream is blocked.

These tests start their own server with its own data directory and a small training sample, so
nothing is written outside a temporary directory and each job takes seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import PHONE, BrowserLog, Explorer, new_page
from tests.e2e.test_accessibility import LOW_CONTRAST, UNNAMED_CONTROLS
from tests.e2e.test_screenshots import assert_fits
from tests.live_server import free_port, running_server, server_env

pytestmark = pytest.mark.e2e
TRAIN_EXAMPLES = 400


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of our own: data_dir in a temporary directory, train_max_examples small."""
    port = free_port()
    folder = tmp_path_factory.mktemp("train-server")
    command = [sys.executable, "-m", "uvicorn", "app.web.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    env = server_env(
        port, data_dir=folder / "data", train_max_examples=TRAIN_EXAMPLES, train_threads=1
    )
    with running_server(command, env, folder / "uvicorn.log") as url:
        yield url


@pytest.fixture(scope="module")
def api(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server_url}/api/v1", timeout=30) as client:
        yield client


def shoot(page: Page, folder: Path, name: str, selector: str) -> None:
    page.evaluate(
        "sel => document.querySelector(sel).scrollIntoView({block: 'start', behavior: 'instant'})",
        selector,
    )
    page.wait_for_timeout(200)
    size = page.viewport_size or {}
    assert_fits(page, name)
    page.screenshot(path=str(folder / f"{size.get('width')}x{size.get('height')}-{name}.png"))


def fill_settings(page: Page, *, epochs: int, batch: int, name: str) -> None:
    page.fill("#train-epochs", str(epochs))
    page.fill("#train-batch", str(batch))
    page.fill("#train-name", name)


def wait_status(page: Page, status: str, timeout: float = 120_000) -> None:
    page.wait_for_function(
        "s => document.querySelector('.train-live').dataset.status === s",
        arg=status,
        timeout=timeout,
    )


def points(page: Page, chart: str) -> int:
    return int(page.get_attribute(chart, "data-points") or 0)


def test_train_watch_the_curves_cancel_reload_run_explain_and_delete(
    explorer: Explorer, api: httpx.Client, browser_log: BrowserLog, screenshot_dir: Path
) -> None:
    page = explorer.page
    explorer.open()  # the default stack (small classifier) is 28x28x1 -> dense 10 softmax
    page.locator("#stage-train").scroll_into_view_if_needed()
    expect(page.locator("#train-fit")).to_have_attribute("data-fits", "true")
    expect(page.locator("#train-fit-button")).to_be_disabled()
    expect(page.locator("#train-examples-note")).to_contain_text(f"at most {TRAIN_EXAMPLES}")

    fill_settings(page, epochs=8, batch=4, name="e2e-digits")
    page.click("#train-start")
    page.wait_for_function(
        "() => Number(document.querySelector('#train-loss-chart').dataset.points) > 0"
    )
    first_loss = page.text_content("#train-loss")
    expect(page.locator("#train-status")).to_contain_text(f"{TRAIN_EXAMPLES} of 4,000")
    page.wait_for_function(
        "old => document.querySelector('#train-loss').textContent !== old", arg=first_loss
    )
    wait_status(page, "done")
    steps = 8 * TRAIN_EXAMPLES // 4
    job = api.get("/train").json()[-1]
    assert job["saved_model"] == "e2e-digits" and job["train_examples"] == TRAIN_EXAMPLES
    assert job["step"] == steps
    assert points(page, "#train-loss-chart") == len(job["batch_losses"]) > 100  # all drawn
    assert points(page, "#train-acc-chart") == 8  # one point per epoch
    expect(page.locator("#train-progress")).to_have_attribute("value", str(steps))
    expect(page.locator("#train-percent")).to_have_text("100%")
    expect(page.locator("#train-result")).to_contain_text("Saved as e2e-digits")
    seconds = job["history"][-1]["seconds"]
    took = page.text_content("#train-status").split("Last epoch: ")[1].split(",")[0]
    if seconds < 1:
        assert took == (f"{seconds * 1000:.0f} ms" if seconds >= 0.0005 else "< 1 ms")
    else:
        assert took == f"{seconds:.{2 if seconds < 10 else 1}f} s"
    words = page.text_content("#train-status").split(", ")[-1]  # "9,484 images/s."
    assert abs(int(words.split(" ")[0].replace(",", "")) - TRAIN_EXAMPLES / seconds) <= 0.5
    saved = page.locator('#saved-models [data-model="e2e-digits"]')
    expect(saved).to_contain_text("digits · test accuracy")
    expect(explorer.preset_button("e2e-digits")).to_be_visible()
    # The canvas really has the curve: coloured pixels inside the plot area.
    drawn = page.evaluate(
        """() => {
            const c = document.querySelector('#train-loss-chart');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i] < 120) n += 1;
            return n;
        }"""
    )
    assert drawn > 50
    assert page.evaluate(UNNAMED_CONTROLS) == []
    assert page.evaluate(LOW_CONTRAST) == []
    shoot(page, screenshot_dir, "5-train-done", "#stage-train")

    # A second job, cancelled while it runs: nothing saved.
    fill_settings(page, epochs=50, batch=4, name="e2e-cancel")
    page.click("#train-start")
    wait_status(page, "running")
    expect(page.locator("#train-running-actions")).to_be_visible()
    page.wait_for_function(
        "() => Number(document.querySelector('#train-loss-chart').dataset.points) > 2"
    )
    shoot(page, screenshot_dir, "5-train-running", "#stage-train")
    page.click("#train-cancel")
    wait_status(page, "cancelled")
    expect(page.locator("#train-result")).to_contain_text("nothing was saved")
    expect(page.locator('#saved-models [data-model="e2e-cancel"]')).to_have_count(0)
    assert "e2e-cancel" not in [m["name"] for m in api.get("/models").json()]

    # After a reload the saved model is listed, loads, runs and explains itself.
    page.reload()
    explorer.wait_for_run()
    saved = page.locator('#saved-models [data-model="e2e-digits"]')
    expect(saved).to_be_visible()
    before = explorer.run_id()
    saved.get_by_role("button", name="Load e2e-digits and run it").click()
    explorer.wait_for_run(after=before)
    expect(page.locator("#prediction")).to_contain_text("e2e-digits")
    card = page.locator("#layer-results .act-card-input")
    top = page.locator("#explain-target").input_value()
    page.select_option("#explain-mode", "saliency")
    expect(card).to_have_attribute("data-explain", f"saliency/{top}")
    overlay = card.locator("img.explain-map")
    expect(overlay).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 28", arg=overlay.element_handle()
    )
    expect(card.locator("canvas.act-input")).to_be_hidden()
    expect(page.locator("#explain-note")).to_contain_text("Saliency for")
    shoot(page, screenshot_dir, "3-saliency", "#layer-results")
    page.select_option("#explain-mode", "gradcam")
    expect(card).to_have_attribute("data-explain", f"gradcam/{top}")
    expect(page.locator("#explain-note")).to_contain_text("layer 4")  # the relu after conv 3
    assert page.evaluate(UNNAMED_CONTROLS) == []
    shoot(page, screenshot_dir, "3-gradcam", "#layer-results")
    page.select_option("#explain-mode", "hirescam")
    expect(card).to_have_attribute("data-explain", f"hirescam/{top}")
    expect(page.locator("#explain-note")).to_contain_text("HiResCAM")
    shoot(page, screenshot_dir, "3-hirescam", "#layer-results")
    other = "0" if top != "0" else "1"
    page.select_option("#explain-target", other)
    expect(card).to_have_attribute("data-explain", f"hirescam/{other}")
    page.select_option("#explain-mode", "")
    expect(card.locator("canvas.act-input")).to_be_visible()

    # Delete asks first; a refusal keeps the model.
    page.once("dialog", lambda dialog: dialog.dismiss())
    saved.get_by_role("button", name="Delete e2e-digits").click()
    expect(saved).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    saved.get_by_role("button", name="Delete e2e-digits").click()
    expect(saved).to_have_count(0)
    expect(page.locator("#saved-empty")).to_be_visible()
    assert "e2e-digits" not in [m["name"] for m in api.get("/models").json()]
    expect(explorer.preset_button("e2e-digits")).to_have_count(0)


def test_the_data_set_picker_and_its_words_come_from_the_server(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()  # the small classifier: 28x28x1 -> dense 10 softmax
    datasets = api.get("/datasets").json()
    assert {"digits", "shapes"} <= {d["name"] for d in datasets}
    options = page.eval_on_selector_all(
        "#train-dataset option", "nodes => nodes.map(n => [n.value, n.textContent])"
    )
    assert [value for value, _ in options] == [d["name"] for d in datasets]
    for (_, text), d in zip(options, datasets, strict=True):
        size = "×".join(str(d["input"][k]) for k in ("height", "width", "channels"))
        assert text == f"{d['name']} · {len(d['classes'])} classes · {size}"

    def sizes(d: dict) -> str:
        size = "×".join(str(d["input"][k]) for k in ("height", "width", "channels"))
        return f"{size}, {len(d['classes'])} classes, {d['train']:,} training images"

    digits = next(d for d in datasets if d["name"] == "digits")
    fit = page.locator("#train-fit")
    expect(fit).to_have_text(f"The stack fits digits ({sizes(digits)}).")
    expect(page.locator("#train-dataset-note")).to_have_text(digits["description"])
    first = f"{digits['classes'][0]}:\u00a0{digits['counts'][0]:,}"
    expect(page.locator("#train-dataset-classes")).to_contain_text(first)

    # Another data set: the words say what stops the stack, with that data set's sizes.
    shapes = next(d for d in datasets if d["name"] == "shapes")
    page.select_option("#train-dataset", "shapes")
    expect(fit).to_have_attribute("data-fits", "false")
    expect(fit).to_contain_text(f"does not fit shapes ({sizes(shapes)}) yet")
    expect(fit).to_contain_text(f"not {len(shapes['classes'])}")
    expect(page.locator("#train-dataset-note")).to_have_text(shapes["description"])
    expect(page.locator("#train-name")).to_have_attribute("placeholder", "my-shapes")
    page.click("#train-fit-button")
    expect(fit).to_have_attribute("data-fits", "true")
    spec = explorer.spec()
    want = shapes["input"]
    assert spec["input"] == {k: want[k] for k in ("height", "width", "channels")}
    assert spec["layers"][-1]["units"] == len(shapes["classes"])


def test_on_a_phone_the_fit_button_makes_a_stack_trainable_and_polling_follows_the_job(
    browser: Browser, server_url: str, browser_log: BrowserLog, screenshot_dir: Path
) -> None:
    page = new_page(browser, server_url, browser_log, PHONE)
    try:
        explorer = Explorer(page, server_url)
        explorer.open()
        explorer.preset("Edge detectors")  # 32x32x1, one conv: fits nothing yet
        page.select_option("#train-dataset", "shapes")
        fit = page.locator("#train-fit")
        expect(fit).to_have_attribute("data-fits", "false")
        expect(fit).to_contain_text("the input is 32×32×1, not 32×32×3")
        shoot(page, screenshot_dir, "5-train-phone", "#stage-train")
        page.click("#train-fit-button")
        expect(fit).to_have_attribute("data-fits", "true")
        spec = explorer.spec()
        assert spec["input"] == {"height": 32, "width": 32, "channels": 3}
        assert [layer["type"] for layer in spec["layers"]] == ["conv", "flatten", "dense"]
        assert spec["layers"][-1] == {"type": "dense", "units": 5, "activation": "softmax"}

        # With the event stream blocked, the page polls the job's status instead.
        browser_log.expect(r"events|ERR_FAILED|EventSource")
        page.route("**/api/v1/train/*/events", lambda route: route.abort())
        page.fill("#train-epochs", "2")
        page.fill("#train-batch", "32")
        page.fill("#train-examples", "96")
        page.click("#train-start")
        wait_status(page, "done")
        expect(page.locator("#train-result")).to_contain_text("Saved as my-shapes")
        assert points(page, "#train-acc-chart") == 2
        expect(page.locator('#saved-models [data-model="my-shapes"]')).to_contain_text("shapes")
        shoot(page, screenshot_dir, "5-train-phone-done", ".train-live")
    finally:
        page.context.close()
    problems = browser_log.unexpected()
    assert not problems, problems
