// Stage 4: step through one layer of the last run, one output value at a time, with the
// play/pause/step/back/speed controls and keyboard shortcuts of step-transport.js. The numbers
// come from GET .../explain; each layer kind has its own view module (step-*.js).

import { $, el } from "./dom.js";
import { api } from "./api.js";
import { emit, on, state } from "./state.js";
import { shapeText } from "./format.js";
import { loadArray } from "./npy.js";
import { sourceFromArray, sourceFromImage } from "./map-draw.js";
import { runInputShape, runLayerSpec, runLayerTitle, stageWords } from "./run-info.js";
import { convView } from "./step-conv.js";
import { poolView, globalPoolView } from "./step-pool.js";
import { flattenView } from "./step-flatten.js";
import { denseView } from "./step-dense.js";
import { reluView } from "./step-relu.js";
import { createTransport } from "./step-transport.js";

const VIEWS = {
  conv: convView,
  maxpool: poolView,
  avgpool: poolView,
  globalmaxpool: globalPoolView,
  globalavgpool: globalPoolView,
  flatten: flattenView,
  dense: denseView,
  relu: reluView,
};

const explainCache = new Map();
let view = null; // {module, ctx, mounted: {update}}
let mountToken = 0;
let stepToken = 0;
let controls = null; // the transport: play/step/keys (step-transport.js)

function explainFor(ctx, pos) {
  const query = view.module.query(ctx, pos);
  const key = `${ctx.run.run_id}/${ctx.index}?${new URLSearchParams(query)}`;
  if (!explainCache.has(key)) {
    const promise = api.explain(ctx.run.run_id, ctx.index, query);
    promise.catch(() => explainCache.delete(key));
    explainCache.set(key, promise);
  }
  return explainCache.get(key);
}

function buildContext(run, index) {
  const spec = runLayerSpec(run, index);
  const inShape = runInputShape(run, index);
  const layer = run.layers[index];
  const inputSource =
    index === 0
      ? Promise.resolve(sourceFromImage(run.inputPixels, run.input_shape[2]))
      : loadArray(run.layers[index - 1].array_url).then(sourceFromArray);
  return {
    run,
    index,
    spec,
    type: layer.type,
    inShape,
    outShape: layer.output_shape,
    channel: state.step.channel,
    inChannel: state.step.inChannel,
    labels: run.labels,
    isLast: index === run.layers.length - 1,
    inputSource,
    outputSource: loadArray(layer.array_url).then(sourceFromArray),
    inputArray: index === 0 ? null : loadArray(run.layers[index - 1].array_url),
    outputArray: loadArray(layer.array_url),
    jump: (pos) => goTo(pos),
  };
}

function positionCount() {
  return view ? view.module.positions(view.ctx) : 0;
}

function showError(message) {
  const box = $("#step-error");
  box.textContent = message;
  box.hidden = !message;
}

function fillSelect(selectNode, count, labelFor, value) {
  selectNode.replaceChildren();
  for (let i = 0; i < count; i += 1) {
    selectNode.append(el("option", { value: i, text: labelFor(i), selected: i === value }));
  }
}

/** Move to position pos of the current layer and show how that output value was computed. */
export async function goTo(pos) {
  if (!view) return;
  const n = positionCount();
  state.step.pos = Math.max(0, Math.min(n - 1, pos));
  controls.update();
  emit("step");
  const mine = ++stepToken;
  const current = view;
  try {
    const data = await explainFor(current.ctx, state.step.pos);
    if (mine !== stepToken || current !== view) return;
    showError("");
    current.mounted.update(state.step.pos, data);
    $("#step-view").dataset.pos = String(state.step.pos);
    $("#step-view").dataset.run = current.ctx.run.run_id;
    // What is on screen, for anyone (tests included) waiting for a step to land.
    $("#step-view").dataset.shown =
      `${current.ctx.run.run_id}/${current.ctx.index}/${current.ctx.channel}/${current.ctx.inChannel}/${state.step.pos}`;
  } catch (error) {
    if (mine !== stepToken) return;
    pause();
    showError(`Could not explain this position: ${error.message}`);
    return;
  }
  // Warm the cache for the next position so playing stays smooth.
  if (state.step.pos + 1 < n) explainFor(current.ctx, state.step.pos + 1).catch(() => {});
}

function pause() {
  controls.pause();
}

export function togglePlay() {
  controls.togglePlay();
}

/** Mount the view for state.step.layer (after a run, or a layer/channel change). */
async function mount() {
  const run = state.run;
  const root = $("#step-view");
  const index = state.step.layer;
  const module = VIEWS[run.layers[index].type];
  const mine = ++mountToken;
  pause();
  showError("");
  if (!module) {
    view = null;
    root.replaceChildren(el("p", { class: "muted", text: "This layer has no step-through view." }));
    return;
  }
  const ctx = buildContext(run, index);
  const channels = module.channels(ctx);
  const channelField = $("#step-channel-field");
  channelField.hidden = !channels;
  if (channels) {
    ctx.channel = Math.min(ctx.channel, channels.count - 1);
    state.step.channel = ctx.channel;
    channelField.querySelector(".field-label").textContent = channels.label;
    fillSelect($("#step-channel"), channels.count, (c) => `${c}`, ctx.channel);
  }
  const inChannels = module.inChannels?.(ctx) ?? 0;
  const inField = $("#step-inchannel-field");
  inField.hidden = inChannels <= 1;
  if (inChannels > 1) {
    ctx.inChannel = Math.min(ctx.inChannel, inChannels - 1);
    state.step.inChannel = ctx.inChannel;
    const rgb = index === 0 && inChannels === 3;
    fillSelect($("#step-inchannel"), inChannels, (c) => (rgb ? "RGB"[c] : `${c}`), ctx.inChannel);
  }
  $("#step-title").textContent = `Layer ${index} · ${runLayerTitle(run, index)}`;
  $("#step-words").textContent = stageWords(run, index);
  root.dataset.layer = String(index);
  root.dataset.type = run.layers[index].type;
  try {
    const mounted = await module.mount(root, ctx);
    if (mine !== mountToken) return;
    view = { module, ctx, mounted };
  } catch (error) {
    if (mine !== mountToken) return;
    view = null;
    showError(`Could not load this layer: ${error.message}`);
    return;
  }
  await goTo(state.step.pos);
}

function selectLayer(index, { keepPos = false } = {}) {
  state.step.layer = index;
  if (!keepPos) {
    state.step.pos = 0;
    state.step.channel = 0;
    state.step.inChannel = 0;
  }
  $("#step-layer").value = String(index);
  mount();
}

function onRun() {
  const run = state.run;
  explainCache.clear();
  $("#stage-step").hidden = false;
  $("#step-empty").hidden = true;
  $("#step-body").hidden = false;
  const select = $("#step-layer");
  select.replaceChildren(
    ...run.layers.map((layer, i) =>
      el("option", {
        value: i,
        text: `${i} · ${runLayerTitle(run, i)} → ${shapeText(layer.output_shape)}`,
      }),
    ),
  );
  const wanted = state.step.layer;
  const keep =
    Number.isInteger(wanted) && wanted >= 0 && wanted < run.layers.length && VIEWS[run.layers[wanted].type];
  if (keep) {
    selectLayer(wanted, { keepPos: true });
    return;
  }
  const firstConv = run.layers.findIndex((l) => l.type === "conv");
  selectLayer(firstConv >= 0 ? firstConv : 0);
}

export function initStepThrough() {
  $("#step-layer").addEventListener("change", (event) => selectLayer(Number(event.target.value)));
  $("#step-channel").addEventListener("change", (event) => {
    state.step.channel = Number(event.target.value);
    mount();
  });
  $("#step-inchannel").addEventListener("change", (event) => {
    state.step.inChannel = Number(event.target.value);
    mount();
  });
  controls = createTransport({
    prefix: "step",
    panel: $("#stage-step"),
    selection: () => state.step,
    count: positionCount,
    goTo,
    describe: (pos) => (view ? view.module.describe(view.ctx, pos) : ""),
  });
  on("run", onRun);
  on("step-select", ({ layer }) => selectLayer(layer));
}
