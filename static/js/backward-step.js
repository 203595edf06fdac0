// Backward mode, stage 4: walk from the loss back to the input, one layer at a time (the
// gradient of each layer's output), and inside a layer one value at a time, with the transport
// of the forward step-through. The numbers are explain_gradient's; the map is the layer's
// gradient.npy in the colours of the server's gradient PNGs.

import { $, el, showAlert } from "./dom.js";
import { api } from "./api.js";
import { emit, on, state } from "./state.js";
import { sig } from "./format.js";
import { loadArray } from "./npy.js";
import { cellAt, cellCanvas, cellSize, fillCell, gridLines, gradientColor, outline } from "./map-draw.js";
import { runLayerTitle } from "./run-info.js";
import { createTransport } from "./step-transport.js";
import { termsView } from "./gradient-terms.js";
import { scaleBar } from "./gradient-maps.js";
import { className, endsInSoftmax } from "./backward.js";
import { ruleWords } from "./gradient-rules.js";

const explainCache = new Map();
let view = null; // {ctx, grid, terms, array}
let controls = null;
let mountToken = 0;
let stepToken = 0;

const selection = () => state.backward.step;

/** Rows and columns a flat vector of n values is drawn in (as the server lays out flat PNGs). */
function flatLayout(n) {
  if (n <= 64) return [1, n];
  const cols = Math.ceil(Math.sqrt(n));
  return [Math.ceil(n / cols), cols];
}

function contextFor(run, reply, layer) {
  const info = reply.layers[layer];
  const shape = info.output_shape;
  const flat = shape.length !== 3;
  const [rows, cols] = flat ? flatLayout(shape[0]) : [shape[0], shape[1]];
  return {
    run,
    reply,
    layer,
    shape,
    flat,
    rows,
    cols,
    channel: flat ? 0 : Math.min(selection().channel, shape[2] - 1),
    last: layer === run.layers.length - 1,
    softmax: layer === run.layers.length - 1 && endsInSoftmax(run) && reply.loss === "cross_entropy",
  };
}

function positionCount() {
  if (!view) return 0;
  const { flat, shape } = view.ctx;
  return flat ? shape[0] : shape[0] * shape[1];
}

function query(ctx, pos) {
  if (ctx.flat) return { i: pos };
  return { y: Math.floor(pos / ctx.shape[1]), x: pos % ctx.shape[1], c: ctx.channel };
}

function describe(pos) {
  if (!view) return "";
  const ctx = view.ctx;
  if (ctx.flat) return ctx.last ? `output ${pos} (${className(ctx.run, pos)})` : `value i=${pos}`;
  const q = query(ctx, pos);
  return `(y=${q.y}, x=${q.x}), channel ${q.c}`;
}

function explainFor(ctx, pos) {
  const { reply } = ctx;
  const q = query(ctx, pos);
  const key = `${reply.run_id}/${reply.target}/${reply.loss}/${ctx.layer}?${new URLSearchParams(q)}`;
  if (!explainCache.has(key)) {
    const promise = api.explainGradient(reply.run_id, ctx.layer, reply, q);
    promise.catch(() => explainCache.delete(key));
    explainCache.set(key, promise);
  }
  return explainCache.get(key);
}

/** The gradient value at step pos of the map (channel ctx.channel, or the vector). */
function valueAt(ctx, array, pos) {
  return ctx.flat ? array.data[pos] : array.data[pos * ctx.shape[2] + ctx.channel];
}

function drawMap(grid, ctx, array, pos) {
  const n = ctx.flat ? ctx.shape[0] : ctx.shape[0] * ctx.shape[1];
  for (let p = 0; p < ctx.rows * ctx.cols; p += 1) {
    const y = Math.floor(p / ctx.cols);
    const x = p % ctx.cols;
    fillCell(grid, y, x, p < n ? gradientColor(valueAt(ctx, array, p), ctx.reply.layers[ctx.layer].scale) : [255, 255, 255]);
  }
  gridLines(grid);
  outline(grid, Math.floor(pos / ctx.cols), pos % ctx.cols, 1, 1, "#111827", Math.max(2, Math.min(3, grid.cell / 6)));
}

/** The loss stage's own line: dL/dp[i] = -1/p[t] at the target, 0 elsewhere. */
function lossLine(ctx, pos, data) {
  const t = ctx.reply.target;
  if (ctx.reply.loss !== "cross_entropy") {
    const k = ctx.flat ? pos : pos * ctx.shape[2] + ctx.channel; // the flat index of the output
    return `dL/doutput[${k}] = ${k === t ? "1 (the target)" : "0 (not the target)"} = ${sig(data.value)}`;
  }
  if (pos !== t) return `dL/dp[${pos}] = 0: L = −log p[${t}] does not depend on p[${pos}] directly.`;
  const p = ctx.run.output.probabilities[t];
  return `dL/dp[${t}] = −1/p[${t}] = −1/${sig(p)} = ${sig(data.value)}`;
}

async function mount() {
  const run = state.run;
  const reply = state.backward.gradients;
  const root = $("#bstep-view");
  if (!run || !reply) return;
  const mine = ++mountToken;
  view = null; // no stepping on the old layer while the new one loads
  controls.pause();
  showAlert($("#bstep-error"), "");
  const layer = selection().layer;
  const ctx = contextFor(run, reply, layer);
  selection().channel = ctx.channel;
  const channelField = $("#bstep-channel-field");
  channelField.hidden = ctx.flat;
  if (!ctx.flat) {
    const channels = $("#bstep-channel");
    channels.replaceChildren(
      ...Array.from({ length: ctx.shape[2] }, (_, c) =>
        el("option", { value: c, text: String(c), selected: c === ctx.channel }),
      ),
    );
  }
  $("#bstep-layer").value = String(layer);
  $("#bstep-up").disabled = ctx.last;
  $("#bstep-down").disabled = layer === 0;
  // The value's name follows the server's formulas: p for softmax, x for a dense layer's input.
  const symbol = ctx.softmax ? "p" : run.layers[layer + 1]?.type === "dense" ? "x" : "a";
  $("#bstep-title").textContent = `dL/d${symbol}: the gradient of the output of layer ${layer} · ${runLayerTitle(run, layer)}`;
  $("#bstep-words").textContent = ctx.last
    ? `straight from the loss, L = ${reply.loss === "cross_entropy" ? `−log p[${reply.target}]` : `output[${reply.target}]`}`
    : `sent back by layer ${layer + 1} · ${runLayerTitle(run, layer + 1)}`;
  let array;
  try {
    array = await loadArray(reply.layers[layer].gradient_url);
  } catch (error) {
    if (mine === mountToken) showAlert($("#bstep-error"), `Could not load this layer's gradient: ${error.message}`);
    return;
  }
  if (mine !== mountToken) return;
  const grid = cellCanvas(el("canvas", { class: "map map-click" }), ctx.rows, ctx.cols, cellSize(ctx.rows, ctx.cols, 300, 3, 40));
  grid.canvas.setAttribute("role", "img");
  grid.canvas.setAttribute("aria-label", "Gradient map; click a cell to jump to it");
  grid.canvas.addEventListener("click", (event) => {
    const cell = cellAt(grid, event);
    if (cell) goTo(cell.y * ctx.cols + cell.x);
  });
  const terms = termsView("bstep");
  const rule = el("p", { class: "rule-words", id: "bstep-rule" });
  const loss = el("p", { class: "loss-line", id: "bstep-loss-line", hidden: !ctx.last });
  const caption = ctx.flat ? `dL/d${symbol}, ${ctx.shape[0]} values` : `dL/d${symbol}, channel ${ctx.channel}, ${ctx.shape[0]}×${ctx.shape[1]}`;
  root.replaceChildren(
    el(
      "div",
      { class: "step-stage bstep-stage" },
      el(
        "div",
        { class: "bstep-map" },
        el("figure", { class: "map-fig" }, el("figcaption", { text: `${caption} · click a cell` }), grid.canvas),
        scaleBar(reply.layers[layer].scale),
      ),
      el("div", { class: "step-calc" }, terms.formula, rule, loss, terms.node),
    ),
  );
  root.dataset.layer = String(layer);
  view = { ctx, grid, terms, array, rule, loss, symbol };
  await goTo(selection().pos);
}

/** Show value pos of the current layer's gradient, with how it was computed. */
export async function goTo(pos) {
  if (!view) return;
  const n = positionCount();
  selection().pos = Math.max(0, Math.min(n - 1, pos));
  controls.update();
  emit("backstep");
  const mine = ++stepToken;
  const current = view;
  const at = selection().pos;
  drawMap(current.grid, current.ctx, current.array, at);
  try {
    const data = await explainFor(current.ctx, at);
    if (mine !== stepToken || current !== view) return;
    showAlert($("#bstep-error"), "");
    current.rule.textContent = ruleWords(data, current.ctx);
    if (current.ctx.last) current.loss.textContent = lossLine(current.ctx, at, data);
    current.terms.update(data, { symbol: current.symbol });
    const { reply, layer, channel } = current.ctx;
    // What is on screen, for anyone (tests included) waiting for a step to land.
    $("#bstep-view").dataset.shown = `${reply.run_id}/${reply.target}/${reply.loss}/${layer}/${channel}/${at}`;
  } catch (error) {
    if (mine !== stepToken) return;
    controls.pause();
    showAlert($("#bstep-error"), `Could not explain this gradient: ${error.message}`);
    return;
  }
  if (at + 1 < n) explainFor(current.ctx, at + 1).catch(() => {});
}

/** Open layer `layer`'s gradient at its first value (for the loss: the target's). */
function selectLayer(layer, { keepPos = false } = {}) {
  const run = state.run;
  const reply = state.backward.gradients;
  const s = selection();
  s.layer = layer;
  if (!keepPos) {
    s.pos = 0;
    s.channel = 0;
    const shape = reply.layers[layer].output_shape;
    if (layer === run.layers.length - 1) {
      // The loss stage starts at the target's own value (a flat index into the output).
      const t = reply.target;
      if (shape.length === 3) {
        s.channel = t % shape[2];
        s.pos = Math.floor(t / shape[2]);
      } else s.pos = t;
    }
  }
  mount();
}

function onGradients() {
  const run = state.run;
  const reply = state.backward.gradients;
  $("#stage-backstep").setAttribute("aria-busy", String(!reply));
  if (!reply) return;
  $("#stage-backstep").removeAttribute("aria-busy");
  const last = run.layers.length - 1;
  $("#bstep-layer").replaceChildren(
    ...run.layers
      .map((_, i) =>
        el("option", {
          value: i,
          text: `${i} · ${runLayerTitle(run, i)}${i === last ? " ← the loss" : ` ← layer ${i + 1}`}`,
        }),
      )
      .reverse(),
  );
  const wanted = selection().layer;
  if (Number.isInteger(wanted) && wanted >= 0 && wanted <= last) selectLayer(wanted, { keepPos: true });
  else selectLayer(last);
}

/** The largest |gradient| of the current map: where the loss is most sensitive. */
function largest() {
  if (!view) return;
  const n = positionCount();
  let best = 0;
  for (let p = 1; p < n; p += 1) {
    if (Math.abs(valueAt(view.ctx, view.array, p)) > Math.abs(valueAt(view.ctx, view.array, best))) best = p;
  }
  controls.pause();
  goTo(best);
}

export function initBackwardStep() {
  controls = createTransport({
    prefix: "bstep",
    panel: $("#stage-backstep"),
    selection,
    count: positionCount,
    goTo,
    describe,
  });
  $("#bstep-layer").addEventListener("change", (event) => selectLayer(Number(event.target.value)));
  $("#bstep-channel").addEventListener("change", (event) => {
    selection().channel = Number(event.target.value);
    mount();
  });
  $("#bstep-up").addEventListener("click", () => selectLayer(selection().layer + 1));
  $("#bstep-down").addEventListener("click", () => selectLayer(selection().layer - 1));
  $("#bstep-largest").addEventListener("click", largest);
  on("gradients", onGradients);
  on("run", () => explainCache.clear());
  on("backstep-select", ({ layer }) => {
    if (state.backward.gradients) selectLayer(layer);
  });
}
