// The training charts: loss per batch (with the test loss per epoch) and accuracy per epoch, drawn
// on a <canvas> over the job's steps, and the loss of the Backward mode's single steps. Colours
// come from the canvas's CSS custom properties.

import { fmt } from "./format.js";

const PAD = { left: 44, right: 10, top: 10, bottom: 22 };

function colours(canvas) {
  const style = getComputedStyle(canvas);
  const get = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
  return {
    axis: get("--chart-axis", "#556074"),
    grid: get("--chart-grid", "#e5e8f0"),
    batch: get("--chart-batch", "#4f46e5"),
    train: get("--chart-train", "#4f46e5"),
    test: get("--chart-test", "#c2410c"),
    font: `11px ${get("--mono", "monospace")}`,
  };
}

/** A 2D context sized to the canvas's CSS box at the device's pixel ratio; (ctx, w, h). */
function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(120, canvas.clientWidth);
  const h = Math.max(80, canvas.clientHeight);
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

/** Axes with y ticks from bottom (default 0) to top; returns (x, y) mapping step and value to pixels. */
function frame(ctx, w, h, c, { steps, top, bottom = 0, ticks, label }) {
  const x = (step) => PAD.left + (step / Math.max(1, steps)) * (w - PAD.left - PAD.right);
  const y = (v) => h - PAD.bottom - ((v - bottom) / (top - bottom)) * (h - PAD.top - PAD.bottom);
  ctx.font = c.font;
  ctx.lineWidth = 1;
  ctx.textBaseline = "middle";
  ctx.textAlign = "right";
  for (let i = 0; i <= ticks; i += 1) {
    const v = bottom + ((top - bottom) * i) / ticks;
    ctx.strokeStyle = c.grid;
    ctx.beginPath();
    ctx.moveTo(PAD.left, Math.round(y(v)) + 0.5);
    ctx.lineTo(w - PAD.right, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.fillStyle = c.axis;
    ctx.fillText(label(v), PAD.left - 6, y(v));
  }
  ctx.textAlign = "left";
  ctx.textBaseline = "alphabetic";
  ctx.fillText("step 0", PAD.left, h - 6);
  ctx.textAlign = "right";
  ctx.fillText(String(steps), w - PAD.right, h - 6);
  return { x, y };
}

function line(ctx, points, colour, width) {
  if (!points.length) return;
  ctx.strokeStyle = colour;
  ctx.lineWidth = width;
  ctx.lineJoin = "round";
  ctx.beginPath();
  points.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
  ctx.stroke();
}

function dots(ctx, points, colour) {
  ctx.fillStyle = colour;
  for (const [px, py] of points) {
    ctx.beginPath();
    ctx.arc(px, py, 3, 0, 2 * Math.PI);
    ctx.fill();
  }
}

function waiting(ctx, w, h, c, text) {
  ctx.fillStyle = c.axis;
  ctx.font = c.font;
  ctx.textAlign = "center";
  ctx.fillText(text, (PAD.left + w - PAD.right) / 2, (h - PAD.bottom) / 2);
}

/** Step at the end of each epoch. */
function epochSteps(status) {
  const perEpoch = status.total_steps / Math.max(1, status.epochs);
  return status.history.map((e) => Math.round(e.epoch * perEpoch));
}

/** Batch losses as a line, the test loss after each epoch as dots. */
export function drawLoss(canvas, status) {
  const c = colours(canvas);
  const { ctx, w, h } = prepare(canvas);
  const batches = status.batch_losses;
  const tests = status.history.map((e) => e.test_loss).filter((v) => v !== null);
  const top = Math.max(1e-6, ...batches.map(([, v]) => v), ...tests) * 1.05;
  // Before the first loss there is no scale to label; a small loss gets enough decimals that
  // its ticks differ (0.01, 0.02, ... rather than 0.00 four times).
  const decimals = Math.min(6, Math.max(2, 1 - Math.floor(Math.log10(top / 4))));
  const label = batches.length || tests.length ? (v) => fmt(v, decimals) : () => "";
  const { x, y } = frame(ctx, w, h, c, { steps: status.total_steps, top, ticks: 4, label });
  const ends = epochSteps(status);
  line(ctx, batches.map(([s, v]) => [x(s), y(v)]), c.batch, 1.5);
  const testPoints = status.history
    .map((e, i) => (e.test_loss === null ? null : [x(ends[i]), y(e.test_loss)]))
    .filter(Boolean);
  line(ctx, testPoints, c.test, 1.5);
  dots(ctx, testPoints, c.test);
  if (!batches.length) waiting(ctx, w, h, c, "waiting for the first batch…");
  canvas.dataset.points = String(batches.length);
  const last = batches.at(-1);
  canvas.setAttribute(
    "aria-label",
    last ? `Loss over ${batches.length} batch samples, last ${fmt(last[1], 3)}` : "Loss: no batch yet",
  );
}

/** Train and test accuracy after each epoch, 0 to 100%. */
export function drawAccuracy(canvas, status) {
  const c = colours(canvas);
  const { ctx, w, h } = prepare(canvas);
  const { x, y } = frame(ctx, w, h, c, {
    steps: status.total_steps,
    top: 1,
    ticks: 4,
    label: (v) => `${Math.round(v * 100)}%`,
  });
  const ends = epochSteps(status);
  const train = status.history.map((e, i) => [x(ends[i]), y(e.accuracy)]);
  const test = status.history
    .map((e, i) => (e.test_accuracy === null ? null : [x(ends[i]), y(e.test_accuracy)]))
    .filter(Boolean);
  line(ctx, train, c.train, 1.5);
  dots(ctx, train, c.train);
  line(ctx, test, c.test, 1.5);
  dots(ctx, test, c.test);
  if (!status.history.length) waiting(ctx, w, h, c, "measured after each epoch");
  canvas.dataset.points = String(status.history.length);
  const last = status.history.at(-1);
  canvas.setAttribute(
    "aria-label",
    last
      ? `Accuracy after ${last.epoch} epochs: train ${Math.round(last.accuracy * 100)}%, test ${last.test_accuracy === null ? "–" : Math.round(last.test_accuracy * 100)}%`
      : "Accuracy: no epoch finished yet",
  );
}

/**
 * One value per step as a line with a dot per value, values[0] at step 0 (the Backward mode's
 * loss per gradient-descent step, a feature visualisation's objective per ascent step). The y
 * axis starts at 0, or below it for negative values. waiting: the words while there are fewer
 * than two values; describe(values): the canvas's accessible name once there are.
 */
export function drawSeries(canvas, values, { waiting: note = "", describe = () => "" } = {}) {
  const c = colours(canvas);
  const { ctx, w, h } = prepare(canvas);
  const hi = Math.max(0, ...values);
  const lo = Math.min(0, ...values);
  const pad = Math.max(1e-6, hi - lo) * 0.05;
  const top = hi + pad;
  const bottom = lo < 0 ? lo - pad : 0;
  const decimals = Math.min(6, Math.max(2, 1 - Math.floor(Math.log10((top - bottom) / 4))));
  const steps = Math.max(1, values.length - 1);
  const label = values.length ? (v) => fmt(v, decimals) : () => "";
  const { x, y } = frame(ctx, w, h, c, { steps, top, bottom, ticks: 4, label });
  const points = values.map((v, i) => [x(i), y(v)]);
  line(ctx, points, c.batch, 1.5);
  if (points.length <= 40) dots(ctx, points, c.batch);
  if (values.length < 2) waiting(ctx, w, h, c, note);
  canvas.dataset.points = String(values.length);
  if (values.length > 1) canvas.setAttribute("aria-label", describe(values));
}
