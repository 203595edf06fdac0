// Stage 3, input card: after a run whose network ends in softmax, show which pixels a class
// score depends on — the gradient saliency map or Grad-CAM — laid over the input image.

import { $, el, field, select } from "./dom.js";
import { api } from "./api.js";
import { on, state } from "./state.js";

/** What the map shows, in words; layer is the Grad-CAM layer the server used. */
function words(mode, label, layer) {
  if (mode === "saliency") {
    return `Saliency for “${label}”: how strongly its score (before softmax) changes with each pixel (the gradient's size); the more colour, the more it matters.`;
  }
  const maps = `the maps of layer ${layer} (the last conv layer, after its ReLU)`;
  if (mode === "hirescam") {
    return `HiResCAM for “${label}”: ${maps}, each position times its own gradient, resized to the input; colour marks where the score comes from.`;
  }
  return `Grad-CAM for “${label}”: ${maps} weighed by their average gradient, resized to the input; colour marks the evidence.`;
}

const NAMES = { saliency: "Saliency", gradcam: "Grad-CAM", hirescam: "HiResCAM" };

let objectUrl = null;
let token = 0;

async function showMap(run, card) {
  const mode = $("#explain-mode", card).value;
  const target = $("#explain-target", card).value;
  const canvas = $("canvas.act-input", card);
  const image = $("img.explain-map", card);
  const note = $("#explain-note", card);
  const mine = ++token;
  if (!mode) {
    image.hidden = true;
    canvas.hidden = false;
    note.textContent = "";
    card.dataset.explain = "";
    return;
  }
  note.textContent = "Computing…";
  try {
    const { blob, layer, peak } = await api.explainMap(run.run_id, mode, target);
    if (mine !== token || state.run !== run) return;
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(blob);
    image.src = objectUrl;
    const label = run.labels[Number(target)] ?? `class ${target}`;
    image.alt = `${NAMES[mode]} of “${label}” over the input image`;
    image.hidden = false;
    canvas.hidden = true;
    note.textContent =
      peak === 0
        ? `${NAMES[mode]} is zero everywhere for “${label}”${
            mode === "gradcam"
              ? `: the averaged gradients of layer ${layer} weigh its maps down to nothing. HiResCAM does not average; try it.`
              : ": nothing here raises its score."
          }`
        : words(mode, label, layer);
    card.dataset.explain = `${mode}/${target}`;
  } catch (error) {
    if (mine !== token) return;
    image.hidden = true;
    canvas.hidden = false;
    note.textContent = error.message;
    card.dataset.explain = "error";
  }
}

function addControls() {
  const run = state.run;
  const card = $("#layer-results .act-card-input");
  const probs = run?.output?.probabilities;
  if (!card || !Array.isArray(probs)) return;
  const order = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
  const targets = order.map(([p, i]) => [i, `${run.labels[i] ?? `class ${i}`} (${(100 * p).toFixed(1)}%)`]);
  const mode = select(
    [
      ["", "Image"],
      ["saliency", "Saliency"],
      ["gradcam", "Grad-CAM"],
      ["hirescam", "HiResCAM"],
    ],
    "",
    { id: "explain-mode" },
  );
  const target = select(targets, order[0][1], { id: "explain-target" });
  const redraw = () => showMap(run, card);
  mode.addEventListener("change", redraw);
  target.addEventListener("change", redraw);
  const figure = $(".act-figure", card);
  figure.append(el("img", { class: "act-input explain-map", alt: "", hidden: true }));
  card.append(
    el(
      "div",
      { class: "explain-controls", role: "group", "aria-label": "Explain the prediction" },
      field("Show", mode),
      field("Class", target),
    ),
    el("p", { id: "explain-note", class: "explain-note", "aria-live": "polite" }),
  );
}

export function initSaliency() {
  on("run", addControls);
}
