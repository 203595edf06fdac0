// Backward mode: the gradient check of one weight or bias of a conv or dense layer. Backprop's
// value beside the server's central difference (L(w + h) - L(w - h)) / 2h and their relative
// error (explain_gradient with check=true), and the terms the backprop value is the sum of.

import { $, el, showAlert } from "./dom.js";
import { api } from "./api.js";
import { on, state } from "./state.js";
import { sig } from "./format.js";
import { loadArray } from "./npy.js";
import { runInputShape, runLayerSpec, runLayerTitle } from "./run-info.js";
import { receipt } from "./step-parts.js";
import { termsView, valueName } from "./gradient-terms.js";
import { ruleWords } from "./gradient-rules.js";

const GOOD = 1e-4; // the relative error the backward pass is held to (issue 13)
let pickToken = 0;
let checkToken = 0;

/** The index fields of a weight (conv k, fy, fx, c; dense u, j) or a bias (k), with sizes. */
function indexFields(run, layer, kind) {
  const out = run.layers[layer].output_shape;
  const dense = run.layers[layer].type === "dense";
  if (kind === "bias") return [["k", dense ? "unit k" : "filter k", out.at(-1)]];
  if (dense) {
    return [
      ["u", "unit u", out[0]],
      ["j", "input j", runInputShape(run, layer)[0]],
    ];
  }
  const F = runLayerSpec(run, layer).kernel_size;
  return [
    ["k", "filter k", out[2]],
    ["fy", "row fy", F],
    ["fx", "column fx", F],
    ["c", "channel c", runInputShape(run, layer)[2]],
  ];
}

function learners(run) {
  return run.layers.map((l, i) => [l, i]).filter(([l]) => l.type === "conv" || l.type === "dense");
}

function fillIndex(run) {
  const layer = Number($("#check-layer").value);
  const kind = $("#check-kind").value;
  $("#check-index").replaceChildren(
    ...indexFields(run, layer, kind).map(([key, label, size]) =>
      el(
        "label",
        { class: "field" },
        el("span", { text: `${label} (0–${size - 1})` }),
        el("input", { type: "number", id: `check-${key}`, min: 0, max: size - 1, step: 1, value: 0, inputmode: "numeric" }),
      ),
    ),
  );
}

function chosen(run) {
  const layer = Number($("#check-layer").value);
  const kind = $("#check-kind").value;
  const values = indexFields(run, layer, kind).map(([key, , size]) => {
    const v = Number($(`#check-${key}`).value);
    if (!Number.isInteger(v) || v < 0 || v >= size) throw new Error(`${key} must be a whole number from 0 to ${size - 1}.`);
    return v;
  });
  return { layer, kind, query: kind === "bias" ? { bias: values[0] } : { weight: values.join(",") } };
}

/** Put the weight (or bias) with the largest |dL/dW| of the chosen layer in the fields. */
async function pickLargest() {
  const run = state.run;
  const reply = state.backward.gradients;
  if (!run || !reply) return;
  const layer = Number($("#check-layer").value);
  const kind = $("#check-kind").value;
  const info = reply.layers[layer];
  const mine = ++pickToken;
  delete $("#check-index").dataset.picked;
  try {
    const { shape, data } = await loadArray(kind === "bias" ? info.bias_gradient_url : info.weight_gradient_url);
    if (mine !== pickToken) return;
    let best = 0;
    for (let i = 1; i < data.length; i += 1) if (Math.abs(data[i]) > Math.abs(data[best])) best = i;
    const fields = indexFields(run, layer, kind);
    let rest = best;
    for (let d = shape.length - 1; d >= 0; d -= 1) {
      $(`#check-${fields[d][0]}`).value = String(rest % shape[d]);
      rest = Math.floor(rest / shape[d]);
    }
    $("#check-index").dataset.picked = `${reply.run_id}/${layer}/${kind}`;
  } catch (error) {
    if (mine === pickToken) showAlert($("#check-error"), `Could not read the weight gradients: ${error.message}`);
  }
}

function verdict(error) {
  const good = error < GOOD;
  return el("span", {
    class: `check-verdict ${good ? "is-good" : "is-bad"}`,
    id: "check-verdict",
    text: good ? `they agree (relative error < ${GOOD})` : `they differ (relative error ≥ ${GOOD})`,
  });
}

function showResult(data) {
  const c = data.check;
  const h = Number(c.h).toExponential();
  const bill = receipt("check", [
    ["analytic", `backprop ${valueName(data)} (float64)`],
    ["plus", `L(w + h), h = ${h}`],
    ["minus", `L(w − h)`],
    ["numeric", "(L(w + h) − L(w − h)) / 2h"],
    ["relerr", "relative error |a − n| / (|a| + |n|)"],
  ]);
  bill.set("analytic", sig(c.analytic, 8));
  bill.set("plus", sig(c.loss_plus, 10));
  bill.set("minus", sig(c.loss_minus, 10));
  bill.set("numeric", sig(c.numeric, 8));
  bill.set("relerr", c.relative_error.toExponential(2));
  const terms = termsView("check-terms");
  terms.update(data);
  $("#check-result").replaceChildren(
    el("div", { class: "check-numbers" }, bill.node, verdict(c.relative_error)),
    el("h3", { class: "sub-head", text: "Where backprop's value comes from" }),
    el("p", { class: "rule-words", text: ruleWords(data) }),
    terms.node,
  );
}

async function runCheck() {
  const run = state.run;
  const reply = state.backward.gradients;
  if (!run || !reply) return;
  let pick;
  try {
    pick = chosen(run);
  } catch (error) {
    showAlert($("#check-error"), error.message);
    return;
  }
  const button = $("#check-run");
  const mine = ++checkToken;
  button.disabled = true;
  $("#check-result").setAttribute("aria-busy", "true");
  try {
    const data = await api.explainGradient(reply.run_id, pick.layer, reply, { ...pick.query, check: true });
    if (mine !== checkToken) return;
    showAlert($("#check-error"), "");
    showResult(data);
    $("#check-result").dataset.shown = `${reply.run_id}/${pick.layer}/${pick.query.bias ?? pick.query.weight}`;
  } catch (error) {
    if (mine === checkToken) showAlert($("#check-error"), `Could not check this gradient: ${error.message}`);
  } finally {
    button.disabled = false;
    $("#check-result").removeAttribute("aria-busy");
  }
}

function onGradients() {
  const run = state.run;
  const reply = state.backward.gradients;
  if (!reply) return;
  const layers = learners(run);
  const section = $("#stage-gradcheck");
  section.hidden = !layers.length;
  if (!layers.length) return;
  const select = $("#check-layer");
  const keep = select.value;
  select.replaceChildren(...layers.map(([, i]) => el("option", { value: i, text: `${i} · ${runLayerTitle(run, i)}` })));
  if (layers.some(([, i]) => String(i) === keep)) select.value = keep;
  // New gradients (a new run, target or loss): the old check no longer describes them.
  $("#check-result").replaceChildren();
  delete $("#check-result").dataset.shown;
  fillIndex(run);
  pickLargest();
}

export function initGradientCheck() {
  const redo = () => {
    fillIndex(state.run);
    pickLargest();
  };
  $("#check-layer").addEventListener("change", redo);
  $("#check-kind").addEventListener("change", redo);
  $("#check-largest").addEventListener("click", pickLargest);
  $("#check-run").addEventListener("click", runCheck);
  on("gradients", onGradients);
}
