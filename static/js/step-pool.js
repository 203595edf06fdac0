// Pooling step-through: the window over one channel, its values, and the chosen maximum or the
// average. Global pooling is the same with one window covering the whole map, per channel.

import { el } from "./dom.js";
import { fmt, plural } from "./format.js";
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
import { drawOutputProgress, NOT_YET } from "./step-conv.js";
import { cellWords, clickToJump, figure, fillMatrix, mapCells, matrix, receipt } from "./step-parts.js";

const MAX_TABLE_CELLS = 144;

function finiteValues(windowValues) {
  return windowValues.flat().filter((v) => v !== null && Number.isFinite(v));
}

function describeOp(kind, windowValues, value) {
  const values = windowValues.flat();
  if (kind === "max") return `max of ${plural(values.length, "value")} = ${fmt(value)}`;
  const sum = finiteValues(windowValues).reduce((a, b) => a + b, 0);
  return `(${fmt(sum)}) ÷ ${values.length} = ${fmt(value)}`;
}

function mountPool(root, ctx, { global }) {
  return Promise.all([ctx.inputSource, ctx.outputSource]).then(([input, output]) => {
    const kind = ctx.type.includes("max") ? "max" : "avg";
    const F = global ? input.H : ctx.spec.size;
    const Fw = global ? input.W : ctx.spec.size;
    const S = global ? null : (ctx.spec.stride ?? ctx.spec.size);
    const P = global ? 0 : (Number(ctx.spec.padding) || 0);
    const rows = input.H + 2 * P;
    const cols = input.W + 2 * P;
    const inGrid = cellCanvas(el("canvas", { class: "map" }), rows, cols, cellSize(rows, cols, 340));
    const [Ho, Wo, C] = ctx.outShape;
    const outRows = global ? 1 : Ho;
    const outCols = global ? C : Wo;
    const outGrid = cellCanvas(
      el("canvas", { class: "map map-click" }),
      outRows,
      outCols,
      cellSize(outRows, outCols, global ? 560 : 260, 3, 40),
    );
    clickToJump(outGrid, ctx, "Output map; click a cell to jump to it", (cell) => (global ? cell.x : cell.y * Wo + cell.x));
    inGrid.canvas.setAttribute("role", "img");

    // A global window already shows its numbers on the map when the cells are big enough.
    const showTable = F * Fw <= MAX_TABLE_CELLS && !(global && inGrid.cell >= 22);
    const table = showTable ? matrix("pool-window", "Window values", F, Fw) : null;
    const bill = receipt("pool", [
      ["op", kind === "max" ? "the largest value" : "the average (padding counts as 0)"],
      ["value", "output value"],
    ]);
    const inFig = figure(
      global
        ? `Input: the whole map is one window`
        : `Input: channel ${ctx.channel}${P ? `, padded by ${P}` : ""} · ${F}×${F} window, stride ${S}`,
      inGrid.canvas,
    );
    const outFig = figure(
      global ? `Output: one value per channel (1×1×${C})` : `Output: channel ${ctx.channel}, ${Ho}×${Wo}`,
      outGrid.canvas,
    );
    root.replaceChildren(
      el(
        "div",
        { class: `step-stage step-pool` },
        el("div", { class: "step-maps" }, inFig.node, outFig.node),
        el(
          "div",
          { class: "step-calc" },
          table ??
            el("p", {
              class: "muted",
              text:
                F * Fw > MAX_TABLE_CELLS
                  ? `The window holds ${F * Fw} values, too many to list.`
                  : "The window's values are written on the map.",
            }),
          bill.node,
        ),
      ),
    );
    const outScale = global ? 0 : channelScale(output, ctx.channel);
    let globalScale = 0;
    if (global) {
      for (let c = 0; c < C; c += 1) globalScale = Math.max(globalScale, channelScale(output, c));
    }

    return {
      update(pos, data) {
        const c = global ? pos : ctx.channel;
        const { top, left } = data.window ?? { top: 0, left: 0 };
        const wv = data.window_values;
        const pick = (r, s) => kind === "max" && wv[r]?.[s] === data.value;
        drawChannel(inGrid, input, c, {
          pad: P,
          numbers: (y, x) => {
            const r = y - top;
            const s = x - left;
            return r >= 0 && s >= 0 && r < wv.length && s < wv[0].length ? fmt(wv[r][s], 2) : null;
          },
        });
        outline(inGrid, top + P, left + P, wv.length, wv[0].length, "#4f46e5", 3);
        if (kind === "max") {
          wv.forEach((row, r) =>
            row.forEach((v, s) => {
              if (v === data.value) outline(inGrid, top + P + r, left + P + s, 1, 1, "#16a34a", 2);
            }),
          );
        }
        if (global) {
          for (let x = 0; x < C; x += 1) {
            fillCell(outGrid, 0, x, x <= pos ? valueColor(output.get(0, 0, x), globalScale) : NOT_YET);
          }
          gridLines(outGrid);
          outline(outGrid, 0, pos, 1, 1, "#4f46e5", 2);
        } else {
          drawOutputProgress(outGrid, output, c, pos, outScale);
        }
        if (table) fillMatrix(table, (r, s) => wv[r][s], { pick });
        bill.set("op", describeOp(kind, wv, data.value));
        bill.set("value", fmt(data.value));
        const y = global ? 0 : Math.floor(pos / Wo);
        const x = global ? 0 : pos % Wo;
        bill.label("value", `= output[${y}, ${x}, ${c}]`);
      },
    };
  });
}

export const poolView = {
  channels: (ctx) => ({ count: ctx.outShape[2], label: "Channel" }),
  ...mapCells,
  describe: (ctx, pos) => `output ${cellWords(ctx, pos)}, channel ${ctx.channel}`,
  mount: (root, ctx) => mountPool(root, ctx, { global: false }),
};

export const globalPoolView = {
  channels: () => null,
  positions: (ctx) => ctx.outShape[2],
  query: (ctx, pos) => ({ y: 0, x: 0, c: pos }),
  describe: (ctx, pos) => `channel ${pos}`,
  mount: (root, ctx) => mountPool(root, ctx, { global: true }),
};
