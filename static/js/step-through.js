// Stage 4: step through one layer of the last run, one output value at a time, with
// play/pause/step/back/speed controls and keyboard shortcuts. The numbers come from
// GET .../explain; each layer kind has its own view module (step-*.js).

import { $, el, sleep } from "./dom.js";
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

function updateControls() {
  const n = positionCount();
  const pos = state.step.pos;
  const range = $("#step-pos");
  range.max = String(Math.max(0, n - 1));
  range.value = String(pos);
  range.setAttribute("aria-valuetext", `Position ${pos + 1} of ${n}`);
  $("#step-back").disabled = pos <= 0;
  $("#step-first").disabled = pos <= 0;
  $("#step-next").disabled = pos >= n - 1;
  $("#step-last").disabled = pos >= n - 1;
  const play = $("#step-play");
  play.setAttribute("aria-pressed", String(state.step.playing));
  play.querySelector(".label").textContent = state.step.playing ? "Pause" : "Play";
  play.querySelector(".icon").textContent = state.step.playing ? "❚❚" : "▶";
  const where = view ? view.module.describe(view.ctx, pos) : "";
  $("#step-position").textContent = `Position ${pos + 1} of ${n}${where ? ` · ${where}` : ""}`;
}

/** Move to position pos of the current layer and show how that output value was computed. */
export async function goTo(pos) {
  if (!view) return;
  const n = positionCount();
  state.step.pos = Math.max(0, Math.min(n - 1, pos));
  updateControls();
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
  state.step.playing = false;
  updateControls();
}

async function play() {
  if (!view) return;
  if (state.step.pos >= positionCount() - 1) await goTo(0);
  state.step.playing = true;
  updateControls();
  while (state.step.playing) {
    await sleep(1000 / state.step.speed);
    if (!state.step.playing) break;
    if (state.step.pos >= positionCount() - 1) {
      pause();
      break;
    }
    await goTo(state.step.pos + 1);
  }
}

export function togglePlay() {
  if (state.step.playing) pause();
  else play();
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

function isTyping(target) {
  return Boolean(target.closest?.("input, select, textarea, [contenteditable], dialog"));
}

function onKey(event) {
  if (!view || event.altKey || event.ctrlKey || event.metaKey) return;
  const panel = $("#stage-step");
  const target = event.target;
  const inPanel = panel.contains(target);
  if (isTyping(target) || (!inPanel && target !== document.body)) return;
  if (event.key === " " || event.key === "Spacebar") {
    // On a button or link Space keeps its usual meaning (press that control).
    if (target.closest?.("button, a, summary")) return;
    event.preventDefault();
    togglePlay();
  } else if (event.key === "ArrowRight" || event.key === "ArrowDown") {
    event.preventDefault();
    pause();
    goTo(state.step.pos + 1);
  } else if (event.key === "ArrowLeft" || event.key === "ArrowUp") {
    event.preventDefault();
    pause();
    goTo(state.step.pos - 1);
  } else if (event.key === "Home") {
    event.preventDefault();
    goTo(0);
  } else if (event.key === "End") {
    event.preventDefault();
    goTo(positionCount() - 1);
  }
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
  $("#step-first").addEventListener("click", () => goTo(0));
  $("#step-back").addEventListener("click", () => {
    pause();
    goTo(state.step.pos - 1);
  });
  $("#step-play").addEventListener("click", togglePlay);
  $("#step-next").addEventListener("click", () => {
    pause();
    goTo(state.step.pos + 1);
  });
  $("#step-last").addEventListener("click", () => goTo(positionCount() - 1));
  $("#step-pos").addEventListener("input", (event) => {
    const pos = Number(event.target.value); // read before pause() redraws the controls
    pause();
    goTo(pos);
  });
  const speed = $("#step-speed");
  const showSpeed = () => {
    state.step.speed = Number(speed.value);
    $("#step-speed-out").textContent = `${speed.value}/s`;
  };
  speed.addEventListener("input", showSpeed);
  showSpeed();
  document.addEventListener("keydown", onKey);
  on("run", onRun);
  on("step-select", ({ layer }) => selectLayer(layer));
}
