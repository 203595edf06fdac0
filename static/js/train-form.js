// Stage 5, the settings: which of the server's data sets to learn, whether the stack fits it (and
// a button that makes it fit), the training knobs within the server's limits, and Start.

import { $, el, showAlert } from "./dom.js";
import { api } from "./api.js";
import { currentSpec, on, state } from "./state.js";
import { int } from "./format.js";
import { loadNetwork } from "./presets.js";
import { datasetNamed, datasetOption, datasetSizes, fittedStack, misfit } from "./datasets.js";
import { followJob, isRunning } from "./train-progress.js";

const chosen = () => datasetNamed($("#train-dataset").value);

function fillPicker() {
  const picker = $("#train-dataset");
  const before = picker.value;
  const option = (d) => el("option", { value: d.name, text: datasetOption(d) });
  picker.replaceChildren(...state.datasets.map(option));
  if (datasetNamed(before)) picker.value = before;
  showDataset();
}

function showFit() {
  const dataset = chosen();
  const note = $("#train-fit");
  const button = $("#train-fit-button");
  if (!dataset) {
    note.dataset.fits = "false";
    note.textContent = "The server has named no data set to train on yet.";
    button.disabled = true;
    return;
  }
  const problem = misfit(state.network, dataset);
  note.dataset.fits = String(!problem);
  const what = `${dataset.name} (${datasetSizes(dataset)})`;
  note.textContent = problem ? `The stack does not fit ${what} yet: ${problem}.` : `The stack fits ${what}.`;
  button.disabled = !problem;
  $("#train-name").placeholder = `my-${dataset.name}`;
}

/** "Images per class: circle: 1,000 · square: 1,000 · ...", as the server counted them. */
function classWords(dataset) {
  // A no-break space keeps each name with its count when the line wraps.
  const each = dataset.classes.map((name, i) => `${name}:\u00a0${int(dataset.counts?.[i] ?? 0)}`);
  return `Images per class: ${each.join(" · ")}`;
}

/** The data set's description and sizes, and how many of its images a job may use. */
function showDataset() {
  const dataset = chosen();
  $("#train-dataset-about").hidden = !dataset;
  $("#train-dataset-note").textContent = dataset?.description ?? "";
  $("#train-dataset-classes").textContent = dataset ? classWords(dataset) : "";
  const most = Number(state.limits?.train_max_examples);
  const held = dataset ? ` (${int(dataset.test)} more are held out for the test accuracy)` : "";
  $("#train-examples-note").textContent = most
    ? `This server trains on at most ${int(most)} images per job.`
    : dataset
      ? `Empty: all ${int(dataset.train)} training images${held}.`
      : "";
  showFit();
}

function applyTrainLimits() {
  const limits = state.limits ?? {};
  const set = (id, key) => {
    if (Number(limits[key])) $(id).max = String(limits[key]);
  };
  set("#train-epochs", "train_max_epochs");
  set("#train-batch", "train_max_batch_size");
  set("#train-lr", "train_max_learning_rate");
  set("#train-examples", "train_max_examples");
}

function requestBody() {
  const number = (id) => Number($(id).value);
  const body = {
    network: currentSpec(),
    dataset: $("#train-dataset").value,
    epochs: number("#train-epochs"),
    batch_size: number("#train-batch"),
    learning_rate: number("#train-lr"),
    optimizer: $("#train-optimizer").value,
    seed: Number(state.network.seed) || 0,
  };
  const examples = $("#train-examples").value.trim();
  if (examples) body.max_examples = Number(examples);
  const name = $("#train-name").value.trim();
  if (name) body.name = name;
  return body;
}

async function start(event) {
  event.preventDefault();
  const error = $("#train-error");
  showAlert(error, "");
  const button = $("#train-start");
  button.disabled = true;
  try {
    const started = await api.train(requestBody());
    followJob(started.status);
  } catch (failure) {
    const retry = failure.status === 429 ? " (another training job is running)" : "";
    showAlert(error, `Training did not start${retry}: ${failure.message}`);
    button.disabled = isRunning();
  }
}

export function initTrainForm() {
  applyTrainLimits();
  $("#train-form").addEventListener("submit", start);
  $("#train-dataset").addEventListener("change", showDataset);
  $("#train-fit-button").addEventListener("click", () => {
    const dataset = chosen();
    if (dataset) loadNetwork(fittedStack(state.network, dataset), { sample: dataset.sample });
  });
  on("network", showFit);
  on("datasets", fillPicker);
  on("train", () => ($("#train-start").disabled = isRunning()));
  fillPicker();
}
