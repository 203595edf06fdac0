// ReLU step-through: each value v becomes max(0, v), cell by cell.

import { el } from "./dom.js";
import { fmt } from "./format.js";
import { cellAt, cellCanvas, cellSize, channelScale, drawChannel, outline } from "./map-draw.js";
import { drawOutputProgress } from "./step-conv.js";
import { figure, receipt } from "./step-parts.js";

const isFlat = (ctx) => ctx.outShape.length !== 3;

export const reluView = {
  channels: (ctx) => (isFlat(ctx) ? null : { count: ctx.outShape[2], label: "Channel" }),
  positions: (ctx) => (isFlat(ctx) ? ctx.outShape[0] : ctx.outShape[0] * ctx.outShape[1]),
  query: (ctx, pos) =>
    isFlat(ctx)
      ? { i: pos }
      : { y: Math.floor(pos / ctx.outShape[1]), x: pos % ctx.outShape[1], c: ctx.channel },
  describe: (ctx, pos) =>
    isFlat(ctx) ? `index ${pos}` : `(y=${Math.floor(pos / ctx.outShape[1])}, x=${pos % ctx.outShape[1]})`,

  async mount(root, ctx) {
    const [input, output] = await Promise.all([ctx.inputSource, ctx.outputSource]);
    const c = isFlat(ctx) ? 0 : ctx.channel;
    const px = cellSize(input.H, input.W, 280);
    const inGrid = cellCanvas(el("canvas", { class: "map" }), input.H, input.W, px);
    const outGrid = cellCanvas(el("canvas", { class: "map map-click" }), output.H, output.W, px);
    inGrid.canvas.setAttribute("role", "img");
    outGrid.canvas.setAttribute("role", "img");
    outGrid.canvas.setAttribute("aria-label", "Output map; click a cell to jump to it");
    outGrid.canvas.addEventListener("click", (event) => {
      const cell = cellAt(outGrid, event);
      if (cell) ctx.jump(cell.y * output.W + cell.x);
    });
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
