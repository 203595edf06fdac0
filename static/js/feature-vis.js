// Backward mode: feature visualisation. For a chosen layer and channel (for a final softmax
// layer, a class) the server climbs the gradient from seeded noise to an input that excites it
// (GET .../layers/{i}/visualise); the page shows that image and the objective after each step.

import { $, el, showAlert } from "./dom.js";
import { api } from "./api.js";
import { on, state } from "./state.js";
import { sig } from "./format.js";
import { runLayerTitle } from "./run-info.js";
import { drawSeries } from "./train-chart.js";
import { className, endsInSoftmax } from "./backward.js";

let token = 0;
let shown = null; // the last reply, redrawn when the chart's width changes
let picked = false; // the user chose the channel (else a class layer follows the target)

/** True when layer i of the run is its final softmax layer (its channels are the classes). */
function isClassLayer(run, i) {
  return i === run.layers.length - 1 && endsInSoftmax(run);
}

/** "7 · cat" for a named class, "class 7" when the network has no names. */
function classOption(run, c) {
  const name = className(run, c);
  return name === `class ${c}` ? name : `${c} · ${name}`;
}

function fillChannels(run, wanted = null) {
  const layer = Number($("#vis-layer").value);
  const classes = isClassLayer(run, layer);
  const count = run.layers[layer].output_shape.at(-1);
  const select = $("#vis-channel");
  const keep = wanted ?? Number(select.value);
  select.replaceChildren(
    ...Array.from({ length: count }, (_, c) =>
      el("option", { value: c, text: classes ? classOption(run, c) : String(c) }),
    ),
  );
  select.value = String(Math.min(Math.max(0, keep || 0), count - 1));
  $("#vis-channel-label").textContent = classes ? "Class" : run.layers[layer].output_shape.length === 3 ? "Channel" : "Value";
}

function objectiveWords(run, reply) {
  return isClassLayer(run, reply.layer)
    ? `the logit of “${className(run, reply.channel)}” (before softmax)`
    : `the mean of channel ${reply.channel} of layer ${reply.layer}`;
}

function drawObjective(reply) {
  const canvas = $("#vis-chart");
  if (!canvas) return;
  drawSeries(canvas, reply.objective, {
    describe: (v) => `Objective over ${v.length - 1} steps: from ${sig(v[0])} to ${sig(v.at(-1))}`,
  });
}

function showResult(run, reply) {
  const what = objectiveWords(run, reply);
  $("#vis-result").replaceChildren(
    el(
      "figure",
      { class: "vis-figure" },
      el("img", {
        class: "vis-image",
        id: "vis-image",
        src: reply.image_url,
        alt: `An input that raises ${what}, after ${reply.steps} steps from noise (seed ${reply.seed})`,
      }),
      el("figcaption", { class: "hint", text: `After ${reply.steps} steps from noise, seed ${reply.seed}` }),
    ),
    el(
      "figure",
      { class: "train-chart" },
      el("canvas", { id: "vis-chart", role: "img", "aria-label": "Objective per step" }),
      el(
        "figcaption",
        {},
        el("span", { class: "key key-batch", "aria-hidden": "true" }),
        `${what} after each step: ${sig(reply.objective[0])} → ${sig(reply.objective.at(-1))}`,
      ),
    ),
  );
  shown = reply;
  drawObjective(reply);
  $("#vis-result").dataset.shown = `${run.run_id}/${reply.layer}/${reply.channel}/${reply.steps}/${reply.seed}`;
}

async function visualise() {
  const run = state.run;
  if (!run) return;
  const layer = Number($("#vis-layer").value);
  const channel = Number($("#vis-channel").value);
  const steps = Number($("#vis-steps").value);
  const seed = Number($("#vis-seed").value);
  const most = Number(state.limits?.visualise_max_steps) || Infinity;
  if (!Number.isInteger(steps) || steps < 1 || steps > most || !Number.isInteger(seed) || seed < 0) {
    const upTo = Number.isFinite(most) ? ` and at most ${most}` : "";
    showAlert(
      $("#vis-error"),
      `Steps must be a whole number of at least 1${upTo}, and the seed a whole number of at least 0.`,
    );
    return;
  }
  const mine = ++token;
  $("#vis-run").disabled = true;
  $("#vis-status").textContent = "Climbing the gradient…";
  try {
    const reply = await api.visualise(run.run_id, layer, { channel, steps, seed });
    if (mine !== token) return;
    showAlert($("#vis-error"), "");
    showResult(run, reply);
  } catch (error) {
    if (mine === token) showAlert($("#vis-error"), `Could not visualise this channel: ${error.message}`);
  } finally {
    if (mine === token) {
      $("#vis-run").disabled = false;
      $("#vis-status").textContent = "";
    }
  }
}

function onRun() {
  const run = state.run;
  const select = $("#vis-layer");
  const keep = select.value;
  select.replaceChildren(
    ...run.layers.map((_, i) => el("option", { value: i, text: `${i} · ${runLayerTitle(run, i)}` })),
  );
  const stepped = run.previous_run_id !== undefined;
  select.value = stepped && keep !== "" ? keep : String(run.layers.length - 1);
  fillChannels(run, stepped ? null : (state.backward.target ?? 0));
  if (!stepped) {
    picked = false;
    $("#vis-result").replaceChildren();
    delete $("#vis-result").dataset.shown;
    shown = null;
  }
}

export function initFeatureVis() {
  $("#vis-layer").addEventListener("change", () => {
    picked = true;
    fillChannels(state.run, 0);
  });
  $("#vis-channel").addEventListener("change", () => {
    picked = true;
  });
  $("#vis-run").addEventListener("click", visualise);
  on("run", onRun);
  // The default class follows the backward target until the user picks one.
  on("gradients", () => {
    const run = state.run;
    const reply = state.backward.gradients;
    if (!reply || picked || !isClassLayer(run, Number($("#vis-layer").value))) return;
    $("#vis-channel").value = String(reply.target);
  });
  window.addEventListener("resize", () => {
    if (shown && state.mode === "backward") drawObjective(shown);
  });
}
