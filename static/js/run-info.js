// Facts about a finished run in words: what enters each layer, and each layer's title.

import { layerTitle, shapeWords } from "./format.js";
import { withDefaults } from "./layer-kinds.js";

/** The shape entering layer i of the run ([H, W, C] or [n]). */
export function runInputShape(run, i) {
  return i === 0 ? run.input_shape : run.layers[i - 1].output_shape;
}

/** The layer spec the run used, with API defaults filled in. */
export function runLayerSpec(run, i) {
  const spec = run.network.layers[i];
  return spec ? withDefaults(spec) : { type: run.layers[i].type };
}

/** "32×32×3 colour image → 10 feature maps of 32×32" for layer i of the run. */
export function stageWords(run, i) {
  const layer = run.layers[i];
  const spec = runLayerSpec(run, i);
  const isLast = i === run.layers.length - 1;
  const into = shapeWords(runInputShape(run, i), { image: i === 0 });
  const out = shapeWords(layer.output_shape, {
    probabilities: isLast && spec.activation === "softmax",
  });
  return `${into} → ${out}`;
}

export function runLayerTitle(run, i) {
  return layerTitle(runLayerSpec(run, i));
}
