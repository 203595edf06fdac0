// Start-up: read the page's config, wire every view, restore the state from the URL (or load the
// default example), then validate and run once so a new visitor sees every stage filled in.

import { $ } from "./dom.js";
import { api } from "./api.js";
import { emit, state } from "./state.js";
import { initImageInput, useSample } from "./image-input.js";
import { applyPreset, DEFAULT_PRESET, initPresets, loadNetwork } from "./presets.js";
import { initStackEditor } from "./stack-editor.js";
import { ensureValidated, initValidation } from "./validation.js";
import { initModelSummary } from "./model-summary.js";
import { initRun, runNetwork } from "./run.js";
import { initActivations } from "./activations.js";
import { initChannelView } from "./channel-view.js";
import { initStepThrough } from "./step-through.js";
import { initSaliency } from "./saliency.js";
import { initMode, openMode } from "./mode.js";
import { initBackward } from "./backward.js";
import { initGradientMaps } from "./gradient-maps.js";
import { initBackwardStep } from "./backward-step.js";
import { initGradientCheck } from "./gradient-check.js";
import { initSgdStep } from "./sgd-step.js";
import { initFeatureVis } from "./feature-vis.js";
import { initTrainForm } from "./train-form.js";
import { initTrainProgress } from "./train-progress.js";
import { initSavedModels } from "./saved-models.js";
import { loadDatasets } from "./datasets.js";
import { decodeHash, encodeState, initUrlState, linkableSpec } from "./url-state.js";

function readConfig() {
  try {
    const config = JSON.parse($("#page-config")?.textContent || "{}");
    state.version = String(config.version ?? "");
    state.limits = config.limits && typeof config.limits === "object" ? config.limits : {};
  } catch {
    state.limits = {};
  }
}

/** Put the server's published limits on the controls they bound. */
function applyLimits() {
  const side = Number(state.limits.max_input_side);
  if (side) for (const id of ["#input-height", "#input-width"]) $(id).max = String(side);
}

function showGlobalError(message) {
  const box = $("#global-error");
  box.textContent = message;
  box.hidden = !message;
}

function initCopyLink() {
  const button = $("#copy-link");
  const note = $("#copy-link-status");
  button.addEventListener("click", async () => {
    const url = `${window.location.origin}${window.location.pathname}${encodeState()}`;
    try {
      await navigator.clipboard.writeText(url);
      note.textContent = "Link copied.";
    } catch {
      note.textContent = "Copy the address bar: it holds this stack.";
    }
    setTimeout(() => {
      note.textContent = "";
    }, 4000);
  });
}

/** The shipped model a restored link names, if its stack still matches the link's. */
function matchingModel(name, network) {
  const model = state.models.find((m) => m.name === name);
  if (!model) return null;
  if (!network) return model;
  const same = JSON.stringify(linkableSpec(model.network)) === JSON.stringify(network);
  return same ? model : null;
}

async function main() {
  readConfig();
  applyLimits();
  initImageInput();
  initPresets();
  initStackEditor();
  initValidation();
  initModelSummary();
  initRun();
  initActivations();
  initChannelView();
  initStepThrough();
  initSaliency();
  initMode();
  initBackward();
  initGradientMaps();
  initBackwardStep();
  initGradientCheck();
  initSgdStep();
  initFeatureVis();
  initTrainForm();
  initTrainProgress();
  initSavedModels();
  initUrlState();
  initCopyLink();

  const restored = decodeHash();
  // What the server offers, asked once: shipped models, data sets, preset kernels.
  const problems = [];
  const models = api.models().then(
    (list) => (state.models = Array.isArray(list) ? list : []),
    (error) => problems.push(`the shipped models (${error.message})`),
  );
  const kernels = api.kernels().then(
    (list) => {
      state.kernels = Array.isArray(list) ? list : [];
      emit("kernels");
    },
    (error) => problems.push(`the preset kernels (${error.message})`),
  );
  const datasets = loadDatasets().catch((error) => problems.push(`the data sets (${error.message})`));
  await Promise.all([models, kernels, datasets]);
  if (problems.length) showGlobalError(`Could not load ${problems.join(", ")}.`);
  emit("models");

  const model = restored.model ? matchingModel(restored.model, restored.network) : null;
  if (model) loadNetwork(model.network, { model });
  else if (restored.network) loadNetwork(restored.network);
  else applyPreset(DEFAULT_PRESET);
  if (!state.image.render) useSample(state.network.input.channels === 3 ? "shapes" : "digit");
  if (restored.step) state.step = { ...state.step, ...restored.step };
  if (restored.mode) openMode(restored.mode);

  // ensureValidated, not validateNow: the edit above also queued a debounced check, which on a
  // slow network would abort this one and leave the first run waiting for nothing.
  if (await ensureValidated()) await runNetwork();
}

main().catch((error) => showGlobalError(`The page failed to start: ${error.message}`));
