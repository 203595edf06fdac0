// Backward mode, stage 3: one card per layer with its activation grid beside the grid of the
// loss's gradient with respect to it (the server's diverging PNG, zero in the middle colour),
// their statistics and the symmetric colour scale of /gradients.

import { $, el } from "./dom.js";
import { emit, on, state } from "./state.js";
import { shapeText, sig } from "./format.js";
import { runLayerTitle } from "./run-info.js";

/** The colour scale -scale (blue) .. 0 .. +scale (red) of a gradient map, as a labelled bar. */
export function scaleBar(scale) {
  const end = sig(scale);
  return el(
    "div",
    {
      class: "grad-scale",
      role: "img",
      "aria-label": `Colour scale: blue −${end}, white 0, red +${end}`,
    },
    el("span", { class: "grad-scale-end", text: scale ? `−${end}` : "0" }),
    el("span", { class: "grad-scale-bar" }, el("span", { class: "grad-scale-zero", text: "0" })),
    el("span", { class: "grad-scale-end", text: scale ? `+${end}` : "0" }),
  );
}

function statsLine(stats) {
  return `gradient min ${sig(stats.min)} · max ${sig(stats.max)} · mean |g| ${sig(stats.abs_mean)}`;
}

function pair(activation, gradient, what = "output") {
  return el(
    "div",
    { class: "grad-pair" },
    el("figure", { class: "grad-fig" }, el("figcaption", { text: what }), activation),
    el("figure", { class: "grad-fig" }, el("figcaption", { text: `dL/d(${what})` }), gradient),
  );
}

function inputCard(run, reply) {
  const canvas = el("canvas", {
    class: "act-grid",
    role: "img",
    "aria-label": `The input image, ${shapeText(run.input_shape)}`,
  });
  canvas.width = run.inputPixels.width;
  canvas.height = run.inputPixels.height;
  canvas.getContext("2d").putImageData(run.inputPixels, 0, 0);
  const { min, max } = reply.input_stats;
  const image = el("img", {
    class: "act-grid grad-grid",
    src: reply.input_grid_url,
    alt: "Gradient of the loss with respect to every input pixel",
  });
  return el(
    "article",
    { class: "act-card grad-card", dataset: { layer: "input" } },
    el(
      "header",
      { class: "act-head" },
      el("h3", {}, el("span", { class: "act-num", text: "in" }), "Input"),
      el("span", { class: "chip", text: shapeText(run.input_shape) }),
    ),
    el("p", { class: "act-words", text: "dL/d(input): how the loss would change with each pixel." }),
    pair(canvas, image, "input"),
    el("p", { class: "act-stats", text: statsLine(reply.input_stats) }),
    // /gradients gives no `scale` for the input: its PNG's scale is max |value|, read off its stats.
    scaleBar(Math.max(Math.abs(min), Math.abs(max))),
  );
}

function layerCard(run, reply, i) {
  const layer = reply.layers[i];
  const title = runLayerTitle(run, i);
  const last = i === run.layers.length - 1;
  const from = last ? "from the loss" : `sent back by layer ${i + 1} (${runLayerTitle(run, i + 1)})`;
  const flat = layer.output_shape.length !== 3;
  return el(
    "article",
    { class: `act-card grad-card${flat ? " act-card-flat" : ""}`, dataset: { layer: i, type: layer.type } },
    el(
      "header",
      { class: "act-head" },
      el("h3", {}, el("span", { class: "act-num", text: String(i) }), title),
      el("span", { class: "chip", text: shapeText(layer.output_shape) }),
    ),
    el("p", { class: "act-words", text: `dL/d(output), ${from}.` }),
    pair(
      el("img", { class: "act-grid", src: run.layers[i].grid_url, alt: `Output of layer ${i} (${title})` }),
      el("img", {
        class: "act-grid grad-grid",
        src: layer.grid_url,
        alt: `Gradient of the loss with respect to the output of layer ${i} (${title})`,
      }),
    ),
    el("p", { class: "act-stats", text: statsLine(layer.stats) }),
    scaleBar(layer.scale),
    el("button", {
      type: "button",
      class: "btn btn-small btn-step",
      text: "Step back through →",
      "aria-label": `Step back through the gradient of layer ${i}`,
      onclick: () => {
        emit("backstep-select", { layer: i });
        $("#stage-backstep").scrollIntoView({ behavior: "smooth", block: "start" });
        $("#bstep-view").focus({ preventScroll: true });
      },
    }),
  );
}

function render() {
  const run = state.run;
  const reply = state.backward.gradients;
  const list = $("#gradient-cards");
  if (!reply) {
    list.setAttribute("aria-busy", "true");
    return;
  }
  list.removeAttribute("aria-busy");
  list.replaceChildren(inputCard(run, reply), ...reply.layers.map((_, i) => layerCard(run, reply, i)));
  list.dataset.shown = `${reply.run_id}/${reply.target}/${reply.loss}`;
}

export function initGradientMaps() {
  on("gradients", render);
}
