// One-click fixes for the errors /shapes reports. The words come from the API; here we only pick
// a value that works and apply it. The editor then re-validates through the API as for any edit.

import { state } from "./state.js";
import { defaultLayer } from "./layer-kinds.js";

/** Shape entering layer `index`, as the API reported it (or the network input for layer 0). */
function inputShapeOf(index) {
  if (index === 0) {
    const { height, width, channels } = state.network.input;
    return [height, width, channels];
  }
  return state.shapes?.layers?.find((l) => l.index === index - 1)?.output_shape ?? null;
}

/** Largest divisor of every n in ns that is <= limit (1 always divides). */
function strideThatFits(ns, limit) {
  for (let s = limit; s > 1; s -= 1) if (ns.every((n) => n % s === 0)) return s;
  return 1;
}

/**
 * A fix for `error` in layer `index`: {label, apply(), focus(uidOf) -> data-focus key} or null.
 */
export function fixFor(error, index) {
  const layer = state.network.layers[index];
  if (!layer) return null;
  const shape = inputShapeOf(index);
  const field = error.field ?? "";
  const focusOn = (key) => (uidOf) => `${uidOf(state.network.layers[index]) ?? ""}:${key}`;

  if (field === "weights" || field === "bias") {
    return {
      label: "drop the given weights (use the seed)",
      apply: () => {
        delete layer.weights;
        delete layer.bias;
      },
      focus: focusOn("type"),
    };
  }

  // Over one of the server's published limits: use the limit itself.
  const limitKey = { filters: "max_filters", units: "max_units", kernel_size: "max_kernel_size" }[field];
  const limit = Number(state.limits[limitKey]);
  if (limitKey && limit && Number(layer[field]) > limit) {
    return {
      label: `set ${field.replace("_", " ")} to ${limit}`,
      apply: () => (layer[field] = limit),
      focus: focusOn(field),
    };
  }

  if (layer.type === "dense" && shape && shape.length === 3) {
    return {
      label: "add a flatten layer before it",
      apply: () => state.network.layers.splice(index, 0, defaultLayer("flatten")),
      focus: (uidOf) => `${uidOf(state.network.layers[index])}:type`,
    };
  }

  const isConv = layer.type === "conv";
  const isPool = layer.type === "maxpool" || layer.type === "avgpool";
  if (!(isConv || isPool) || !shape || shape.length !== 3) return null;

  const sizeKey = isConv ? "kernel_size" : "size";
  const F = Number(layer[sizeKey]);
  const S = Number(layer.stride ?? (isConv ? 1 : F));
  const [H, W] = shape;

  if (isConv && layer.padding === "same" && (S !== 1 || F % 2 === 0)) {
    if (S !== 1) {
      return {
        label: "set stride to 1",
        apply: () => (layer.stride = 1),
        focus: focusOn("stride"),
      };
    }
    return {
      label: `set kernel size to ${F + 1}`,
      apply: () => (layer.kernel_size = F + 1),
      focus: focusOn("kernel_size"),
    };
  }

  const P = layer.padding === "same" ? (F - 1) / 2 : layer.padding === "valid" ? 0 : Number(layer.padding ?? 0);

  if (isPool && P > Math.floor(F / 2)) {
    const p = Math.floor(F / 2);
    return { label: `set padding to ${p}`, apply: () => (layer.padding = p), focus: focusOn("padding") };
  }

  const room = Math.min(H, W) + 2 * P;
  if (F > room) {
    return {
      label: `set ${isConv ? "kernel size" : "size"} to ${room}`,
      apply: () => {
        layer[sizeKey] = room;
        if (isPool && layer.stride === undefined) layer.stride = room;
      },
      focus: focusOn(sizeKey),
    };
  }

  const spans = [H - F + 2 * P, W - F + 2 * P];
  if (spans.every((n) => n % S === 0)) return null;
  const s = strideThatFits(spans, S);
  return { label: `set stride to ${s}`, apply: () => (layer.stride = s), focus: focusOn("stride") };
}
