// The play / pause / step / back / first / last controls of a step-through, its speed and
// position sliders and its keyboard shortcuts, wired by the id prefix of the markup that
// templates/partials/transport.html makes. The forward step-through (step-through.js) and the
// backward one (backward-step.js) each have one.

import { $, sleep } from "./dom.js";

function isTyping(target) {
  return Boolean(target.closest?.("input, select, textarea, [contenteditable], dialog"));
}

/**
 * Wire the controls `${prefix}-first`, -back, -play, -next, -last, -speed, -speed-out, -pos and
 * -position. selection(): the caller's {pos, playing, speed} in the page state (a function:
 * the page may replace that object);
 * count(): positions in the current view (0 when none); goTo(pos): show that position (it
 * calls update()); describe(pos): words for where pos is. Keys act while the focus is in
 * `panel` (or on nothing) and the panel is on screen.
 * Returns {update, pause, togglePlay}.
 */
export function createTransport({ prefix, panel, selection: current, count, goTo, describe }) {
  const node = (name) => $(`#${prefix}-${name}`);

  function update() {
    const n = count();
    const pos = current().pos;
    const range = node("pos");
    range.max = String(Math.max(0, n - 1));
    range.value = String(pos);
    range.setAttribute("aria-valuetext", `Position ${pos + 1} of ${n}`);
    node("back").disabled = pos <= 0 || !n;
    node("first").disabled = pos <= 0 || !n;
    node("next").disabled = pos >= n - 1;
    node("last").disabled = pos >= n - 1;
    const play = node("play");
    play.setAttribute("aria-pressed", String(current().playing));
    play.querySelector(".label").textContent = current().playing ? "Pause" : "Play";
    play.querySelector(".icon").textContent = current().playing ? "❚❚" : "▶";
    const where = n ? describe(pos) : "";
    node("position").textContent = n ? `Position ${pos + 1} of ${n}${where ? ` · ${where}` : ""}` : "";
  }

  function pause() {
    current().playing = false;
    update();
  }

  async function play() {
    if (!count()) return;
    if (current().pos >= count() - 1) await goTo(0);
    current().playing = true;
    update();
    while (current().playing) {
      await sleep(1000 / current().speed);
      if (!current().playing) break;
      if (current().pos >= count() - 1) {
        pause();
        break;
      }
      await goTo(current().pos + 1);
    }
  }

  function togglePlay() {
    if (current().playing) pause();
    else play();
  }

  function step(by) {
    pause();
    goTo(current().pos + by);
  }

  function onKey(event) {
    if (!count() || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    const inPanel = panel.contains(target);
    if (isTyping(target) || (!inPanel && target !== document.body)) return;
    if (panel.closest("[hidden]") || !panel.getClientRects().length) return; // not on screen
    if (event.key === " " || event.key === "Spacebar") {
      // On a button or link Space keeps its usual meaning (press that control).
      if (target.closest?.("button, a, summary")) return;
      event.preventDefault();
      togglePlay();
    } else if (event.key === "ArrowRight" || event.key === "ArrowDown") {
      event.preventDefault();
      step(1);
    } else if (event.key === "ArrowLeft" || event.key === "ArrowUp") {
      event.preventDefault();
      step(-1);
    } else if (event.key === "Home") {
      event.preventDefault();
      goTo(0);
    } else if (event.key === "End") {
      event.preventDefault();
      goTo(count() - 1);
    }
  }

  node("first").addEventListener("click", () => goTo(0));
  node("back").addEventListener("click", () => step(-1));
  node("play").addEventListener("click", togglePlay);
  node("next").addEventListener("click", () => step(1));
  node("last").addEventListener("click", () => goTo(count() - 1));
  node("pos").addEventListener("input", (event) => {
    const pos = Number(event.target.value); // read before pause() redraws the controls
    pause();
    goTo(pos);
  });
  const speed = node("speed");
  const showSpeed = () => {
    current().speed = Number(speed.value);
    node("speed-out").textContent = `${speed.value}/s`;
  };
  speed.addEventListener("input", showSpeed);
  showSpeed();
  document.addEventListener("keydown", onKey);
  return { update, pause, togglePlay };
}
