// Stage 5, the running job: followed live through server-sent events (polling its status when the
// stream fails), kept in state.train for every view, drawn as progress, numbers and curves, with
// Stop and Cancel, and what came of it when it ends.

import { $, el, showAlert } from "./dom.js";
import { api } from "./api.js";
import { emit, on, state } from "./state.js";
import { fmt, int, percent } from "./format.js";
import { drawAccuracy, drawLoss } from "./train-chart.js";
import { refreshModels, useModel } from "./saved-models.js";

const FINAL = new Set(["done", "cancelled", "failed"]);
const POLL_MS = 1000;
/** A status with nothing in it yet: the charts' empty frame. */
const EMPTY = { batch_losses: [], history: [], total_steps: 0, epochs: 1 };

const isFinal = (status) => FINAL.has(status.status);

/** True while the job followed is queued or running. */
export function isRunning() {
  const job = state.train.job;
  return Boolean(job) && !isFinal(job);
}

/** A new status of the job followed (or of one taken up): into state, then "train". */
function take(status) {
  const previous = state.train.job;
  const endedNow = isFinal(status) && !(previous?.job_id === status.job_id && isFinal(previous));
  state.train.job = status;
  emit("train");
  if (endedNow) finished(status);
}

function stopFollowing() {
  const train = state.train;
  train.source?.close();
  train.source = null;
  clearTimeout(train.poll);
  train.poll = null;
}

/** Follow a job from `status` on: its event stream, or polling when the stream cannot be had. */
export function followJob(status) {
  stopFollowing();
  take(status);
  if (isFinal(status)) return;
  const stream = api.trainEvents(status.job_id);
  state.train.source = stream;
  const onEvent = (message) => {
    const next = JSON.parse(message.data);
    if (next.job_id === state.train.job?.job_id) take(next);
  };
  stream.addEventListener("progress", onEvent);
  stream.addEventListener("end", (message) => {
    stream.close(); // an EventSource reconnects by itself when a stream closes
    if (state.train.source === stream) state.train.source = null;
    onEvent(message);
  });
  stream.addEventListener("error", () => {
    if (state.train.source !== stream) return;
    stream.close();
    state.train.source = null;
    if (isRunning()) poll(status.job_id);
  });
}

function poll(jobId) {
  state.train.poll = setTimeout(async () => {
    let next;
    try {
      next = await api.trainJob(jobId);
    } catch (failure) {
      if (state.train.job?.job_id !== jobId) return;
      $("#train-status").textContent = `Lost the job: ${failure.message}`;
      return;
    }
    if (state.train.job?.job_id !== jobId) return; // another job is followed now
    take(next);
    if (isRunning()) poll(jobId);
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

function drawCharts() {
  const status = state.train.job ?? EMPTY;
  drawLoss($("#train-loss-chart"), status);
  drawAccuracy($("#train-acc-chart"), status);
}

function render() {
  const status = state.train.job;
  if (!status) return;
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
  drawCharts();
  const running = !isFinal(status);
  $("#train-running-actions").hidden = !running;
  if (running) $("#train-result").hidden = true;
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
  const job = state.train.job;
  if (!job) return;
  try {
    take(await api.cancelTrain(job.job_id, save));
  } catch (failure) {
    showAlert($("#train-error"), `Could not stop the job: ${failure.message}`);
  }
}

export function initTrainProgress() {
  $("#train-stop").addEventListener("click", () => cancel(true));
  $("#train-cancel").addEventListener("click", () => cancel(false));
  on("train", render);
  for (const canvas of [$("#train-loss-chart"), $("#train-acc-chart")]) {
    new ResizeObserver(drawCharts).observe(canvas);
  }
  // A job started before a reload (or in another tab) is taken up again.
  api
    .trainJobs()
    .then((jobs) => {
      const active = (jobs ?? []).filter((j) => !isFinal(j)).at(-1);
      if (active && !state.train.job) followJob(active);
    })
    .catch(() => {});
}
