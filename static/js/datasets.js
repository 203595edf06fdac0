// The server's data sets (GET /api/v1/datasets, kept in state.datasets) and what a stack needs to
// learn one: the data set's input size, and a last dense layer with one softmax unit per class.

import { api } from "./api.js";
import { emit, state } from "./state.js";
import { int } from "./format.js";

/** Ask the server for its data sets once; state.datasets, then "datasets". */
export async function loadDatasets() {
  const datasets = await api.datasets();
  state.datasets = Array.isArray(datasets) ? datasets : [];
  emit("datasets");
}

export function datasetNamed(name) {
  return state.datasets.find((d) => d.name === name) ?? null;
}

const inputText = ({ height, width, channels }) => `${height}×${width}×${channels}`;

const sameInput = (a, b) =>
  a.height === b.height && a.width === b.width && a.channels === b.channels;

/** The data set a model was trained on: the one it names, else the first of its input size. */
export function datasetOfModel(model) {
  const { datasets } = state;
  const named = datasets.find((d) => d.name === model.dataset || d.description === model.dataset);
  return named ?? datasets.find((d) => sameInput(d.input, model.network.input)) ?? null;
}

/** "digits · 10 classes · 28×28×1": a picker option. */
export function datasetOption(dataset) {
  return `${dataset.name} · ${dataset.classes.length} classes · ${inputText(dataset.input)}`;
}

/** "28×28×1, 10 classes, 4,000 training images": the sizes, as the server gave them. */
export function datasetSizes(dataset) {
  return `${inputText(dataset.input)}, ${dataset.classes.length} classes, ${int(dataset.train)} training images`;
}

/** Words saying what stops `network` from learning `dataset`, or "" when it fits. */
export function misfit(network, dataset) {
  const problems = [];
  if (!sameInput(network.input, dataset.input)) {
    problems.push(`the input is ${inputText(network.input)}, not ${inputText(dataset.input)}`);
  }
  const classes = dataset.classes.length;
  const last = network.layers.at(-1);
  if (!last || last.type !== "dense") problems.push("the last layer is not dense");
  else {
    if (Number(last.units) !== classes) {
      problems.push(`the last dense layer has ${last.units} units, not ${classes}`);
    }
    if (last.activation !== "softmax") problems.push("the last dense layer has no softmax");
  }
  return problems.join("; ");
}

/** `network` changed just enough to learn `dataset`: its input, and a last dense layer with one
 * unit per class and softmax (a flatten added in front when the maps are not flat). */
export function fittedStack(network, dataset) {
  const spec = structuredClone(network);
  const { height, width, channels } = dataset.input;
  spec.input = { height, width, channels };
  const head = { type: "dense", units: dataset.classes.length, activation: "softmax" };
  spec.layers = spec.layers.map((layer) =>
    layer.type === "dense" && layer.activation === "softmax" ? { ...layer, activation: "relu" } : layer,
  );
  const last = spec.layers.at(-1);
  if (last?.type === "dense") spec.layers[spec.layers.length - 1] = { ...last, ...head };
  else if (last?.type === "flatten") spec.layers.push(head);
  else spec.layers.push({ type: "flatten" }, head);
  for (const layer of spec.layers) {
    delete layer.weights; // trained weights come from training, not from the stack
    delete layer.bias;
  }
  return spec;
}
