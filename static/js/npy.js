// Reading the API's raw activations (array_url, NumPy .npy float32) for drawing maps.

import { api } from "./api.js";

/** Parse a little-endian float32 .npy file -> {shape: number[], data: Float32Array}. */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== "NUMPY") throw new Error("Not a .npy file.");
  const view = new DataView(buffer);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder("latin1").decode(
    bytes.subarray(headerStart, headerStart + headerLength),
  );
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1] === "True";
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? "";
  if (descr !== "<f4" || fortran) throw new Error(`Unsupported .npy layout ${descr}.`);
  const shape = shapeText
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)
    .map(Number);
  const data = new Float32Array(buffer.slice(headerStart + headerLength));
  return { shape, data };
}

const cache = new Map();

/** The activation behind array_url, fetched once per URL. */
export function loadArray(url) {
  if (!cache.has(url)) {
    const promise = api.bytes(url).then(parseNpy);
    promise.catch(() => cache.delete(url));
    cache.set(url, promise);
  }
  return cache.get(url);
}

/** Forget cached arrays (a new run replaces them). */
export function clearArrays() {
  cache.clear();
}

/** Min and max of channel c of an [H, W, C] array (or of all of a flat one). */
export function channelRange({ shape, data }, c = 0) {
  const channels = shape.length === 3 ? shape[2] : 1;
  let min = Infinity;
  let max = -Infinity;
  for (let i = shape.length === 3 ? c : 0; i < data.length; i += channels) {
    if (data[i] < min) min = data[i];
    if (data[i] > max) max = data[i];
  }
  return { min, max };
}
