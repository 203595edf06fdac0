// Backward mode: "Take one step". POST /runs/{id}/step moves every weight against its gradient;
// the reply is a new run of the same image, which the page then shows everywhere (its maps
// redone), with the loss and the probabilities before and after side by side and the loss of
// each step so far on a small chart.

import { $, el, showAlert } from "./dom.js";
import { api } from "./api.js";
import { emit, on, state } from "./state.js";
import { sig } from "./format.js";
import { probChart } from "./prob-chart.js";
import { drawSeries } from "./train-chart.js";

let busy = false;

function maxRate() {
  return Number(state.limits.train_max_learning_rate) || 1;
}

function learningRate() {
  const value = Number($("#sgd-lr").value);
  const top = maxRate();
  if (!(value > 0) || value > top) {
    throw new Error(`The learning rate must be above 0 and at most ${top} (the server's limit).`);
  }
  return value;
}

async function takeStep() {
  const run = state.run;
  const b = state.backward;
  const reply = b.gradients;
  if (!run || !reply || busy) return;
  let rate;
  try {
    rate = learningRate();
  } catch (error) {
    showAlert($("#sgd-error"), error.message);
    $("#sgd-lr").setAttribute("aria-invalid", "true");
    return;
  }
  $("#sgd-lr").removeAttribute("aria-invalid");
  busy = true;
  $("#sgd-step").disabled = true;
  $("#sgd-status").textContent = "Stepping…";
  try {
    const next = await api.step(run.run_id, { target: reply.target, learning_rate: rate, loss: reply.loss });
    if (b.history.at(-1)?.run_id !== run.run_id) b.history = [{ run_id: run.run_id, loss: next.loss_before }];
    b.history.push({ run_id: next.run_id, loss: next.loss_after });
    b.before = { run, loss: next.loss_before };
    showAlert($("#sgd-error"), "");
    $("#sgd-status").textContent = "";
    state.run = {
      ...next,
      network: run.network,
      labels: run.labels,
      inputPixels: run.inputPixels,
      modelName: run.modelName,
      imageLabel: run.imageLabel,
    };
    emit("run");
  } catch (error) {
    $("#sgd-status").textContent = "";
    showAlert($("#sgd-error"), `The step failed: ${error.message}`);
  } finally {
    busy = false;
    $("#sgd-step").disabled = !state.backward.gradients;
  }
}

function side(title, run, loss, target, id) {
  const probs = run.output?.probabilities;
  return el(
    "div",
    { class: "sgd-side", id },
    el("h3", { text: title }),
    el("p", { class: "sgd-loss" }, "L = ", el("strong", { id: `${id}-loss`, text: sig(loss) })),
    probs ? probChart(probs, run.labels, { highlight: target, id: `${id}-probs` }) : null,
  );
}

/** Before and after the last step, side by side (nothing before the first step). */
function showCompare() {
  const b = state.backward;
  const run = state.run;
  const box = $("#sgd-compare");
  const after = b.history.at(-1);
  if (!b.before || !run || run.previous_run_id !== b.before.run.run_id || after?.run_id !== run.run_id) {
    box.replaceChildren();
    delete box.dataset.shown;
    return;
  }
  const fell = after.loss < b.before.loss;
  box.replaceChildren(
    el(
      "p",
      { class: `sgd-verdict ${fell ? "is-down" : "is-up"}`, id: "sgd-verdict" },
      `Step ${b.history.length - 1}: L went ${fell ? "down" : "up"}, ${sig(b.before.loss)} → ${sig(after.loss)}`,
      fell ? "" : " (try a smaller learning rate)",
    ),
    el(
      "div",
      { class: "sgd-sides" },
      side(`Before · run ${b.before.run.run_id.slice(0, 8)}`, b.before.run, b.before.loss, run.target, "sgd-before"),
      side(`After one step · run ${run.run_id.slice(0, 8)}`, run, after.loss, run.target, "sgd-after"),
    ),
  );
  box.dataset.shown = run.run_id;
}

function drawChart() {
  if (state.mode !== "backward") return;
  const canvas = $("#sgd-chart");
  const losses = state.backward.history.map((h) => h.loss);
  if (losses.length < 2) canvas.setAttribute("aria-label", "Loss per step: no step yet");
  drawSeries(canvas, losses, {
    waiting: "take a step to see the loss move",
    describe: (v) => `Loss over ${v.length - 1} steps: from ${sig(v[0])} to ${sig(v.at(-1))}`,
  });
}

export function initSgdStep() {
  const top = maxRate();
  $("#sgd-lr").max = String(top);
  $("#sgd-lr-note").textContent = `Above 0, at most ${top}. Start small: 0.001 moves an untrained network a little at a time.`;
  $("#sgd-step").addEventListener("click", takeStep);
  on("gradients", () => {
    $("#sgd-step").disabled = busy || !state.backward.gradients;
    showCompare();
    drawChart();
  });
  on("mode", drawChart);
  window.addEventListener("resize", drawChart);
}
