// Live validation: every edit asks POST /api/v1/shapes (debounced, stale requests cancelled) and
// the reply is stored in state.shapes for the editor, the summary and the Run button.

import { $, debounce, el } from "./dom.js";
import { api, detailMessage } from "./api.js";
import { currentSpec, emit, on, state } from "./state.js";
import { int } from "./format.js";
import { fixButton } from "./stack-editor.js";

let controller = null;
let requestError = null;

export async function validateNow() {
  const spec = currentSpec();
  controller?.abort();
  if (state.localErrors.size) {
    state.shapes = null;
    requestError = null;
    emit("shapes");
    return;
  }
  controller = new AbortController();
  $("#stack-status").dataset.state = "checking";
  try {
    const reply = await api.shapes(spec, controller.signal);
    state.shapes = reply;
    state.shapesFor = JSON.stringify(spec);
    requestError = null;
  } catch (error) {
    if (error.name === "AbortError") return;
    // A refused spec (422) names the layer and field like /shapes does: show it on the card.
    const errors = error.detail?.errors;
    if (Array.isArray(errors) && errors.length) {
      state.shapes = { valid: false, layers: [], total_params: 0, errors };
      state.shapesFor = JSON.stringify(spec);
      requestError = null;
    } else {
      state.shapes = null;
      requestError = error;
    }
  }
  emit("shapes");
}

const validateSoon = debounce(validateNow, 250);

/** True when state.shapes answers the current stack and says it is valid. */
export function isValidNow() {
  return Boolean(state.shapes?.valid) && state.shapesFor === JSON.stringify(state.network);
}

/** Wait for pending validation, then report validity. */
export async function ensureValidated() {
  validateSoon.cancel();
  if (state.shapesFor !== JSON.stringify(state.network) || !state.shapes) await validateNow();
  return isValidNow();
}

function showStackStatus() {
  const box = $("#stack-status");
  const reply = state.shapes;
  box.replaceChildren();
  if (state.localErrors.size) {
    box.dataset.state = "invalid";
    const [first] = state.localErrors.values();
    box.append(el("strong", { text: "Not checked yet: " }), first);
    return;
  }
  if (requestError) {
    box.dataset.state = "invalid";
    box.append(el("strong", { text: "The server refused this stack: " }));
    box.append(detailMessage(requestError.detail) || requestError.message);
    return;
  }
  if (!reply) return;
  if (reply.valid) {
    box.dataset.state = "valid";
    const n = state.network.layers.length;
    box.append(
      el("strong", { text: "Valid. " }),
      `${n} ${n === 1 ? "layer" : "layers"}, ${int(reply.total_params)} parameters.`,
    );
    return;
  }
  box.dataset.state = "invalid";
  const count = reply.errors.length;
  box.append(el("strong", { text: `${count} ${count === 1 ? "problem" : "problems"}: ` }));
  const [first] = reply.errors;
  box.append(first?.message ?? "invalid network");
  // A problem with the input (no layer card to show it on) gets its fix here.
  const general = reply.errors.filter((e) => e.layer === null || e.layer === undefined);
  const withFix = (error) => {
    const button = fixButton(error);
    if (button) box.append(" ", button);
  };
  if (general[0] === first) withFix(first);
  for (const error of general.slice(general[0] === first ? 1 : 0)) {
    box.append(el("br"), error.message);
    withFix(error);
  }
}

export function initValidation() {
  on("network", () => {
    $("#stack-status").dataset.state = "checking";
    validateSoon();
  });
  on("shapes", showStackStatus);
}
