// Stage 5, the models trained here (source "trained" in GET /api/v1/models): each with its data
// set and test accuracy, Load (runs it) and Delete (asks first).

import { $, el, showAlert } from "./dom.js";
import { api } from "./api.js";
import { emit, on, state } from "./state.js";
import { percent } from "./format.js";
import { loadNetwork } from "./presets.js";
import { runNetwork } from "./run.js";
import { datasetOfModel } from "./datasets.js";

/** Ask the server for the model list again (after a job saved one, or a delete); "models". */
export async function refreshModels() {
  try {
    const models = await api.models();
    state.models = Array.isArray(models) ? models : [];
    emit("models");
  } catch (failure) {
    showAlert($("#saved-error"), `Could not load the models: ${failure.message}`);
  }
}

/** Load a model's stack (with its data set's sample picture) and run it. */
export function useModel(model) {
  const dataset = datasetOfModel(model);
  loadNetwork(model.network, { model, sample: dataset?.sample ?? null });
  $("#stage-activations").scrollIntoView({ behavior: "smooth", block: "start" });
  // With "Re-run on changes" on, the page runs the new stack by itself (as for the examples).
  if (!state.run || !$("#auto-run").checked) runNetwork();
}

async function deleteModel(model) {
  if (!window.confirm(`Delete the trained model “${model.name}”? This cannot be undone.`)) return;
  showAlert($("#saved-error"), "");
  try {
    await api.deleteModel(model.name);
  } catch (failure) {
    showAlert($("#saved-error"), `Could not delete ${model.name}: ${failure.message}`);
    return;
  }
  if (state.model?.name === model.name) {
    state.model = null; // the stack stays; runs now use seeded weights
    emit("network");
  }
  await refreshModels();
}

function savedItem(model) {
  const meta = [
    datasetOfModel(model)?.name ?? "custom",
    model.accuracy === null ? null : `test accuracy ${percent(model.accuracy)}`,
  ];
  return el(
    "li",
    { class: "saved-model", dataset: { model: model.name } },
    el(
      "div",
      { class: "saved-text" },
      el("strong", { class: "saved-name", text: model.name }),
      el("span", { class: "saved-meta", text: meta.filter(Boolean).join(" · ") }),
    ),
    el("button", {
      type: "button",
      class: "btn btn-small",
      text: "Load",
      "aria-label": `Load ${model.name} and run it`,
      onclick: () => useModel(model),
    }),
    el("button", {
      type: "button",
      class: "btn btn-small btn-danger",
      text: "Delete",
      "aria-label": `Delete ${model.name}`,
      onclick: () => deleteModel(model),
    }),
  );
}

function renderSaved() {
  const trained = state.models.filter((m) => m.source === "trained");
  $("#saved-empty").hidden = trained.length > 0;
  $("#saved-models").replaceChildren(...trained.map(savedItem));
}

export function initSavedModels() {
  on("models", renderSaved);
  on("datasets", renderSaved); // each model's data set name comes from the data set list
}
