// ReLU step-through: each value v becomes max(0, v), cell by cell.

import { el } from "./dom.js";
import { fmt } from "./format.js";
import { cellCanvas, cellSize, channelScale, drawChannel, outline } from "./map-draw.js";
import { drawOutputProgress } from "./step-conv.js";
import { cellWords, clickToJump, figure, mapCells, receipt } from "./step-parts.js";

const isFlat = (ctx) => ctx.outShape.length !== 3;

export const reluView = {
  channels: (ctx) => (isFlat(ctx) ? null : { count: ctx.outShape[2], label: "Channel" }),
  positions: (ctx) => (isFlat(ctx) ? ctx.outShape[0] : mapCells.positions(ctx)),
  query: (ctx, pos) => (isFlat(ctx) ? { i: pos } : mapCells.query(ctx, pos)),
  describe: (ctx, pos) => (isFlat(ctx) ? `index ${pos}` : cellWords(ctx, pos)),

  async mount(root, ctx) {
    const [input, output] = await Promise.all([ctx.inputSource, ctx.outputSource]);
    const c = isFlat(ctx) ? 0 : ctx.channel;
    const px = cellSize(input.H, input.W, 280);
    const inGrid = cellCanvas(el("canvas", { class: "map" }), input.H, input.W, px);
    const outGrid = cellCanvas(el("canvas", { class: "map map-click" }), output.H, output.W, px);
    inGrid.canvas.setAttribute("role", "img");
    clickToJump(outGrid, ctx, "Output map; click a cell to jump to it", (cell) => cell.y * output.W + cell.x);
    const inScale = channelScale(input, c);
    const bill = receipt("relu", [
      ["input", "input v"],
      ["value", "max(0, v)"],
    ]);
    root.replaceChildren(
      el(
        "div",
        { class: "step-stage step-relu" },
        el(
          "div",
          { class: "step-maps" },
          figure(`Input: channel ${c}`, inGrid.canvas).node,
          figure(`Output: channel ${c}`, outGrid.canvas).node,
        ),
        el(
          "div",
          { class: "step-calc" },
          el("p", { class: "muted", text: "Negative values become 0; the rest pass through." }),
          bill.node,
        ),
      ),
    );
    return {
      update(pos, data) {
        const y = Math.floor(pos / output.W);
        const x = pos % output.W;
        drawChannel(inGrid, input, c, {
          scale: inScale,
          numbers: (yy, xx) => (yy === y && xx === x ? fmt(data.input, 2) : null),
        });
        outline(inGrid, y, x, 1, 1, "#4f46e5", 2);
        drawOutputProgress(outGrid, output, c, pos, inScale);
        bill.set("input", fmt(data.input));
        bill.set("value", fmt(data.value));
      },
    };
  },
};
