// The page state in the URL hash, so a stack can be shared as a link and comes back on reload:
// #net=<spec JSON>&model=<name>&layer=<i>&pos=<p>&c=<channel>&ic=<input channel>&mode=backward.
// The image is not included. Given weights larger than 512 numbers are left out of the link
// (a shipped model is named instead).

import { debounce } from "./dom.js";
import { isModelUnchanged, on, state } from "./state.js";
import { countNumbers } from "./layer-kinds.js";

const MAX_LINK_WEIGHTS = 512;

/** The spec without weight arrays too large for a link. */
export function linkableSpec(network) {
  const spec = structuredClone(network);
  for (const layer of spec.layers) {
    if (layer.weights && countNumbers(layer.weights) > MAX_LINK_WEIGHTS) {
      delete layer.weights;
      delete layer.bias;
    }
  }
  return spec;
}

export function encodeState() {
  const params = new URLSearchParams();
  params.set("net", JSON.stringify(linkableSpec(state.network)));
  if (state.model && isModelUnchanged()) params.set("model", state.model.name);
  if (state.run && Number.isInteger(state.step.layer)) {
    params.set("layer", String(state.step.layer));
    params.set("pos", String(state.step.pos));
    params.set("c", String(state.step.channel));
    params.set("ic", String(state.step.inChannel));
  }
  if (state.mode === "backward") params.set("mode", "backward");
  return `#${params}`;
}

/** Parse location.hash -> {network, model, step, mode} (each may be null); bad input gives nulls. */
export function decodeHash(hash = window.location.hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  let network = null;
  try {
    const parsed = params.has("net") ? JSON.parse(params.get("net")) : null;
    if (parsed && typeof parsed === "object" && parsed.input && Array.isArray(parsed.layers)) {
      network = parsed;
    }
  } catch {
    network = null;
  }
  const intParam = (key) => {
    const value = Number(params.get(key));
    return params.has(key) && Number.isInteger(value) && value >= 0 ? value : null;
  };
  const layer = intParam("layer");
  return {
    network,
    model: params.get("model"),
    mode: params.get("mode") === "backward" ? "backward" : null,
    step:
      layer === null
        ? null
        : { layer, pos: intParam("pos") ?? 0, channel: intParam("c") ?? 0, inChannel: intParam("ic") ?? 0 },
  };
}

// Debounced: playing a layer emits many steps, and browsers throttle frequent replaceState.
const write = debounce(() => {
  const next = encodeState();
  if (next !== window.location.hash) {
    history.replaceState(null, "", `${window.location.pathname}${window.location.search}${next}`);
  }
  delete document.documentElement.dataset.urlPending;
}, 200);

function writeSoon() {
  document.documentElement.dataset.urlPending = "true"; // lets scripts wait for an up-to-date URL
  write();
}

export function initUrlState() {
  on("network", writeSoon);
  on("step", writeSoon);
  on("run", writeSoon);
  on("mode", writeSoon);
}
