// One-click fixes for the errors the API reports. The server says what the fix is (each error's
// `fix`: set some fields, insert a layer before this one, or drop some fields); here we only apply
// it. The editor then re-validates through the API as for any edit.

import { state } from "./state.js";
import { defaultLayer } from "./layer-kinds.js";

/** The fields of `layer` that have a value (a null says nothing). */
const given = (layer) => Object.fromEntries(Object.entries(layer).filter(([, v]) => v !== null));

/**
 * The server's fix for `error` as {label, apply(), focus(uidOf) -> the data-focus key of the
 * control to focus after the redraw}, or null when it gave none (or it no longer applies).
 */
export function fixFor(error) {
  const fix = error.fix;
  if (!fix) return null;
  const index = error.layer ?? null;
  const network = state.network;
  if (index === null) {
    if (!fix.set) return null; // the network's input has only fields to set
    return {
      label: fix.label,
      apply: () => Object.assign(network.input, fix.set),
      focus: () => `input:${Object.keys(fix.set)[0]}`,
    };
  }
  const layer = network.layers[index];
  if (!layer) return null;
  const at = (key) => (uidOf) => `${uidOf(network.layers[index]) ?? ""}:${key}`;
  if (fix.set) {
    const [key] = Object.keys(fix.set);
    return {
      label: fix.label,
      apply: () => Object.assign(layer, fix.set),
      // A padding of "same" or "valid" is chosen in the padding-mode picker.
      focus: at(key === "padding" && typeof fix.set.padding === "string" ? "padding-mode" : key),
    };
  }
  if (fix.insert_before) {
    return {
      label: fix.label,
      apply: () => {
        const layer = { ...defaultLayer(fix.insert_before.type), ...given(fix.insert_before) };
        network.layers.splice(index, 0, layer);
      },
      focus: at("type"), // the inserted layer now stands at `index`
    };
  }
  if (fix.drop) {
    return {
      label: fix.label,
      apply: () => {
        for (const key of fix.drop) delete layer[key];
      },
      // Dropped conv weights give way to the weights picker; elsewhere stay on the layer's type.
      focus: at(layer.type === "conv" && fix.drop.includes("weights") ? "init" : "type"),
    };
  }
  return null;
}
