"""The Backward mode in real Chromium: the loss with its numbers, a step-through from the loss
back to the first conv whose every shown number agrees with explain_gradient, a gradient check,
steps of gradient descent that lower the loss, feature visualisation, a slow network, and
screenshots at a laptop and a phone size."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import DESKTOP, PHONE, BrowserLog, Explorer, new_page, throttle
from tests.e2e.test_accessibility import LOW_CONTRAST, UNNAMED_CONTROLS
from tests.e2e.test_screenshots import shoot

pytestmark = pytest.mark.e2e

SIG_TOLERANCE = 5e-4  # the page shows gradients to 4 significant figures


def assert_shown(text: str, expected: float, rel: float = SIG_TOLERANCE) -> None:
    """A number the page shows (4 significant figures) against the API's."""
    shown = float(text.replace("−", "-"))
    assert abs(shown - expected) <= rel * abs(expected) + 1e-12, (text, expected)


def explain_gradient(
    api: httpx.Client, run_id: str, layer: int, target: int, loss: str, **query: Any
) -> dict[str, Any]:
    params = {"target": target, "loss": loss, **query}
    response = api.get(f"/runs/{run_id}/layers/{layer}/explain_gradient", params=params)
    response.raise_for_status()
    return response.json()


class Backward:
    """The Backward mode as a test drives it."""

    def __init__(self, explorer: Explorer) -> None:
        self.explorer = explorer
        self.page = explorer.page

    def open(self) -> tuple[str, int, str]:
        """Open the Backward tab of the current run; (run_id, target, loss) once shown."""
        run_id = self.explorer.run_id()
        self.page.click("#tab-backward")
        return self.wait_loss(run_id)

    def wait_loss(self, run_id: str | None) -> tuple[str, int, str]:
        self.page.wait_for_function(
            """id => {
                const shown = document.querySelector('#gradient-cards').dataset.shown || '';
                return shown.startsWith(id + '/')
                    && (document.querySelector('#stage-loss').dataset.shown || '') === shown;
            }""",
            arg=run_id,
        )
        shown = self.page.get_attribute("#stage-loss", "data-shown") or ""
        run, target, loss = shown.split("/")
        return run, int(target), loss

    def shown_step(self) -> list[str]:
        """run/target/loss/layer/channel/pos of the backward step view."""
        return (self.page.get_attribute("#bstep-view", "data-shown") or "").split("/")

    def wait_step(self, layer: int, pos: int | None = None) -> tuple[int, int]:
        """Wait for a value of `layer` (at `pos`, if given) to land; (channel, pos)."""
        self.page.wait_for_function(
            """([layer, pos]) => {
                const s = (document.querySelector('#bstep-view').dataset.shown || '').split('/');
                return s.length === 6 && Number(s[3]) === layer
                    && (pos === null || Number(s[5]) === pos);
            }""",
            arg=[layer, pos],
        )
        shown = self.shown_step()
        return int(shown[4]), int(shown[5])


@pytest.fixture
def backward(explorer: Explorer) -> Backward:
    return Backward(explorer)


def check_terms(page: Page, prefix: str, data: dict[str, Any]) -> None:
    """The formula, every listed term (its factors and product), the rest and the value."""
    assert page.text_content(f"#{prefix}-formula") == data["formula"]
    rows = page.eval_on_selector_all(
        f"#{prefix}-terms tbody tr",
        """rows => rows.map(r => ({
            rest: r.classList.contains('is-rest'),
            count: r.dataset.count || null,
            label: r.cells[0].textContent,
            product: r.querySelector('.term-product').textContent,
            factors: Object.fromEntries([...r.querySelectorAll('td[data-key]')]
                .map(td => [td.dataset.key, td.textContent])),
        }))""",
    )
    assert len(rows) == len(data["terms"])
    for row, term in zip(rows, data["terms"], strict=True):
        assert_shown(row["product"], term["product"])
        if term.get("rest"):
            assert row["rest"] and int(row["count"]) == term["count"]
            assert (
                row["label"] == f"+ {term['count']} more term{'s' if term['count'] != 1 else ''} ="
            )
            continue
        assert set(row["factors"]) == set(term) - {"product"}
        for key, text in row["factors"].items():
            value = term[key]
            if isinstance(value, bool):
                assert text == ("yes" if value else "no"), key
            elif isinstance(value, list):
                assert text == f"[{', '.join(map(str, value))}]", key
            elif isinstance(value, float):
                assert_shown(text, value)
            else:  # an index or a name
                assert text == str(value), key
    assert_shown(page.text_content(f"#{prefix}-value") or "", data["value"])


def test_the_forward_view_comes_first_and_asks_for_no_gradients(
    explorer: Explorer, api: httpx.Client
) -> None:
    page = explorer.page
    asked: list[str] = []
    page.on(
        "request",
        lambda r: asked.append(r.url) if "/api/v1/runs/" in r.url and "gradient" in r.url else None,
    )
    explorer.open()
    expect(page.locator("#tab-forward")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#stage-activations")).to_be_visible()
    expect(page.locator("#mode-backward")).to_be_hidden()
    assert asked == []
    page.click("#tab-backward")
    expect(page.locator("#stage-loss")).to_be_visible()
    expect(page.locator("#stage-activations")).to_be_hidden()
    page.wait_for_function("() => location.hash.includes('mode=backward')")
    # The link brings the mode back.
    page.reload()
    run_id, target, loss = Backward(explorer).wait_loss(explorer.wait_for_run())
    expect(page.locator("#tab-backward")).to_have_attribute("aria-selected", "true")
    # The raw score is offered beside cross-entropy, and shown with the server's value.
    page.select_option("#back-loss", "score")
    page.wait_for_function(
        "want => document.querySelector('#stage-loss').dataset.shown === want",
        arg=f"{run_id}/{target}/score",
    )
    expect(page.locator("#loss-formula")).to_contain_text(f"L = output[{target}]")
    reply = api.get(f"/runs/{run_id}/gradients", params={"target": target, "loss": "score"})
    assert_shown(page.text_content("#loss-value") or "", reply.json()["loss_value"])
    page.focus("#tab-backward")
    page.keyboard.press("ArrowLeft")  # the tabs follow the arrow keys
    expect(page.locator("#tab-forward")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#stage-step")).to_be_visible()


def largest_position(api: httpx.Client, url: str, channel: int) -> int:
    """Where |gradient| is largest in channel `channel` of a layer's gradient.npy (or vector)."""
    array = np.load(io.BytesIO(api.get(url.removeprefix("/api/v1")).content))
    plane = array[:, :, channel] if array.ndim == 3 else array
    return int(np.argmax(np.abs(plane).reshape(-1)))


def test_step_back_from_the_loss_to_the_first_conv_matches_explain_gradient(
    explorer: Explorer, backward: Backward, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    run_id, target, loss = backward.open()
    assert loss == "cross_entropy"
    reply = api.get(f"/runs/{run_id}/gradients", params={"target": target, "loss": loss}).json()
    assert reply["target"] == target  # the server's default: the top class
    assert_shown(page.text_content("#loss-value") or "", reply["loss_value"])
    probabilities = api.get(f"/runs/{run_id}/layers/7.npy").content
    p = np.load(io.BytesIO(probabilities))[target]
    assert_shown(page.text_content("#loss-p") or "", float(p))
    expect(page.locator("#loss-formula")).to_contain_text(f"L = −log p[{target}]")

    layers = reply["layers"]
    last = len(layers) - 1
    expect(page.locator("#bstep-layer")).to_have_value(str(last))

    def check(layer: int, channel: int, pos: int) -> None:
        shape = layers[layer]["output_shape"]
        if len(shape) == 3:
            y, x = divmod(pos, shape[1])
            query = {"y": y, "x": x, "c": channel}
        else:
            query = {"i": pos}
        data = explain_gradient(api, run_id, layer, target, loss, **query)
        assert data["position"] == list(query.values())
        check_terms(page, "bstep", data)

    for layer in range(last, -1, -1):
        if layer < last:
            page.click("#bstep-down")  # one layer towards the input
            expect(page.locator("#bstep-layer")).to_have_value(str(layer))
        channel, first = backward.wait_step(layer)
        if layer == last:
            assert first == target  # the loss stage opens at the target's own value
            check(layer, channel, first)
            expect(page.locator("#bstep-loss-line")).to_contain_text(f"−1/p[{target}]")
        if first:
            page.click("#bstep-first")
        backward.wait_step(layer, 0)
        check(layer, channel, 0)
        for pos in (1, 2):
            page.click("#bstep-next")
            backward.wait_step(layer, pos)
            check(layer, channel, pos)
        # And the value the loss is most sensitive to, by its button.
        page.click("#bstep-largest")
        pos = largest_position(api, layers[layer]["gradient_url"], channel)
        backward.wait_step(layer, pos)
        check(layer, channel, pos)
    expect(page.locator("#bstep-down")).to_be_disabled()  # the first conv: nothing below

    # The keys step too, with the focus on the view.
    page.focus("#bstep-view")
    page.keyboard.press("Home")
    backward.wait_step(0, 0)
    page.keyboard.press("ArrowRight")
    backward.wait_step(0, 1)
    check(0, int(backward.shown_step()[4]), 1)


def test_a_gradient_check_agrees_with_the_central_difference(
    explorer: Explorer, backward: Backward, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    run_id, target, loss = backward.open()
    for layer, kind in [(0, "weight"), (3, "weight"), (7, "bias"), (7, "weight")]:
        page.select_option("#check-layer", str(layer))
        page.select_option("#check-kind", kind)
        page.wait_for_function(
            "want => document.querySelector('#check-index').dataset.picked === want",
            arg=f"{run_id}/{layer}/{kind}",
        )
        fields = page.eval_on_selector_all(
            "#check-index input", "inputs => inputs.map(i => Number(i.value))"
        )
        page.click("#check-run")
        where = fields[0] if kind == "bias" else ",".join(map(str, fields))
        page.wait_for_function(
            "want => document.querySelector('#check-result').dataset.shown === want",
            arg=f"{run_id}/{layer}/{where}",
        )
        data = explain_gradient(api, run_id, layer, target, loss, **{kind: where}, check="true")
        check = data["check"]
        error = float(page.text_content("#check-relerr") or "nan")
        assert error < 1e-4
        assert abs(error - check["relative_error"]) <= 0.01 * check["relative_error"] + 1e-300
        assert_shown(page.text_content("#check-analytic") or "", check["analytic"], 1e-7)
        assert_shown(page.text_content("#check-numeric") or "", check["numeric"], 1e-7)
        assert_shown(page.text_content("#check-plus") or "", check["loss_plus"], 1e-9)
        assert_shown(page.text_content("#check-minus") or "", check["loss_minus"], 1e-9)
        expect(page.locator("#check-verdict")).to_have_class(re.compile("is-good"))
        check_terms(page, "check-terms", data)
        assert check["analytic"] != 0  # the largest |gradient| was picked, not a dead weight


def test_three_steps_lower_the_loss_and_redo_the_run(
    explorer: Explorer, backward: Backward, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    run_id, target, loss = backward.open()
    expect(page.locator("#sgd-chart")).to_have_attribute("data-points", "0")
    page.fill("#sgd-lr", "0.001")
    losses = []
    for _ in range(3):
        page.click("#sgd-step")
        page.wait_for_function(
            "prev => { const s = document.querySelector('#sgd-compare').dataset.shown;"
            " return s && s !== prev; }",
            arg=run_id,
        )
        new_id = page.get_attribute("#sgd-compare", "data-shown")
        assert new_id and new_id != run_id
        # The new run is the page's run: its activations and its gradients are shown.
        explorer.wait_for_run(after=run_id)
        assert backward.wait_loss(new_id) == (new_id, target, loss)
        before = float(page.text_content("#sgd-before-loss") or "nan")
        after = float(page.text_content("#sgd-after-loss") or "nan")
        assert after < before
        reply = api.get(f"/runs/{new_id}/gradients", params={"target": target, "loss": loss})
        assert_shown(page.text_content("#sgd-after-loss") or "", reply.json()["loss_value"])
        assert_shown(page.text_content("#loss-value") or "", reply.json()["loss_value"])
        expect(page.locator("#sgd-verdict")).to_contain_text("down")
        # The probabilities before and after, side by side, the target's higher after.
        p_before = float(
            page.text_content(f"#sgd-before-probs [data-index='{target}'] .prob-value") or 0
        )
        p_after = float(
            page.text_content(f"#sgd-after-probs [data-index='{target}'] .prob-value") or 0
        )
        assert p_after >= p_before
        losses.append((before, after))
        run_id = new_id
    assert all(
        b[1] == pytest.approx(a[0], rel=SIG_TOLERANCE)
        for a, b in zip(losses[1:], losses[:-1], strict=True)
    )
    points = int(page.get_attribute("#sgd-chart", "data-points") or "0")
    assert points >= 3
    expect(page.locator("#sgd-chart")).to_have_attribute("aria-label", re.compile("over 3 steps"))


def test_feature_visualisation_shows_the_image_and_its_objective(
    explorer: Explorer, backward: Backward, api: httpx.Client
) -> None:
    page = explorer.page
    run_id = explorer.open()
    _, target, _ = backward.open()
    # A final softmax layer is visualised by class, starting at the target.
    expect(page.locator("#vis-layer")).to_have_value("7")
    expect(page.locator("#vis-channel")).to_have_value(str(target))
    page.select_option("#vis-layer", "3")
    page.select_option("#vis-channel", "5")
    page.fill("#vis-steps", "32")
    page.click("#vis-run")
    page.wait_for_function(
        "want => document.querySelector('#vis-result').dataset.shown === want",
        arg=f"{run_id}/3/5/32/0",
    )
    reply = api.get(
        f"/runs/{run_id}/layers/3/visualise", params={"channel": 5, "steps": 32, "seed": 0}
    ).json()
    page.wait_for_function("() => document.querySelector('#vis-image').naturalWidth > 0")
    assert page.get_attribute("#vis-image", "src") == reply["image_url"]
    expect(page.locator("#vis-chart")).to_have_attribute(
        "data-points", str(len(reply["objective"]))
    )
    caption = page.text_content("#vis-result .train-chart figcaption") or ""
    first, last = re.findall(r"(-?[\d.]+(?:e-?\d+)?) → (-?[\d.]+(?:e-?\d+)?)", caption)[0]
    assert_shown(first, reply["objective"][0])
    assert_shown(last, reply["objective"][-1])


def test_backward_on_a_slow_network(explorer: Explorer, backward: Backward) -> None:
    page = explorer.page
    explorer.open()
    throttle(page, latency_ms=400)
    page.click("#tab-backward")
    # While the gradients are on their way the page says so, then shows them.
    expect(page.locator("#back-status")).to_contain_text("Computing")
    run_id, target, loss = backward.wait_loss(explorer.run_id())
    expect(page.locator("#back-status")).to_have_text("")
    backward.wait_step(7, target)
    page.click("#bstep-down")
    expect(page.locator("#bstep-next")).to_be_disabled()  # until layer 6 has landed
    backward.wait_step(6, 0)
    page.click("#bstep-next")
    backward.wait_step(6, 1)
    # A second click while a step is in flight does not take a second step.
    page.click("#sgd-step")
    expect(page.locator("#sgd-step")).to_be_disabled()
    page.click("#sgd-step", force=True)
    page.wait_for_function(
        "prev => { const s = document.querySelector('#sgd-compare').dataset.shown;"
        " return s && s !== prev; }",
        arg=run_id,
    )
    backward.wait_loss(page.get_attribute("#sgd-compare", "data-shown"))
    expect(page.locator("#sgd-chart")).to_have_attribute("data-points", "2")
    assert page.evaluate(UNNAMED_CONTROLS) == []
    assert page.evaluate(LOW_CONTRAST) == []


def test_a_network_without_softmax_steps_back_from_its_score(
    explorer: Explorer, backward: Backward, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    explorer.preset("7×7, F=3, S=2")
    run_id, target, loss = backward.open()
    assert loss == "score"
    assert page.eval_on_selector_all("#back-loss option", "o => o.map(x => x.value)") == ["score"]
    expect(page.locator("#loss-formula")).to_contain_text(f"L = output[{target}]")
    channel, pos = backward.wait_step(0, target)
    data = explain_gradient(api, run_id, 0, target, loss, y=pos // 3, x=pos % 3, c=channel)
    check_terms(page, "bstep", data)
    assert data["value"] == 1.0
    expect(page.locator("#stage-gradcheck")).to_be_visible()


def test_a_trained_model_on_a_labelled_sample_starts_at_the_true_class(
    explorer: Explorer, backward: Backward, api: httpx.Client
) -> None:
    page = explorer.page
    explorer.open()
    explorer.preset("shapes")  # its sample picture is the coloured shapes: no one class
    page.locator('[data-sample="circle"]').click()
    run_id = explorer.wait_for_run(after=explorer.run_id())
    run_id, target, loss = backward.open()
    assert (target, loss) == (0, "cross_entropy")  # "circle", whatever the model ranks first
    expect(page.locator("#back-target-note")).to_contain_text("true class")
    expect(page.locator("#back-target option:checked")).to_contain_text("the true class")
    # One value per stage, through the global max pool and every conv, checked against the API.
    layers = api.get(f"/runs/{run_id}/gradients", params={"target": target}).json()["layers"]
    rules = set()
    for layer in range(len(layers) - 1, -1, -1):
        pos = target  # the loss stage opens at the target's value
        if layer < len(layers) - 1:
            page.click("#bstep-down")
            backward.wait_step(layer)
            page.click("#bstep-largest")
            pos = largest_position(api, layers[layer]["gradient_url"], 0)
        backward.wait_step(layer, pos)
        shape = layers[layer]["output_shape"]
        query = (
            {"i": pos} if len(shape) == 1 else {"y": pos // shape[1], "x": pos % shape[1], "c": 0}
        )
        data = explain_gradient(api, run_id, layer, target, loss, **query)
        check_terms(page, "bstep", data)
        rules.add(data["rule"])
    assert {"globalmaxpool", "maxpool", "conv", "dense", "flatten", "loss"} <= rules


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


def test_backward_mode_fits_and_is_photographed(
    sized_page: Page, server_url: str, screenshot_dir: Path
) -> None:
    page = sized_page
    explorer = Explorer(page, server_url)
    backward = Backward(explorer)
    explorer.open()
    _, target, _ = backward.open()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gradient-cards img')].every(i => i.complete)"
    )
    shoot(page, screenshot_dir, "6-backward-loss", "#stage-loss")
    shoot(page, screenshot_dir, "6-backward-gradient-maps", "#gradient-cards")
    backward.wait_step(7, target)
    shoot(page, screenshot_dir, "6-backward-step-loss", "#stage-backstep")
    page.click("#bstep-down")
    backward.wait_step(6)
    page.click("#bstep-largest")
    page.wait_for_timeout(300)
    shoot(page, screenshot_dir, "6-backward-step-dense", "#bstep-view")
    page.select_option("#bstep-layer", "2")
    backward.wait_step(2)
    page.click("#bstep-largest")
    page.wait_for_timeout(300)
    shoot(page, screenshot_dir, "6-backward-step-conv", "#stage-backstep")
    page.select_option("#bstep-layer", "0")
    backward.wait_step(0)
    page.click("#bstep-largest")
    page.wait_for_timeout(300)
    shoot(page, screenshot_dir, "6-backward-step-relu", "#bstep-view")

    page.wait_for_function("() => document.querySelector('#check-index').dataset.picked")
    page.click("#check-run")
    page.wait_for_function("() => document.querySelector('#check-result').dataset.shown")
    shoot(page, screenshot_dir, "6-backward-check", "#stage-gradcheck")
    run_id = explorer.run_id()
    for _ in range(3):
        page.click("#sgd-step")
        page.wait_for_function(
            "prev => { const s = document.querySelector('#sgd-compare').dataset.shown;"
            " return s && s !== prev; }",
            arg=run_id,
        )
        run_id = page.get_attribute("#sgd-compare", "data-shown")
        backward.wait_loss(run_id)
    shoot(page, screenshot_dir, "6-backward-steps", "#stage-sgd")
    page.click("#vis-run")
    page.wait_for_function("() => document.querySelector('#vis-result').dataset.shown")
    page.wait_for_function("() => document.querySelector('#vis-image').complete")
    shoot(page, screenshot_dir, "6-backward-featvis", "#stage-featvis")
