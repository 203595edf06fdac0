// Pieces the step-through views share: number matrices, the "receipt" of a computation, and
// captioned canvases.

import { el } from "./dom.js";
import { fmt } from "./format.js";
import { cellAt, css, textOn, valueColor } from "./map-draw.js";

/** An empty rows×cols matrix table with a caption; fill it with fillMatrix. */
export function matrix(id, caption, rows, cols) {
  const body = el("tbody");
  for (let r = 0; r < rows; r += 1) {
    const tr = el("tr");
    for (let c = 0; c < cols; c += 1) tr.append(el("td", { dataset: { r, c } }));
    body.append(tr);
  }
  return el("table", { class: "matrix", id }, el("caption", { text: caption }), body);
}

/**
 * Write valueAt(r, c) into every cell (2 decimals; the full value in the title), tinted on a
 * diverging scale; pick(r, c) marks chosen cells (the max of a pooling window).
 */
export function fillMatrix(table, valueAt, { digits = 2, pick = null } = {}) {
  const cells = [...table.querySelectorAll("td")];
  let scale = 0;
  for (const td of cells) {
    const v = valueAt(Number(td.dataset.r), Number(td.dataset.c));
    if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
  }
  for (const td of cells) {
    const r = Number(td.dataset.r);
    const c = Number(td.dataset.c);
    const v = valueAt(r, c);
    const finite = v !== null && v !== undefined && Number.isFinite(v);
    const rgb = finite ? valueColor(v, scale) : [238, 240, 245];
    td.textContent = finite ? fmt(v, digits) : "pad";
    td.title = finite ? String(v) : "padding";
    td.style.background = css(rgb);
    td.style.color = textOn(rgb);
    td.classList.toggle("is-pick", Boolean(pick?.(r, c)));
  }
}

/** Set a matrix caption. */
export function setCaption(table, text) {
  table.querySelector("caption").textContent = text;
}

/**
 * A "receipt": rows of [id, label] -> <dl>; the returned object sets values with set(id, text)
 * and labels with label(id, text).
 */
export function receipt(id, rows) {
  const list = el("dl", { class: "receipt", id });
  const values = {};
  const labels = {};
  for (const [key, label] of rows) {
    labels[key] = el("dt", { text: label });
    values[key] = el("dd", { id: `${id}-${key}` });
    list.append(el("div", { class: "receipt-row", dataset: { key } }, labels[key], values[key]));
  }
  return {
    node: list,
    set: (key, text) => {
      values[key].textContent = text;
    },
    label: (key, text) => {
      labels[key].textContent = text;
    },
    row: (key) => values[key].parentElement,
  };
}

/** <figure> with a caption above a canvas (or any node). */
export function figure(caption, node, extraClass = "") {
  const cap = el("figcaption", { text: caption });
  return { node: el("figure", { class: `map-fig ${extraClass}`.trim() }, cap, node), caption: cap };
}

/** A map view's steps: the output cells in raster order, on the chosen channel. */
export const mapCells = {
  positions: (ctx) => ctx.outShape[0] * ctx.outShape[1],
  query: (ctx, pos) => ({
    y: Math.floor(pos / ctx.outShape[1]),
    x: pos % ctx.outShape[1],
    c: ctx.channel,
  }),
};

/** "(y=…, x=…)": where step pos of a map view is on the output map. */
export function cellWords(ctx, pos) {
  return `(y=${Math.floor(pos / ctx.outShape[1])}, x=${pos % ctx.outShape[1]})`;
}

/** Make a grid's canvas an image (named label) whose clicked cell jumps to step toPos(cell). */
export function clickToJump(grid, ctx, label, toPos) {
  grid.canvas.setAttribute("role", "img");
  grid.canvas.setAttribute("aria-label", label);
  grid.canvas.addEventListener("click", (event) => {
    const cell = cellAt(grid, event);
    if (cell) ctx.jump(toPos(cell));
  });
}

/** "R", "G", "B" for the input image's channels, else the channel number. */
export function channelName(ctx, c) {
  return ctx.index === 0 && ctx.inShape[2] === 3 ? "RGB"[c] : String(c);
}
