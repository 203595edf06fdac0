"""Every control has a name, focus is visible, and text is readable (WCAG AA contrast)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Explorer

pytestmark = pytest.mark.e2e

UNNAMED_CONTROLS = """() => {
    const visible = (n) =>
        n.getClientRects().length > 0 && getComputedStyle(n).visibility !== 'hidden';
    const name = (n) => {
        if (n.getAttribute('aria-label')) return n.getAttribute('aria-label');
        const by = n.getAttribute('aria-labelledby');
        const text = (id) => document.getElementById(id)?.textContent || '';
        if (by) return by.split(' ').map(text).join(' ');
        if (n.labels && n.labels.length) return [...n.labels].map(l => l.textContent).join(' ');
        if (n.tagName === 'IMG') return n.getAttribute('alt');
        if (n.tagName === 'BUTTON') return n.textContent;
        return '';
    };
    const nodes = [...document.querySelectorAll(
        'button, input, select, textarea, img, canvas[role=img], [tabindex="0"]')];
    return nodes.filter(n => n.type !== 'file' && visible(n))
        .filter(n => !(n.tagName === 'IMG' && n.getAttribute('alt') === '' && n.closest('button')))
        .filter(n => !(name(n) || '').trim())
        .map(n => n.outerHTML.slice(0, 120));
}"""

LOW_CONTRAST = """() => {
    const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
        const f = (v) => {
            v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (n) => {
        for (let e = n; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
            if (getComputedStyle(e).backgroundImage !== 'none') return null;
        }
        return [255, 255, 255];
    };
    const bad = [];
    for (const n of document.querySelectorAll('body *')) {
        const own = [...n.childNodes].some(c => c.nodeType === 3 && c.textContent.trim());
        if (!own || !n.getClientRects().length) continue;
        if (n.closest('[hidden], :disabled, dialog:not([open])')) continue;
        // Matrix cells are tinted per value; their text colour is chosen per cell.
        if (n.closest('.matrix td')) continue;
        const style = getComputedStyle(n);
        if (style.visibility === 'hidden' || Number(style.opacity) < 1) continue;
        const bg = background(n);
        if (!bg) continue;
        const fg = rgb(style.color).slice(0, 3);
        const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
        const ratio = (a + 0.05) / (b + 0.05);
        const size = parseFloat(style.fontSize);
        const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
        const what = `${n.tagName}.${n.className}: ${n.textContent.trim().slice(0, 40)}`;
        if (ratio < (large ? 3 : 4.5)) bad.push(`${ratio.toFixed(2)} ${what}`);
    }
    return bad;
}"""


def test_every_control_is_named_and_text_is_readable(explorer: Explorer) -> None:
    page = explorer.page
    explorer.open()
    explorer.preset_button("7×7, F=3, S=5").click()
    expect(page.locator("#layer-card-0 .btn-fix")).to_be_visible()
    assert page.evaluate(UNNAMED_CONTROLS) == []
    assert page.evaluate(LOW_CONTRAST) == []

    explorer.preset("Small classifier")
    page.get_by_role("button", name="Open layer 0 channel 1").click()
    page.wait_for_function("() => document.querySelector('#channel-min').textContent !== '…'")
    assert page.evaluate(UNNAMED_CONTROLS) == []
    assert page.evaluate(LOW_CONTRAST) == []
    page.keyboard.press("Escape")
    explorer.step_layer(7)
    assert page.evaluate(UNNAMED_CONTROLS) == []
    assert page.evaluate(LOW_CONTRAST) == []


def test_keyboard_focus_is_visible(explorer: Explorer) -> None:
    page = explorer.page
    explorer.open()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    for _ in range(6):
        page.keyboard.press("Tab")
        ring = page.evaluate(
            """() => {
                const s = getComputedStyle(document.activeElement);
                const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
                return s.boxShadow !== 'none' || outline;
            }"""
        )
        assert ring, page.evaluate("document.activeElement.outerHTML.slice(0, 100)")
