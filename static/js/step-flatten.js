// Flatten step-through: where each [y, x, c] cell lands in the vector, i = (y·W + x)·C + c
// (row-major, channel fastest), highlighted on both sides.

import { el } from "./dom.js";
import { fmt } from "./format.js";
import {
  cellCanvas,
  cellSize,
  channelScale,
  drawChannel,
  fillCell,
  gridLines,
  outline,
  valueColor,
} from "./map-draw.js";
import { clickToJump, figure, receipt } from "./step-parts.js";

const MAX_MAPS = 32;

/** Row length for drawing the vector: one input row (W·C cells) per line when that fits. */
function vectorLayout(n, W, C) {
  const rowLength = W * C <= 160 ? W * C : Math.min(96, Math.ceil(Math.sqrt(n * 4)));
  return { rowLength, rows: Math.ceil(n / rowLength) };
}

export const flattenView = {
  channels: () => null,
  positions: (ctx) => ctx.outShape[0],
  query: (ctx, pos) => ({ i: pos }),
  describe: (ctx, pos) => `vector index i=${pos}`,

  async mount(root, ctx) {
    const [input, output] = await Promise.all([ctx.inputSource, ctx.outputSource]);
    const flatInput = ctx.inShape.length !== 3;
    const [H, W, C] = flatInput ? [1, ctx.inShape[0], 1] : ctx.inShape;
    const n = ctx.outShape[0];
    const shown = Math.min(C, MAX_MAPS);
    const mapCell = cellSize(H, W, shown > 8 ? 96 : 150, 2, 28);
    const maps = [];
    const mapNodes = [];
    for (let c = 0; c < shown; c += 1) {
      const grid = cellCanvas(el("canvas", { class: "map map-small" }), H, W, mapCell);
      grid.canvas.setAttribute("role", "img");
      grid.canvas.setAttribute("aria-label", `Input channel ${c}`);
      maps.push({ grid, scale: channelScale(input, c) });
      mapNodes.push(figure(`c = ${c}`, grid.canvas, "map-fig-small").node);
    }
    const layout = vectorLayout(n, W, C);
    const vCell = Math.max(3, Math.min(26, Math.floor(960 / layout.rowLength), Math.floor(420 / layout.rows)));
    const vector = cellCanvas(el("canvas", { class: "map map-click" }), layout.rows, layout.rowLength, vCell);
    clickToJump(vector, ctx, "The flat vector; click a cell to jump to it", (cell) => Math.min(n - 1, cell.y * layout.rowLength + cell.x));
    let vScale = 0;
    for (let i = 0; i < n; i += 1) vScale = Math.max(vScale, Math.abs(output.get(0, i, 0)));

    const formula = el("p", { class: "formula-big", id: "flat-formula" });
    const bill = receipt("flat", [
      ["source", "input cell [y, x, c]"],
      ["index", "vector index i"],
      ["value", "value (copied unchanged)"],
    ]);
    const note =
      layout.rowLength === W * C
        ? `Each line of the vector is one input row y (${W}×${C} = ${W * C} values).`
        : `The vector wraps every ${layout.rowLength} values.`;
    root.replaceChildren(
      el(
        "div",
        { class: "step-stage step-flatten" },
        el(
          "div",
          { class: "flat-input" },
          el("h4", { text: `Input: ${flatInput ? `${n} values` : `${H}×${W}×${C}`}` }),
          el("div", { class: "flat-maps" }, mapNodes),
          C > shown ? el("p", { class: "muted", text: `Showing ${shown} of ${C} channels.` }) : null,
        ),
        el("div", { class: "step-calc" }, formula, bill.node),
        el(
          "div",
          { class: "flat-output" },
          figure(`Output: vector of ${n} values. ${note}`, vector.canvas).node,
        ),
      ),
    );

    return {
      update(pos, data) {
        const [y, x, c] = data.source.length === 3 ? data.source : [0, data.source[0], 0];
        maps.forEach(({ grid, scale }, k) => {
          drawChannel(grid, input, k, { scale });
          if (k === c) outline(grid, y, x, 1, 1, "#4f46e5", Math.max(2, Math.min(3, grid.cell / 4)));
        });
        mapNodes.forEach((node, k) => node.classList.toggle("is-current", k === c));
        for (let i = 0; i < layout.rows * layout.rowLength; i += 1) {
          const r = Math.floor(i / layout.rowLength);
          const s = i % layout.rowLength;
          fillCell(vector, r, s, i < n ? valueColor(output.get(0, i, 0), vScale) : [255, 255, 255]);
        }
        gridLines(vector);
        outline(vector, Math.floor(pos / layout.rowLength), pos % layout.rowLength, 1, 1, "#4f46e5", 2);
        formula.textContent = flatInput
          ? `i = ${pos} (the input is already flat)`
          : `i = (y·W + x)·C + c = (${y}·${W} + ${x})·${C} + ${c} = ${(y * W + x) * C + c}`;
        bill.set("source", `[${y}, ${x}, ${c}]`);
        bill.set("index", String(pos));
        bill.set("value", fmt(data.value));
      },
    };
  },
};
