// Backward mode, stage 3: the target class and the loss, L = -log p[target] with its numbers,
// and the /gradients reply every backward view draws from (state.backward.gradients, the
// "gradients" event). Gradients are asked for only while the Backward tab is open.

import { $, el, select, showAlert } from "./dom.js";
import { api } from "./api.js";
import { emit, on, state } from "./state.js";
import { percent, sig } from "./format.js";
import { probChart } from "./prob-chart.js";

const MAX_TARGET_OPTIONS = 256; // more outputs than this: the target is typed as a number

let token = 0;
let asked = ""; // "run/target/loss" of the reply shown or on its way

/** True when the run's network ends in dense + softmax (cross-entropy is defined). */
export function endsInSoftmax(run) {
  const last = run.network.layers.at(-1);
  return last?.type === "dense" && last.activation === "softmax";
}

/** Values in the run's last output: the classes (or scores) a target can name. */
export function outputCount(run) {
  return run.layers.at(-1).output_shape.reduce((a, b) => a * b, 1);
}

export function className(run, t) {
  return run.labels?.[t] ?? `class ${t}`;
}

/** The class the image is, when the page drew a sample the network's labels name; else null. */
function trueClass(run) {
  const t = run.imageLabel ? run.labels.indexOf(run.imageLabel) : -1;
  return t >= 0 ? t : null;
}

function targetWords(run, t) {
  const probs = run.output?.probabilities;
  const value = probs ? percent(probs[t]) : `output ${sig(run.output?.values?.[t])}`;
  return `${className(run, t)} (${value})${t === trueClass(run) ? " · the true class" : ""}`;
}

function buildControls(run) {
  const b = state.backward;
  const n = outputCount(run);
  const old = $("#back-target");
  const control =
    n <= MAX_TARGET_OPTIONS
      ? select(
          Array.from({ length: n }, (_, t) => [t, targetWords(run, t)]),
          b.target ?? "",
          { id: "back-target" },
        )
      : el("input", { type: "number", id: "back-target", min: 0, max: n - 1, step: 1, value: b.target ?? 0 });
  control.addEventListener("change", () => {
    const t = Number(control.value);
    if (!Number.isInteger(t) || t < 0 || t >= n) return;
    chooseTarget(t);
  });
  old.replaceWith(control);
  const losses = [["score", "score: L = output[target]"]];
  if (endsInSoftmax(run)) losses.unshift(["cross_entropy", "cross-entropy: L = −log p[target]"]);
  const loss = select(losses, b.loss, { id: "back-loss" });
  loss.addEventListener("change", () => {
    b.loss = loss.value;
    restartLine();
    refresh();
  });
  $("#back-loss").replaceWith(loss);
  const known = trueClass(run);
  $("#back-target-note").textContent =
    known === null
      ? "Starts at the class the network ranks first: the page does not know what this image is."
      : `Starts at the true class: the sample is a “${className(run, known)}”.`;
}

/** A new target or loss begins a new line of steps (their losses would not compare). */
function restartLine() {
  const b = state.backward;
  b.history = [];
  b.before = null;
  b.step.layer = null;
}

function chooseTarget(t) {
  state.backward.target = t;
  restartLine();
  refresh();
}

function lossBox(run, reply) {
  const t = reply.target;
  const name = className(run, t);
  if (reply.loss === "cross_entropy") {
    const p = run.output.probabilities[t];
    return [
      el(
        "p",
        { class: "loss-formula", id: "loss-formula" },
        el("span", { text: `L = −log p[${t}]` }),
        el("span", {}, "= −log ", el("span", { id: "loss-p", text: sig(p) })),
        el("span", {}, "= ", el("strong", { id: "loss-value", text: sig(reply.loss_value) })),
      ),
      el("p", {
        class: "hint",
        text: `p[${t}] is the probability the run gave “${name}”. L is 0 when that is 1 and grows without bound as it falls to 0; lowering L raises p[${t}].`,
      }),
    ];
  }
  return [
    el(
      "p",
      { class: "loss-formula", id: "loss-formula" },
      el("span", { text: `L = output[${t}]` }),
      el("span", {}, "= ", el("strong", { id: "loss-value", text: sig(reply.loss_value) })),
    ),
    el("p", {
      class: "hint",
      text: `The raw value of the last layer for “${name}”, after its activation. Its gradient says what raises that value; a step of gradient descent lowers L, so it makes output[${t}] smaller.`,
    }),
  ];
}

function showReply(run, reply) {
  $("#loss-box").replaceChildren(...lossBox(run, reply));
  const probs = run.output?.probabilities;
  const box = $("#loss-probs");
  box.hidden = !probs;
  if (probs) {
    box.replaceChildren(
      el("h3", { class: "sub-head", text: "What the run answered (the target marked)" }),
      probChart(probs, run.labels, { highlight: reply.target, id: "loss-prob-chart" }),
    );
  }
  $("#back-target").value = String(reply.target);
  $("#stage-loss").dataset.shown = `${run.run_id}/${reply.target}/${reply.loss}`;
}

/** Ask for the gradients of (run, target, loss) unless they are shown or on their way. */
export async function refresh() {
  const run = state.run;
  const b = state.backward;
  if (!run || state.mode !== "backward") return;
  const key = `${run.run_id}/${b.target}/${b.loss}`;
  if (key === asked) return;
  asked = key;
  b.gradients = null;
  emit("gradients");
  const mine = ++token;
  $("#back-status").textContent = "Computing the backward pass…";
  $("#stage-loss").setAttribute("aria-busy", "true");
  try {
    const reply = await api.gradients(run.run_id, { target: b.target, loss: b.loss });
    if (mine !== token) return;
    b.target = reply.target; // the server's choice when the page had none
    asked = `${run.run_id}/${reply.target}/${reply.loss}`;
    b.gradients = reply;
    showAlert($("#back-error"), "");
    $("#back-status").textContent = "";
    showReply(run, reply);
    emit("gradients");
  } catch (error) {
    if (mine !== token) return;
    asked = "";
    $("#back-status").textContent = "";
    showAlert($("#back-error"), `Could not compute the gradients: ${error.message}`);
  } finally {
    if (mine === token) $("#stage-loss").removeAttribute("aria-busy");
  }
}

function onRun() {
  const run = state.run;
  const b = state.backward;
  if (run.previous_run_id === undefined) {
    // A run from the editor starts a new line: its own target, loss and steps.
    b.target = trueClass(run);
    b.loss = endsInSoftmax(run) ? "cross_entropy" : "score";
    restartLine();
  }
  b.gradients = null;
  asked = "";
  $("#back-empty").hidden = true;
  for (const panel of document.querySelectorAll("#mode-backward section.panel")) panel.hidden = false;
  buildControls(run);
  refresh();
}

export function initBackward() {
  on("run", onRun);
  on("mode", refresh);
  const showStale = () => {
    $("#back-stale").hidden = !state.stale;
  };
  for (const event of ["run", "network", "image"]) on(event, showStale);
}
