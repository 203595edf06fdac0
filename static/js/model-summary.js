// The model-summary table (like Keras' model.summary() or torchinfo): layer, output shape,
// parameters, the formula behind them, and the total. Filled from the /shapes reply.

import { $, el } from "./dom.js";
import { on, state } from "./state.js";
import { int, shapeText } from "./format.js";
import { layerLabel } from "./stack-editor.js";

function render() {
  const body = $("#summary-body");
  const total = $("#summary-total");
  const reply = state.shapes;
  body.replaceChildren();
  if (!reply) {
    total.textContent = "–";
    return;
  }
  const { height, width, channels } = state.network.input;
  body.append(
    el(
      "tr",
      { class: "summary-input" },
      el("td", { text: "in" }),
      el("th", { scope: "row", text: "input" }),
      el("td", { class: "num", text: shapeText([height, width, channels]) }),
      el("td", { class: "num", text: "0" }),
    ),
  );
  for (const layer of reply.layers) {
    body.append(
      el(
        "tr",
        {},
        el("td", { text: String(layer.index) }),
        el("th", { scope: "row", text: layerLabel(layer.index) || layer.type }),
        el("td", { class: "num", text: shapeText(layer.output_shape) }),
        el("td", { class: "num", text: int(layer.params), title: layer.formula }),
      ),
    );
  }
  if (!reply.valid) {
    const bad = reply.errors.find((e) => e.layer !== null && e.layer !== undefined);
    const n = bad ? bad.layer : reply.layers.length;
    body.append(
      el(
        "tr",
        { class: "summary-error" },
        el("td", { text: String(n) }),
        el("th", { scope: "row", text: layerLabel(n) || "network" }),
        el("td", { colspan: 2, text: "invalid: see the layer card" }),
      ),
    );
  }
  total.textContent = int(reply.total_params);
}

export function initModelSummary() {
  on("shapes", render);
}
