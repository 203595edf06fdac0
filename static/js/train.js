// Stage 5: train the current stack on the server (POST /api/v1/train), follow the job live
// through server-sent events (polling when the stream fails), draw its loss and accuracy, and
// list the models trained here with Load and Delete.

import { $, el } from "./dom.js";
import { api, fetchOk } from "./api.js";
import { currentSpec, emit, on, state } from "./state.js";
import { fmt, int } from "./format.js";
import { loadNetwork } from "./presets.js";
import { runNetwork } from "./run.js";
import { drawAccuracy, drawLoss } from "./train-chart.js";

const BASE = "/api/v1";
const FINAL = new Set(["done", "cancelled", "failed"]);
const POLL_MS = 1000;
/** What each data set's images are and how many classes it has (as the API checks them). */
export const DATASETS = {
  digits: { input: { height: 28, width: 28, channels: 1 }, classes: 10, sample: "digit" },
  shapes: { input: { height: 32, width: 32, channels: 3 }, classes: 5, sample: "shapes" },
};

/** A status with nothing in it yet: the charts' empty frame. */
const EMPTY = { batch_losses: [], history: [], total_steps: 0, epochs: 1 };

let job = null; // the TrainStatus followed, or null
let source = null; // the EventSource following it
let pollTimer = null;

/** The JSON body of a training API call (null for 204 No Content or a body that is not JSON). */
async function call(path, options = {}) {
  const response = await fetchOk(BASE + path, options);
  if (response.status === 204) return null;
  try {
    return await response.json();
  } catch {
    return null;
  }
}

const percent = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);

function showError(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

// ---- does the stack fit? ------------------------------------------------------------------

/** Words saying what stops the current stack from learning `dataset`, or "" when it fits. */
export function misfit(network, dataset) {
  const want = DATASETS[dataset];
  const { height, width, channels } = network.input;
  const problems = [];
  if (height !== want.input.height || width !== want.input.width || channels !== want.input.channels) {
    problems.push(`the input is ${height}×${width}×${channels}, not ${want.input.height}×${want.input.width}×${want.input.channels}`);
  }
  const last = network.layers.at(-1);
  if (!last || last.type !== "dense") problems.push("the last layer is not dense");
  else {
    if (Number(last.units) !== want.classes) problems.push(`the last dense layer has ${last.units} units, not ${want.classes}`);
    if (last.activation !== "softmax") problems.push("the last dense layer has no softmax");
  }
  return problems.join("; ");
}

/** The current stack changed just enough to learn `dataset`: its input, and a last dense layer
 * with one unit per class and softmax (a flatten added in front when the maps are not flat). */
export function fittedStack(network, dataset) {
  const want = DATASETS[dataset];
  const spec = structuredClone(network);
  spec.input = { ...want.input };
  const head = { type: "dense", units: want.classes, activation: "softmax" };
  spec.layers = spec.layers.map((layer) =>
    layer.type === "dense" && layer.activation === "softmax" ? { ...layer, activation: "relu" } : layer,
  );
  const last = spec.layers.at(-1);
  if (last?.type === "dense") spec.layers[spec.layers.length - 1] = { ...last, ...head, weights: undefined, bias: undefined };
  else if (last?.type === "flatten") spec.layers.push(head);
  else spec.layers.push({ type: "flatten" }, head);
  for (const layer of spec.layers) {
    delete layer.weights; // trained weights come from training, not from the stack
    delete layer.bias;
  }
  return spec;
}

function showFit() {
  const dataset = $("#train-dataset").value;
  const problem = misfit(state.network, dataset);
  const note = $("#train-fit");
  note.dataset.fits = String(!problem);
  note.textContent = problem
    ? `The stack does not fit ${dataset} yet: ${problem}.`
    : `The stack fits ${dataset}: it will learn ${DATASETS[dataset].classes} classes.`;
  $("#train-fit-button").disabled = !problem;
  const name = $("#train-name");
  name.placeholder = `my-${dataset}`;
}

// ---- the job ------------------------------------------------------------------------------

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
  showError(error, "");
  const button = $("#train-start");
  button.disabled = true;
  try {
    const started = await call("/train", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody()),
    });
    follow(started.status);
  } catch (failure) {
    const retry = failure.status === 429 ? " (another training job is running)" : "";
    showError(error, `Training did not start${retry}: ${failure.message}`);
    button.disabled = false;
  }
}

function stopFollowing() {
  source?.close();
  source = null;
  clearTimeout(pollTimer);
  pollTimer = null;
}

/** Follow a job: its event stream, or polling when the stream cannot be had. */
function follow(status) {
  stopFollowing();
  show(status);
  if (FINAL.has(status.status)) return;
  const stream = new EventSource(status.events_url);
  source = stream;
  const take = (message) => {
    const next = JSON.parse(message.data);
    if (next.job_id === job?.job_id) show(next);
  };
  stream.addEventListener("progress", take);
  stream.addEventListener("end", (message) => {
    stream.close(); // an EventSource reconnects by itself when a stream closes
    take(message);
  });
  stream.addEventListener("error", () => {
    if (source !== stream) return;
    stream.close();
    source = null;
    if (job && !FINAL.has(job.status)) poll(job.status_url);
  });
}

function poll(url) {
  pollTimer = setTimeout(async () => {
    try {
      show(await call(url.replace(BASE, "")));
    } catch (failure) {
      $("#train-status").textContent = `Lost the job: ${failure.message}`;
      return;
    }
    if (job && !FINAL.has(job.status)) poll(url);
  }, POLL_MS);
}

function statusWords(s) {
  const images =
    s.train_examples < s.available_examples
      ? `${int(s.train_examples)} of ${int(s.available_examples)} training images`
      : `all ${int(s.train_examples)} training images`;
  const scored = `scored on ${int(s.test_examples)} held-out images`;
  if (s.status === "queued") return `Queued: ${images}.`;
  if (s.status === "running") {
    return `Training on ${images}, ${scored}: step ${int(s.step)} of ${int(s.total_steps)}.${speedWords(s)}`;
  }
  if (s.status === "done") {
    return `Finished ${s.epochs} epochs (${int(s.total_steps)} steps) on ${images}, ${scored}.${speedWords(s)}`;
  }
  return s.message || s.status;
}

/** " Last epoch: 540 ms, 7,400 images/s." from the newest epoch; "" before the first. */
function speedWords(s) {
  const last = s.history.at(-1);
  if (!last || !(last.seconds > 0)) return "";
  const perSecond = Math.round(s.train_examples / last.seconds);
  return ` Last epoch: ${duration(last.seconds)}, ${int(perSecond)} images/s.`;
}

/** 0.0004 -> "< 1 ms", 0.54 -> "540 ms", 3.217 -> "3.22 s", 84.31 -> "84.3 s". */
function duration(seconds) {
  if (seconds < 0.0005) return "< 1 ms";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  return `${fmt(seconds, seconds < 10 ? 2 : 1)} s`;
}

function show(status) {
  const first = job?.job_id !== status.job_id;
  const wasFinal = !first && FINAL.has(job.status);
  job = status;
  const live = $(".train-live");
  live.dataset.job = status.job_id;
  live.dataset.status = status.status;
  const bar = $("#train-progress");
  bar.max = Math.max(1, status.total_steps);
  bar.value = status.step;
  $("#train-percent").textContent = `${Math.floor((100 * status.step) / Math.max(1, status.total_steps))}%`;
  $("#train-status").textContent = statusWords(status);
  const last = status.history.at(-1);
  $("#train-epoch").textContent = `${status.epoch} / ${status.epochs}`;
  $("#train-loss").textContent = fmt(status.loss, 4);
  $("#train-acc").textContent = percent(last?.accuracy);
  $("#train-test-acc").textContent = percent(status.final_accuracy ?? last?.test_accuracy);
  drawLoss($("#train-loss-chart"), status);
  drawAccuracy($("#train-acc-chart"), status);
  const running = !FINAL.has(status.status);
  $("#train-running-actions").hidden = !running;
  $("#train-start").disabled = running;
  if (!running && !wasFinal) finished(status);
  else if (running) $("#train-result").hidden = true;
}

async function finished(status) {
  const box = $("#train-result");
  box.replaceChildren();
  box.hidden = false;
  box.dataset.status = status.status;
  if (!status.saved_model) {
    box.append(el("p", { text: status.message || `The job ended: ${status.status}.` }));
    return;
  }
  await refreshModels();
  const model = state.models.find((m) => m.name === status.saved_model);
  box.append(
    el("p", {}, "Saved as ", el("strong", { text: status.saved_model }), ` · test accuracy ${percent(status.final_accuracy)}.`),
    model
      ? el("button", {
          type: "button",
          class: "btn btn-primary btn-small",
          text: `Load “${status.saved_model}” and run it`,
          onclick: () => useModel(model),
        })
      : null,
  );
}

async function cancel(save) {
  if (!job) return;
  try {
    show(await call(`/train/${encodeURIComponent(job.job_id)}/cancel?save=${save}`, { method: "POST" }));
  } catch (failure) {
    showError($("#train-error"), `Could not stop the job: ${failure.message}`);
  }
}

// ---- saved models -------------------------------------------------------------------------

async function refreshModels() {
  try {
    const models = await api.models();
    state.models = Array.isArray(models) ? models : [];
    emit("models");
  } catch (failure) {
    showError($("#saved-error"), `Could not load the models: ${failure.message}`);
  }
}

function datasetOf(model) {
  const { height, width, channels } = model.network.input;
  return Object.keys(DATASETS).find((name) => {
    const want = DATASETS[name].input;
    return want.height === height && want.width === width && want.channels === channels;
  });
}

function useModel(model) {
  const dataset = datasetOf(model);
  loadNetwork(model.network, { model, sample: dataset ? DATASETS[dataset].sample : null });
  $("#stage-activations").scrollIntoView({ behavior: "smooth", block: "start" });
  // With "Re-run on changes" on, the page runs the new stack by itself (as for the examples).
  if (!state.run || !$("#auto-run").checked) runNetwork();
}

async function deleteModel(model) {
  if (!window.confirm(`Delete the trained model “${model.name}”? This cannot be undone.`)) return;
  showError($("#saved-error"), "");
  try {
    await call(`/models/${encodeURIComponent(model.name)}`, { method: "DELETE" });
  } catch (failure) {
    showError($("#saved-error"), `Could not delete ${model.name}: ${failure.message}`);
    return;
  }
  if (state.model?.name === model.name) {
    state.model = null; // the stack stays; runs now use seeded weights
    emit("network");
  }
  await refreshModels();
}

function renderSaved() {
  const trained = state.models.filter((m) => m.source === "trained");
  const list = $("#saved-models");
  $("#saved-empty").hidden = trained.length > 0;
  list.replaceChildren(
    ...trained.map((model) =>
      el(
        "li",
        { class: "saved-model", dataset: { model: model.name } },
        el(
          "div",
          { class: "saved-text" },
          el("strong", { class: "saved-name", text: model.name }),
          el("span", {
            class: "saved-meta",
            text: [datasetOf(model) ?? "custom", model.accuracy === null ? null : `test accuracy ${percent(model.accuracy)}`]
              .filter(Boolean)
              .join(" · "),
          }),
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
      ),
    ),
  );
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
  const most = Number(limits.train_max_examples);
  $("#train-examples-note").textContent = most
    ? `This server trains on at most ${int(most)} images per job.`
    : "Empty: all 4,000 training images (1,000 more are held out for the test accuracy).";
}

export function initTrain() {
  applyTrainLimits();
  $("#train-form").addEventListener("submit", start);
  $("#train-dataset").addEventListener("change", showFit);
  $("#train-fit-button").addEventListener("click", () => {
    const dataset = $("#train-dataset").value;
    loadNetwork(fittedStack(state.network, dataset), { sample: DATASETS[dataset].sample });
  });
  $("#train-stop").addEventListener("click", () => cancel(true));
  $("#train-cancel").addEventListener("click", () => cancel(false));
  on("network", showFit);
  on("models", renderSaved);
  const redraw = () => {
    drawLoss($("#train-loss-chart"), job ?? EMPTY);
    drawAccuracy($("#train-acc-chart"), job ?? EMPTY);
  };
  for (const canvas of [$("#train-loss-chart"), $("#train-acc-chart")]) {
    new ResizeObserver(redraw).observe(canvas);
  }
  showFit();
  // A job started before a reload (or in another tab) is picked up again.
  call("/train")
    .then((jobs) => {
      const active = (jobs ?? []).filter((j) => !FINAL.has(j.status)).at(-1);
      if (active && !job) follow(active);
    })
    .catch(() => {});
}
