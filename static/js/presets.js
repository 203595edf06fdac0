// One-click example stacks, and the shipped models from GET /api/v1/models.

import { $, el } from "./dom.js";
import { emit, isModelUnchanged, on, state } from "./state.js";
import { useSample } from "./image-input.js";

const SOBEL_X = [
  [-1, 0, 1],
  [-2, 0, 2],
  [-1, 0, 1],
];
const SOBEL_Y = [
  [-1, -2, -1],
  [0, 0, 0],
  [1, 2, 1],
];
/** A 3×3 kernel as weights[F][F][C] for one input channel. */
const asFilter = (k) => k.map((row) => row.map((v) => [v]));

export const PRESETS = [
  {
    id: "stride-2",
    name: "7×7, F=3, S=2",
    note: "works: 3×3",
    sample: "checkerboard",
    network: {
      input: { height: 7, width: 7, channels: 1 },
      seed: 0,
      layers: [
        { type: "conv", filters: 1, kernel_size: 3, stride: 2, padding: 0, activation: "none", init: "he" },
      ],
    },
  },
  {
    id: "stride-5",
    name: "7×7, F=3, S=5",
    note: "fails: 1.8",
    sample: "checkerboard",
    network: {
      input: { height: 7, width: 7, channels: 1 },
      seed: 0,
      layers: [
        { type: "conv", filters: 1, kernel_size: 3, stride: 5, padding: 0, activation: "none", init: "he" },
      ],
    },
  },
  {
    id: "cifar-conv",
    name: "32×32×3, ten 5×5 filters, P=2",
    note: "760 params",
    sample: "shapes",
    network: {
      input: { height: 32, width: 32, channels: 3 },
      seed: 0,
      layers: [
        { type: "conv", filters: 10, kernel_size: 5, stride: 1, padding: 2, activation: "relu", init: "he" },
      ],
    },
  },
  {
    id: "edges",
    name: "Edge detectors",
    note: "Sobel x and y",
    sample: "circle",
    network: {
      input: { height: 32, width: 32, channels: 1 },
      seed: 0,
      layers: [
        {
          type: "conv",
          filters: 2,
          kernel_size: 3,
          stride: 1,
          padding: 1,
          activation: "none",
          weights: [asFilter(SOBEL_X), asFilter(SOBEL_Y)],
          bias: [0, 0],
        },
      ],
    },
  },
  {
    id: "classifier",
    name: "Small classifier",
    note: "conv·relu·pool ×2 → dense 10",
    sample: "digit",
    network: {
      input: { height: 28, width: 28, channels: 1 },
      seed: 0,
      layers: [
        { type: "conv", filters: 8, kernel_size: 3, stride: 1, padding: 1, activation: "none", init: "he" },
        { type: "relu" },
        { type: "maxpool", size: 2, stride: 2, padding: 0 },
        { type: "conv", filters: 16, kernel_size: 3, stride: 1, padding: 1, activation: "none", init: "he" },
        { type: "relu" },
        { type: "maxpool", size: 2, stride: 2, padding: 0 },
        { type: "flatten" },
        { type: "dense", units: 10, activation: "softmax" },
      ],
    },
  },
];

export const DEFAULT_PRESET = "classifier";

/** Replace the whole stack with `network`; model is the shipped model it came from, if any. */
export function loadNetwork(network, { model = null, sample = null } = {}) {
  state.network = structuredClone(network);
  state.network.seed ??= 0;
  state.model = model;
  state.step = { ...state.step, layer: null, pos: 0, channel: 0, inChannel: 0 };
  // Follow the preset's picture only while the user has not brought their own.
  if (sample && state.image.kind === "sample") useSample(sample);
  emit("structure");
  emit("network");
}

export function applyPreset(id) {
  const preset = PRESETS.find((p) => p.id === id);
  if (preset) loadNetwork(preset.network, { sample: preset.sample });
}

function presetButton(label, note, onClick, data) {
  return el(
    "button",
    { type: "button", class: "preset", dataset: data, onclick: onClick },
    el("span", { class: "preset-name", text: label }),
    note ? el("span", { class: "preset-note", text: note }) : null,
  );
}

/** The loaded shipped model's own description (how it wants its input), or nothing. */
function showModelNote() {
  const note = $("#model-note");
  const model = state.model;
  note.hidden = !model;
  note.replaceChildren();
  if (!model) return;
  note.append(el("strong", { text: `${model.name}: ` }));
  if (!isModelUnchanged()) {
    note.classList.add("is-edited");
    note.append(
      "you changed the stack, so runs now use seeded random weights, not the model's trained ones. ",
      "Click the model again to get them back.",
    );
    return;
  }
  note.classList.remove("is-edited");
  note.append(model.description || "a shipped model.");
  note.append(" Its trained weights are used while the stack is unchanged.");
}

export function initPresets() {
  on("network", showModelNote);
  const list = $("#preset-list");
  for (const preset of PRESETS) {
    list.append(
      presetButton(preset.name, preset.note, () => applyPreset(preset.id), { preset: preset.id }),
    );
  }
  on("models", () => {
    for (const old of list.querySelectorAll("[data-model]")) old.remove();
    for (const model of state.models) {
      const button = presetButton(
        model.name,
        `trained model · ${model.labels?.length ?? "?"} classes`,
        () => loadNetwork(model.network, { model, sample: model.network.input.channels === 3 ? "shapes" : "digit" }),
        { model: model.name },
      );
      button.setAttribute("aria-describedby", "model-note");
      button.classList.add("preset-model");
      list.append(button);
    }
  });
}
