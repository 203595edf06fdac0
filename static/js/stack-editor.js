// The layer-stack editor: input size, seed, and a list of layer cards that can be added,
// removed, moved (buttons, so the keyboard works) and edited. Each card shows what the API said
// about it: output shape, parameter count and formula, or the error with a one-click fix.

import { $, $$, el, field, select } from "./dom.js";
import { emit, on, state } from "./state.js";
import { countNumbers, defaultLayer, dims, FIELDS, LAYER_TYPES, withDefaults } from "./layer-kinds.js";
import { int, layerTitle, shapeText } from "./format.js";
import { fixFor } from "./fixes.js";

const uids = new WeakMap();
let nextUid = 1;

function uidOf(layer) {
  if (!uids.has(layer)) uids.set(layer, nextUid++);
  return uids.get(layer);
}

/** Focus the control with data-focus=key after the next redraw (keeps keyboard users in place). */
let pendingFocus = null;

export function focusAfterRender(key) {
  pendingFocus = key;
}

function changed({ structure = false } = {}) {
  if (structure) emit("structure");
  emit("network");
}

// ---- input card -------------------------------------------------------------------------------

function bindInputCard() {
  const bindInt = (selector, apply) => {
    const input = $(selector);
    input.addEventListener("input", () => {
      const value = Number(input.value);
      const ok = input.value.trim() !== "" && Number.isInteger(value) && value >= Number(input.min);
      input.setAttribute("aria-invalid", String(!ok));
      if (ok) {
        apply(value);
        state.localErrors.delete("input");
      } else {
        state.localErrors.set("input", `${input.dataset.name} must be a whole number ≥ ${input.min}.`);
      }
      changed();
    });
  };
  bindInt("#input-height", (v) => (state.network.input.height = v));
  bindInt("#input-width", (v) => (state.network.input.width = v));
  bindInt("#input-seed", (v) => (state.network.seed = v));
  $("#input-channels").addEventListener("change", (event) => {
    state.network.input.channels = Number(event.target.value);
    changed();
  });
}

function syncInputCard() {
  const { input, seed } = state.network;
  const setIfIdle = (selector, value) => {
    const node = $(selector);
    if (document.activeElement !== node) node.value = String(value);
  };
  setIfIdle("#input-height", input.height);
  setIfIdle("#input-width", input.width);
  setIfIdle("#input-seed", seed ?? 0);
  $("#input-channels").value = String(input.channels);
}

// ---- layer cards ------------------------------------------------------------------------------

function moveLayer(index, delta) {
  const layers = state.network.layers;
  const target = index + delta;
  if (target < 0 || target >= layers.length) return;
  [layers[index], layers[target]] = [layers[target], layers[index]];
  const key = delta < 0 ? "up" : "down";
  // Keep focus on the same button; at the end of the list it is disabled, so use the other one.
  const stillEnabled = delta < 0 ? target > 0 : target < layers.length - 1;
  focusAfterRender(`${uidOf(layers[target])}:${stillEnabled ? key : delta < 0 ? "down" : "up"}`);
  changed({ structure: true });
}

function removeLayer(index) {
  const layers = state.network.layers;
  layers.splice(index, 1);
  const neighbour = layers[Math.min(index, layers.length - 1)];
  focusAfterRender(neighbour ? `${uidOf(neighbour)}:type` : "add");
  changed({ structure: true });
}

function changeType(index, type) {
  const old = state.network.layers[index];
  const fresh = defaultLayer(type);
  uids.set(fresh, uidOf(old));
  state.network.layers[index] = fresh;
  focusAfterRender(`${uidOf(fresh)}:type`);
  changed({ structure: true });
}

/** Parse an int field; returns a number or null (and records a local error). */
function readInt(input, spec, layerIndex) {
  const value = Number(input.value);
  const ok = input.value.trim() !== "" && Number.isInteger(value) && value >= spec.min;
  input.setAttribute("aria-invalid", String(!ok));
  const key = `${layerIndex}:${spec.key}`;
  if (ok) state.localErrors.delete(key);
  else state.localErrors.set(key, `${spec.label} must be a whole number ≥ ${spec.min}.`);
  return ok ? value : null;
}

function intControl(layer, index, spec, uid) {
  const input = el("input", {
    type: "number",
    inputmode: "numeric",
    min: spec.min,
    step: 1,
    value: String(layer[spec.key]),
    dataset: { focus: `${uid}:${spec.key}`, field: spec.key },
  });
  input.addEventListener("input", () => {
    const value = readInt(input, spec, index);
    if (value !== null) state.network.layers[index][spec.key] = value;
    changed();
  });
  return field(spec.label, input);
}

function paddingControl(layer, index, uid) {
  const mode = typeof layer.padding === "string" ? layer.padding : "number";
  const modeSelect = select(
    [
      ["number", "number"],
      ["same", "same"],
      ["valid", "valid"],
    ],
    mode,
    { "aria-label": "Padding mode", dataset: { focus: `${uid}:padding-mode`, field: "padding-mode" } },
  );
  const number = el("input", {
    type: "number",
    inputmode: "numeric",
    min: 0,
    step: 1,
    value: String(typeof layer.padding === "number" ? layer.padding : 0),
    hidden: mode !== "number",
    "aria-label": "Padding (cells)",
    dataset: { focus: `${uid}:padding`, field: "padding" },
  });
  modeSelect.addEventListener("change", () => {
    const target = state.network.layers[index];
    number.hidden = modeSelect.value !== "number";
    state.localErrors.delete(`${index}:padding`);
    target.padding = modeSelect.value === "number" ? Number(number.value) || 0 : modeSelect.value;
    changed();
  });
  number.addEventListener("input", () => {
    const value = readInt(number, { key: "padding", label: "Padding", min: 0 }, index);
    if (value !== null) state.network.layers[index].padding = value;
    changed();
  });
  return el(
    "div",
    { class: "field field-padding", role: "group", "aria-label": "Padding" },
    el("span", { text: "Padding", "aria-hidden": "true" }),
    el(
      "div",
      { class: "padding-pair" },
      modeSelect,
      number,
    ),
  );
}

function selectControl(layer, index, spec, uid) {
  const options = [...(typeof spec.options === "function" ? spec.options() : spec.options)];
  const value = layer[spec.key];
  // A value the server has not (yet) listed stays shown as it is rather than silently changing.
  if (!options.some(([v]) => String(v) === String(value))) options.push([value, String(value)]);
  const control = select(options, value, {
    dataset: { focus: `${uid}:${spec.key}`, field: spec.key },
  });
  control.addEventListener("change", () => {
    state.network.layers[index][spec.key] = control.value;
    changed();
  });
  return field(spec.label, control);
}

function weightsNote(layer, index, uid) {
  const shape = dims(layer.weights).join("×");
  const drop = el("button", {
    type: "button",
    class: "btn btn-small",
    text: "Use seeded weights",
    dataset: { focus: `${uid}:weights` },
    onclick: () => {
      const target = state.network.layers[index];
      delete target.weights;
      delete target.bias;
      focusAfterRender(`${uid}:init`);
      changed({ structure: true });
    },
  });
  const big = countNumbers(layer.weights) > 512 ? " (not kept in shared links)" : "";
  return el(
    "div",
    { class: "field field-weights" },
    el("span", { text: "Weights" }),
    el("span", { class: "weights-given", text: `given ${shape}${big}` }),
    drop,
  );
}

function layerFields(layer, index, uid) {
  const shown = withDefaults(layer);
  const nodes = [];
  for (const spec of FIELDS[layer.type] ?? []) {
    if (spec.kind === "int") nodes.push(intControl(shown, index, spec, uid));
    else if (spec.kind === "padding") nodes.push(paddingControl(shown, index, uid));
    else if (spec.key === "init" && layer.weights) nodes.push(weightsNote(layer, index, uid));
    else nodes.push(selectControl(shown, index, spec, uid));
  }
  if (!nodes.length) return el("p", { class: "no-fields", text: noFieldsText(layer.type) });
  return el("div", { class: "fields" }, nodes);
}

function noFieldsText(type) {
  switch (type) {
    case "relu":
      return "max(0, x) on every value; no settings.";
    case "flatten":
      return "Unrolls [h, w, c] into one vector; no settings.";
    case "globalmaxpool":
      return "Largest value of each feature map; no settings.";
    case "globalavgpool":
      return "Mean of each feature map; no settings.";
    default:
      return "";
  }
}

function layerCard(layer, index, count) {
  const uid = uidOf(layer);
  const n = index;
  const typeSelect = select(LAYER_TYPES, layer.type, {
    class: "layer-type",
    "aria-label": `Layer ${n} type`,
    dataset: { focus: `${uid}:type` },
  });
  typeSelect.addEventListener("change", () => changeType(index, typeSelect.value));
  const button = (key, text, label, onclick, disabled = false) =>
    el("button", {
      type: "button",
      class: `icon-btn icon-${key}`,
      text,
      "aria-label": label,
      title: label,
      disabled,
      dataset: { focus: `${uid}:${key}` },
      onclick,
    });
  return el(
    "li",
    { class: "layer-card", id: `layer-card-${index}`, dataset: { index, type: layer.type } },
    el(
      "div",
      { class: "layer-head" },
      el("span", { class: "layer-num", text: String(n), "aria-hidden": "true" }),
      typeSelect,
      el("span", { class: "layer-out", dataset: { role: "out" } }),
      el(
        "div",
        { class: "layer-actions" },
        button("up", "↑", `Move layer ${n} up`, () => moveLayer(index, -1), index === 0),
        button("down", "↓", `Move layer ${n} down`, () => moveLayer(index, 1), index === count - 1),
        button("remove", "×", `Remove layer ${n}`, () => removeLayer(index)),
      ),
    ),
    layerFields(layer, index, uid),
    el("div", { class: "layer-status", dataset: { role: "status" } }),
  );
}

export function renderLayers() {
  const list = $("#layer-list");
  const layers = state.network.layers;
  list.replaceChildren(...layers.map((layer, i) => layerCard(layer, i, layers.length)));
  $("#layer-empty").hidden = layers.length > 0;
  const maxLayers = Number(state.limits.max_layers) || Infinity;
  $("#add-layer").disabled = layers.length >= maxLayers;
  $("#add-layer").title = layers.length >= maxLayers ? `This server allows ${maxLayers} layers.` : "";
  syncInputCard();
  if (pendingFocus) {
    const target =
      pendingFocus === "add" ? $("#add-layer-type") : $(`[data-focus="${pendingFocus}"]`);
    pendingFocus = null;
    target?.focus();
  }
  showStatus();
}

// ---- what the API said ------------------------------------------------------------------------

function showStatus() {
  const reply = state.shapes;
  const cards = $$("#layer-list > .layer-card");
  const errors = reply?.errors ?? [];
  const firstBad = errors.reduce(
    (m, e) => (e.layer === null || e.layer === undefined ? m : Math.min(m, e.layer)),
    Infinity,
  );
  cards.forEach((card, i) => {
    const out = card.querySelector('[data-role="out"]');
    const status = card.querySelector('[data-role="status"]');
    status.replaceChildren();
    card.classList.remove("is-invalid", "is-unchecked");
    const local = [...state.localErrors].filter(([key]) => key.startsWith(`${i}:`));
    const info = reply?.layers?.find((l) => l.index === i);
    const mine = errors.filter((e) => e.layer === i);
    if (local.length) {
      card.classList.add("is-invalid");
      out.textContent = "";
      for (const [, message] of local) status.append(el("p", { class: "error-text", text: message }));
      return;
    }
    if (mine.length) {
      card.classList.add("is-invalid");
      out.textContent = "";
      for (const error of mine) status.append(errorBox(error, i));
      return;
    }
    if (info) {
      out.textContent = `→ ${shapeText(info.output_shape)}`;
      status.append(
        el(
          "p",
          { class: "formula" },
          el("span", { class: "layer-params", text: `${int(info.params)} params` }),
          " · ",
          info.formula,
        ),
      );
      return;
    }
    out.textContent = "";
    if (reply && i > firstBad) {
      card.classList.add("is-unchecked");
      status.append(el("p", { class: "muted", text: "Not checked: fix the layer above first." }));
    }
  });
  const chip = $("#input-shape-chip");
  const { height, width, channels } = state.network.input;
  chip.textContent = `${height}×${width}×${channels}`;
}

/** A "Fix: ..." button applying the server's fix for `error`, or null when it gave none. */
export function fixButton(error) {
  const fix = fixFor(error);
  if (!fix) return null;
  return el("button", {
    type: "button",
    class: "btn btn-fix",
    text: `Fix: ${fix.label}`,
    onclick: () => {
      fix.apply();
      focusAfterRender(fix.focus(uidOf));
      changed({ structure: true });
    },
  });
}

function errorBox(error, index) {
  return el(
    "div",
    { class: "layer-error", role: "group", "aria-label": `Problem in layer ${index}` },
    el("p", { class: "error-text", text: error.message }),
    error.suggestion ? el("p", { class: "suggestion", text: error.suggestion }) : null,
    fixButton(error),
  );
}

/** Title for a layer as the summary table shows it. */
export function layerLabel(index) {
  const layer = state.network.layers[index];
  return layer ? layerTitle(withDefaults(layer)) : "";
}

export function initStackEditor() {
  bindInputCard();
  const typeSelect = $("#add-layer-type");
  for (const [value, text] of LAYER_TYPES) typeSelect.append(el("option", { value, text }));
  $("#add-layer").addEventListener("click", () => {
    const layer = defaultLayer(typeSelect.value);
    state.network.layers.push(layer);
    focusAfterRender(`${uidOf(layer)}:type`);
    changed({ structure: true });
  });
  on("structure", () => {
    state.localErrors.clear();
    renderLayers();
  });
  on("shapes", showStatus);
  on("kernels", renderLayers);
}
