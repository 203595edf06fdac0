// The Forward / Backward tabs: which pass of the last run the page shows below the editor. The
// forward pass (activations and their step-through) is the first view; the backward pass is
// opened on purpose, and only then asks the server for gradients.

import { $ } from "./dom.js";
import { emit, state } from "./state.js";

const MODES = ["forward", "backward"];

/** Show `mode`'s panel ("forward" or "backward") and say so with the "mode" event. */
export function openMode(mode, { focus = false } = {}) {
  if (!MODES.includes(mode)) return;
  const changed = state.mode !== mode;
  state.mode = mode;
  for (const name of MODES) {
    const tab = $(`#tab-${name}`);
    const on = name === mode;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`#mode-${name}`).hidden = !on;
  }
  if (focus) $(`#tab-${mode}`).focus();
  document.documentElement.dataset.mode = mode;
  if (changed) emit("mode");
}

/** The mode whose panel holds `node`, or null. */
function modeOf(node) {
  const panel = node?.closest?.(".mode-panel");
  return panel ? panel.id.replace(/^mode-/, "") : null;
}

export function initMode() {
  for (const name of MODES) $(`#tab-${name}`).addEventListener("click", () => openMode(name));
  // Arrow keys move between the tabs (the ARIA tabs pattern).
  $(".mode-bar").addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1, Home: -9, End: 9 }[event.key];
    if (!step) return;
    event.preventDefault();
    const at = MODES.indexOf(state.mode) + step;
    openMode(MODES[Math.max(0, Math.min(MODES.length - 1, at))], { focus: true });
  });
  // A link (the header's stage links) to a section of the other mode opens that mode first.
  document.addEventListener("click", (event) => {
    const link = event.target.closest?.('a[href^="#"]');
    const target = link && document.getElementById(link.getAttribute("href").slice(1));
    const mode = modeOf(target);
    if (mode && mode !== state.mode) openMode(mode);
  });
}
