// Stage 3: one card per layer of the last run with its activation grid (grid_url), its input and
// output in words, statistics, and buttons that open single channels or the step-through.

import { $, el } from "./dom.js";
import { emit, on, state } from "./state.js";
import { fmt, plural, shapeText, shapeWords } from "./format.js";
import { runLayerTitle, stageWords } from "./run-info.js";
import { openChannel } from "./channel-view.js";
import { probChart } from "./prob-chart.js";

const CHANNELS_SHOWN = 16;

function inputCard(run) {
  const canvas = el("canvas", {
    class: "act-input",
    role: "img",
    "aria-label": `The input image, ${shapeText(run.input_shape)}`,
  });
  canvas.width = run.inputPixels.width;
  canvas.height = run.inputPixels.height;
  canvas.getContext("2d").putImageData(run.inputPixels, 0, 0);
  return el(
    "article",
    { class: "act-card act-card-input" },
    el(
      "header",
      { class: "act-head" },
      el("h3", {}, el("span", { class: "act-num", text: "in" }), "Input"),
      el("span", { class: "chip", text: shapeText(run.input_shape) }),
    ),
    el("p", { class: "act-words", text: shapeWords(run.input_shape, { image: true }) }),
    el("p", { class: "act-stats", text: "values in [0, 1] (pixel / 255)" }),
    el("div", { class: "act-figure" }, canvas),
  );
}

function channelButtons(run, i, layer) {
  const count = layer.output_shape[2];
  const wrap = el("div", { class: "act-channels", role: "group", "aria-label": "Channels" });
  const addButton = (c) =>
    wrap.append(
      el(
        "button",
        {
          type: "button",
          class: "chan",
          "aria-label": `Open layer ${i} channel ${c}`,
          title: `Channel ${c}`,
          dataset: { layer: i, channel: c },
          onclick: (event) => openChannel(i, c, event.currentTarget),
        },
        el("img", {
          src: layer.channel_url.replace("{c}", String(c)),
          alt: "",
          decoding: "async",
        }),
        el("span", { text: String(c) }),
      ),
    );
  for (let c = 0; c < Math.min(count, CHANNELS_SHOWN); c += 1) addButton(c);
  if (count > CHANNELS_SHOWN) {
    const more = el("button", {
      type: "button",
      class: "btn btn-small chan-more",
      text: `Show all ${count}`,
      onclick: () => {
        more.remove();
        for (let c = CHANNELS_SHOWN; c < count; c += 1) addButton(c);
        wrap.querySelector(`[data-channel="${CHANNELS_SHOWN}"]`)?.focus();
      },
    });
    wrap.append(more);
  }
  return wrap;
}

function layerCard(run, i) {
  const layer = run.layers[i];
  const flat = layer.output_shape.length !== 3;
  const { min, max, mean } = layer.stats ?? {};
  const title = runLayerTitle(run, i);
  return el(
    "article",
    { class: `act-card${flat ? " act-card-flat" : ""}`, dataset: { layer: i, type: layer.type } },
    el(
      "header",
      { class: "act-head" },
      el("h3", {}, el("span", { class: "act-num", text: String(i) }), title),
      el("span", { class: "chip", text: shapeText(layer.output_shape) }),
    ),
    el("p", { class: "act-words", text: stageWords(run, i) }),
    el(
      "p",
      { class: "act-stats" },
      `min ${fmt(min)} · mean ${fmt(mean)} · max ${fmt(max)}`,
      layer.params ? ` · ${plural(layer.params, "param")}` : "",
    ),
    el(
      "div",
      { class: "act-figure" },
      el("img", {
        class: "act-grid",
        src: layer.grid_url,
        alt: `All ${flat ? "values" : plural(layer.output_shape[2], "channel")} of layer ${i} (${title})`,
      }),
    ),
    flat ? null : channelButtons(run, i, layer),
    el("button", {
      type: "button",
      class: "btn btn-small btn-step",
      text: "Step through →",
      "aria-label": `Step through layer ${i}`,
      onclick: () => {
        emit("step-select", { layer: i });
        $("#stage-step").scrollIntoView({ behavior: "smooth", block: "start" });
        $("#step-view").focus({ preventScroll: true });
      },
    }),
  );
}

function renderPrediction(run) {
  const box = $("#prediction");
  const probs = run.output?.probabilities;
  box.replaceChildren();
  box.hidden = !probs;
  if (!probs) return;
  box.append(
    el("h3", { text: "Prediction" }),
    el("p", {
      class: "muted",
      text: run.modelName
        ? `Softmax probabilities of the last layer of the trained model “${run.modelName}”.`
        : "Softmax probabilities of the last layer. With untrained (seeded) weights these are not meaningful guesses.",
    }),
    probChart(probs, run.labels, { id: "prediction-chart" }),
  );
}

function render() {
  const run = state.run;
  const section = $("#stage-activations");
  section.dataset.runId = run.run_id;
  $("#act-empty").hidden = true;
  $("#run-meta").textContent =
    `Run ${run.run_id.slice(0, 8)} · ${shapeText(run.input_shape)} input · ${plural(run.layers.length, "layer")}`;
  renderPrediction(run);
  const list = $("#layer-results");
  list.replaceChildren(inputCard(run), ...run.layers.map((_, i) => layerCard(run, i)));
}

export function initActivations() {
  on("run", render);
}
