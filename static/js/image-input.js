// Choosing the input image (samples, upload, drag-and-drop, paste, drawing) and showing it at
// the network's input size, exactly as it will be sent.

import { $, el } from "./dom.js";
import { emit, on, state } from "./state.js";
import { paintSample, SAMPLES } from "./samples.js";
import { initDraw } from "./draw.js";

let previewSize = "";

/** Make `render(w, h) -> canvas` the image; kind and name make the caption. */
export function setImage(kind, name, render) {
  state.image = { kind, name, render };
  showImageError("");
  refreshInput();
  markSelectedSample(kind === "sample" ? name : null);
}

export function useSample(id) {
  const sample = SAMPLES.find((s) => s.id === id) ?? SAMPLES[0];
  setImage("sample", sample.id, (w, h) => paintSample(sample.id, w, h));
}

/** Redraw the network-size input canvas from the current image (grayscale when C = 1). */
export function refreshInput() {
  const { height: H, width: W, channels: C } = state.network.input;
  if (!state.image.render || !(H > 0 && W > 0)) return;
  const source = state.image.render(W, H);
  const canvas = document.createElement("canvas");
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, W, H);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, W, H);
  if (C === 1) toGray(ctx, W, H);
  state.inputCanvas = canvas;
  previewSize = `${H}x${W}x${C}`;

  const preview = $("#input-preview");
  preview.width = W;
  preview.height = H;
  preview.getContext("2d").drawImage(canvas, 0, 0);
  preview.style.aspectRatio = `${W} / ${H}`;
  const label = state.image.kind === "sample" ? sampleName(state.image.name) : state.image.name;
  $("#input-caption").textContent = `${H}×${W}×${C} · ${label}`;
  preview.setAttribute(
    "aria-label",
    `The network's input: ${label}, ${H} by ${W} pixels, ${C === 1 ? "grayscale" : "colour"}`,
  );
  emit("image");
}

/** ITU-R 601 luma, the same weights Pillow uses for "L", written to R, G and B. */
function toGray(ctx, W, H) {
  const pixels = ctx.getImageData(0, 0, W, H);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    const g = Math.round((d[i] * 299 + d[i + 1] * 587 + d[i + 2] * 114) / 1000);
    d[i] = g;
    d[i + 1] = g;
    d[i + 2] = g;
  }
  ctx.putImageData(pixels, 0, 0);
}

/** The input as a PNG blob at the network's input size. */
export function inputBlob() {
  return new Promise((resolve, reject) => {
    state.inputCanvas.toBlob((blob) => {
      if (blob) resolve(blob);
      else reject(new Error("Could not encode the image as PNG."));
    }, "image/png");
  });
}

function sampleName(id) {
  return SAMPLES.find((s) => s.id === id)?.name ?? id;
}

function showImageError(message) {
  const box = $("#image-error");
  box.textContent = message;
  box.hidden = !message;
}

/** Decode a File/Blob and make it the image; errors appear under the image panel. */
async function useFile(file, kind) {
  const name = file.name || "pasted image";
  const maxBytes = Number(state.limits.max_upload_bytes) || 0;
  if (maxBytes && file.size > maxBytes) {
    showImageError(
      `“${name}” is ${(file.size / 1e6).toFixed(1)} MB; the limit is ${(maxBytes / 1e6).toFixed(1)} MB.`,
    );
    return;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    showImageError(`Could not read “${name}” as an image. Try a PNG, JPEG, GIF or WebP file.`);
    return;
  }
  setImage(kind, name, () => bitmap);
}

function markSelectedSample(id) {
  for (const button of document.querySelectorAll("[data-sample]")) {
    button.setAttribute("aria-pressed", String(button.dataset.sample === id));
  }
}

function buildSampleButtons() {
  const list = $("#sample-list");
  for (const sample of SAMPLES) {
    const thumb = paintSample(sample.id, 48, 48);
    thumb.className = "sample-thumb";
    thumb.setAttribute("aria-hidden", "true");
    const button = el(
      "button",
      {
        type: "button",
        class: "sample",
        dataset: { sample: sample.id },
        "aria-pressed": "false",
        title: sample.name,
        onclick: () => useSample(sample.id),
      },
      thumb,
      el("span", { text: sample.name }),
    );
    list.append(button);
  }
}

export function initImageInput() {
  buildSampleButtons();

  const fileInput = $("#image-file");
  fileInput.addEventListener("change", () => {
    const file = fileInput.files?.[0];
    if (file) useFile(file, "upload");
    fileInput.value = "";
  });

  const zone = $("#drop-zone");
  const panel = $("#stage-input");
  panel.addEventListener("dragover", (event) => {
    if (![...(event.dataTransfer?.types ?? [])].includes("Files")) return;
    event.preventDefault();
    zone.classList.add("is-dragging");
  });
  panel.addEventListener("dragleave", (event) => {
    if (!panel.contains(event.relatedTarget)) zone.classList.remove("is-dragging");
  });
  panel.addEventListener("drop", (event) => {
    const file = event.dataTransfer?.files?.[0];
    zone.classList.remove("is-dragging");
    if (!file) return;
    event.preventDefault();
    useFile(file, "dropped");
  });

  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items ?? [])].find((i) => i.type.startsWith("image/"));
    if (!item) return;
    event.preventDefault();
    useFile(item.getAsFile(), "pasted");
  });

  initDraw((canvas) => setImage("drawing", "your drawing", () => canvas));

  // A new input size (or channel count) redraws the same image at the new size.
  on("network", () => {
    const { height, width, channels } = state.network.input;
    if (`${height}x${width}x${channels}` !== previewSize) refreshInput();
  });
}
