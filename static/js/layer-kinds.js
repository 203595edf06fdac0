// The layer kinds the editor offers, their defaults, and the fields each one shows.

import { state } from "./state.js";

export const LAYER_TYPES = [
  ["conv", "Convolution"],
  ["relu", "ReLU"],
  ["maxpool", "Max pool"],
  ["avgpool", "Average pool"],
  ["globalmaxpool", "Global max pool"],
  ["globalavgpool", "Global average pool"],
  ["flatten", "Flatten"],
  ["dense", "Dense"],
];

/** A conv layer's weight choices: He-normal from the seed, or one of the server's preset kernels
 * (GET /api/v1/kernels, in state.kernels). */
export function initOptions() {
  return [["he", "He"], ...state.kernels.map((kernel) => [kernel.name, kernel.label])];
}

const POOL_FIELDS = [
  { key: "size", label: "Size", kind: "int", min: 1 },
  { key: "stride", label: "Stride", kind: "int", min: 1 },
  { key: "padding", label: "Padding", kind: "int", min: 0 },
];

/**
 * Field descriptors per type: {key, label, kind: "int"|"padding"|"select", min, options}; options
 * are [value, text] pairs, or a function giving them when they come from the server.
 */
export const FIELDS = {
  conv: [
    { key: "filters", label: "Filters", kind: "int", min: 1 },
    { key: "kernel_size", label: "Kernel", kind: "int", min: 1 },
    { key: "stride", label: "Stride", kind: "int", min: 1 },
    { key: "padding", label: "Padding", kind: "padding" },
    {
      key: "activation",
      label: "Activation",
      kind: "select",
      options: [
        ["relu", "ReLU"],
        ["none", "none"],
      ],
    },
    { key: "init", label: "Weights", kind: "select", options: initOptions },
  ],
  maxpool: POOL_FIELDS,
  avgpool: POOL_FIELDS,
  dense: [
    { key: "units", label: "Units", kind: "int", min: 1 },
    {
      key: "activation",
      label: "Activation",
      kind: "select",
      options: [
        ["none", "none"],
        ["relu", "ReLU"],
        ["softmax", "softmax"],
      ],
    },
  ],
};

/** A fresh layer of `type` with sensible defaults. */
export function defaultLayer(type) {
  switch (type) {
    case "conv":
      return {
        type,
        filters: 4,
        kernel_size: 3,
        stride: 1,
        padding: 1,
        activation: "relu",
        init: "he",
      };
    case "maxpool":
    case "avgpool":
      return { type, size: 2, stride: 2, padding: 0 };
    case "dense":
      return { type, units: 10, activation: "softmax" };
    default:
      return { type };
  }
}

/** Layer with all the fields the editor shows filled in (API defaults where missing). */
export function withDefaults(layer) {
  const filled = { ...defaultLayer(layer.type), ...layer };
  if ((layer.type === "maxpool" || layer.type === "avgpool") && layer.stride === undefined) {
    filled.stride = layer.size;
  }
  if (layer.type === "conv") {
    if (layer.stride === undefined) filled.stride = 1;
    if (layer.padding === undefined) filled.padding = 0;
    if (layer.activation === undefined) filled.activation = "relu";
    if (layer.init === undefined) filled.init = "he";
  }
  if (layer.type === "dense" && layer.activation === undefined) filled.activation = "none";
  if ((layer.type === "maxpool" || layer.type === "avgpool") && layer.padding === undefined) {
    filled.padding = 0;
  }
  return filled;
}

/** Number of numbers in a nested list (to decide whether given weights fit in a link). */
export function countNumbers(value) {
  if (Array.isArray(value)) return value.reduce((n, v) => n + countNumbers(v), 0);
  return typeof value === "number" ? 1 : 0;
}

/** Dimensions of a nested list: [[1, 2], [3, 4]] -> [2, 2]. */
export function dims(value) {
  const out = [];
  let v = value;
  while (Array.isArray(v)) {
    out.push(v.length);
    v = v[0];
  }
  return out;
}
