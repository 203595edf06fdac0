// One channel enlarged (channel_url, pixelated) with its colour scale and min/max.
//
// The server chooses the colour map; we do not assume one. The legend is read back from the
// image itself: for evenly spaced values between the channel's min and max (from array_url),
// the colour of the pixel holding the nearest value.

import { $ } from "./dom.js";
import { state } from "./state.js";
import { fmt, shapeText } from "./format.js";
import { channelRange, loadArray } from "./npy.js";
import { runLayerTitle } from "./run-info.js";

let current = { layer: 0, channel: 0 };
let opener = null;
let token = 0;

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("The channel image could not be loaded."));
    img.src = url;
  });
}

function drawScale(img, array, c, range) {
  const canvas = $("#channel-scale");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const [H, W, C] = array.shape;
  if (img.naturalWidth !== W || img.naturalHeight !== H) {
    canvas.hidden = true;
    return;
  }
  canvas.hidden = false;
  const probe = document.createElement("canvas");
  probe.width = W;
  probe.height = H;
  const pctx = probe.getContext("2d", { willReadFrequently: true });
  pctx.drawImage(img, 0, 0);
  const pixels = pctx.getImageData(0, 0, W, H).data;
  const stops = 12;
  const gradient = ctx.createLinearGradient(0, 0, canvas.width, 0);
  for (let k = 0; k < stops; k += 1) {
    const target = range.min + ((range.max - range.min) * k) / (stops - 1);
    let best = 0;
    let bestGap = Infinity;
    for (let p = 0; p < H * W; p += 1) {
      const gap = Math.abs(array.data[p * C + c] - target);
      if (gap < bestGap) {
        bestGap = gap;
        best = p;
      }
    }
    const o = best * 4;
    gradient.addColorStop(k / (stops - 1), `rgb(${pixels[o]}, ${pixels[o + 1]}, ${pixels[o + 2]})`);
  }
  ctx.fillStyle = gradient;
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}

async function show(layerIndex, c) {
  const run = state.run;
  const layer = run.layers[layerIndex];
  const count = layer.output_shape[2];
  current = { layer: layerIndex, channel: c };
  const mine = ++token;
  const [H, W] = layer.output_shape;
  $("#channel-title").textContent = `Layer ${layerIndex} · ${runLayerTitle(run, layerIndex)}`;
  $("#channel-sub").textContent = `Channel ${c} of ${count} · ${shapeText([H, W])} feature map`;
  const url = layer.channel_url.replace("{c}", String(c));
  const image = $("#channel-image");
  image.src = url;
  image.alt = `Layer ${layerIndex}, channel ${c}, ${H} by ${W}`;
  $("#channel-prev").disabled = c === 0;
  $("#channel-next").disabled = c >= count - 1;
  $("#channel-min").textContent = "…";
  $("#channel-max").textContent = "…";
  $("#channel-error").hidden = true;
  try {
    const [img, array] = await Promise.all([loadImage(url), loadArray(layer.array_url)]);
    if (mine !== token) return;
    const range = channelRange(array, c);
    $("#channel-min").textContent = fmt(range.min);
    $("#channel-max").textContent = fmt(range.max);
    drawScale(img, array, c, range);
  } catch (error) {
    if (mine !== token) return;
    $("#channel-error").textContent = error.message;
    $("#channel-error").hidden = false;
  }
}

/** Open the dialog on channel c of layer i; focus returns to `from` on close. */
export function openChannel(layerIndex, c, from = null) {
  opener = from;
  const dialog = $("#channel-dialog");
  show(layerIndex, c);
  if (!dialog.open) dialog.showModal();
}

export function initChannelView() {
  const dialog = $("#channel-dialog");
  $("#channel-close").addEventListener("click", () => dialog.close());
  $("#channel-prev").addEventListener("click", () => show(current.layer, current.channel - 1));
  $("#channel-next").addEventListener("click", () => show(current.layer, current.channel + 1));
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.addEventListener("close", () => {
    const target = document.querySelector(
      `.chan[data-layer="${current.layer}"][data-channel="${current.channel}"]`,
    );
    // After the browser's own focus restore (to the opener), move on to the channel last shown.
    setTimeout(() => (target ?? opener)?.focus(), 0);
  });
}
