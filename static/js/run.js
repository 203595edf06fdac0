// Running the network: POST /api/v1/forward with the input PNG and the stack (or a shipped
// model's name), then hand the reply to every view through state.run and the "run" event.

import { $, debounce } from "./dom.js";
import { api } from "./api.js";
import { currentSpec, emit, isModelUnchanged, on, state } from "./state.js";
import { inputBlob } from "./image-input.js";
import { ensureValidated } from "./validation.js";
import { clearArrays } from "./npy.js";
import { sampleLabel } from "./samples.js";

let running = null;
let again = false;

/** Class labels for the output: the model's, else the API's top list, else "class i". */
function labelsFor(reply) {
  const n = reply.output?.values?.length ?? 0;
  const labels = Array.from({ length: n }, (_, i) => `class ${i}`);
  const modelLabels = state.model?.labels;
  if (Array.isArray(modelLabels) && modelLabels.length === n) return modelLabels.map(String);
  for (const item of reply.output?.top ?? []) {
    if (item.label !== null && item.label !== undefined && item.index < n) {
      labels[item.index] = String(item.label);
    }
  }
  return labels;
}

function showRunError(message) {
  const box = $("#run-error");
  box.textContent = message;
  box.hidden = !message;
}

function setBusy(busy) {
  const button = $("#run-button");
  button.disabled = busy;
  button.setAttribute("aria-busy", String(busy));
  $("#run-status").textContent = busy ? "Running…" : "";
}

async function runOnce(quiet) {
  if (!state.inputCanvas) return;
  const valid = await ensureValidated();
  if (!valid) {
    // An automatic run just waits for a valid stack; a click says why nothing happened.
    if (!quiet) showRunError("The network is not valid yet: fix the marked layer, then run again.");
    return;
  }
  const spec = currentSpec();
  const useModel = isModelUnchanged();
  const { width: W, height: H } = state.inputCanvas;
  const pixels = state.inputCanvas.getContext("2d").getImageData(0, 0, W, H);
  const blob = await inputBlob();
  const imageLabel = state.image.kind === "sample" ? sampleLabel(state.image.name) : null;
  let reply;
  try {
    reply = await api.forward(blob, useModel ? { model: state.model.name } : { network: spec });
  } catch (error) {
    showRunError(`Run failed: ${error.message}`);
    return;
  }
  showRunError("");
  clearArrays();
  state.run = {
    ...reply,
    network: spec,
    labels: labelsFor(reply),
    inputPixels: pixels,
    modelName: useModel ? state.model.name : null,
    imageLabel, // what the image is, when the page drew a sample of a known class
  };
  state.stale = false;
  emit("run");
}

const autoRunSoon = debounce(() => {
  if ($("#auto-run").checked) runNetwork({ quiet: true });
}, 450);

/** Run now; a request made while a run is in flight runs once more afterwards. */
export async function runNetwork({ quiet = false } = {}) {
  autoRunSoon.cancel(); // this run covers any change an automatic one was waiting for
  if (running) {
    again = true;
    return running;
  }
  setBusy(true);
  running = (async () => {
    do {
      again = false;
      await runOnce(quiet);
    } while (again);
  })();
  try {
    await running;
  } finally {
    running = null;
    setBusy(false);
  }
}

export function initRun() {
  $("#run-button").addEventListener("click", () => runNetwork());
  const markStale = () => {
    if (!state.run) return;
    state.stale = true;
    $("#stale-note").hidden = false;
  };
  on("network", markStale);
  on("image", () => {
    if (!state.run) return; // the first run is started by main.js
    markStale();
    autoRunSoon();
  });
  // Re-run by itself once the API says an edited stack is valid.
  on("shapes", () => {
    if (state.shapes?.valid) showRunError("");
    if (state.stale && state.shapes?.valid) autoRunSoon();
  });
  on("run", () => {
    $("#stale-note").hidden = true;
  });
}
