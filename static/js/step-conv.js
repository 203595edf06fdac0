// Convolution step-through: the F×F×C kernel window sliding over the (zero-padded) input with
// the layer's stride; the patch, the kernel, their products and the sum + bias = pre-activation,
// then ReLU (or nothing) = the output value, which fills in on the output map.

import { el } from "./dom.js";
import { fmt, paddingCells, plural } from "./format.js";
import {
  cellCanvas,
  cellSize,
  cellText,
  channelScale,
  drawChannel,
  fillCell,
  gridLines,
  outline,
  valueColor,
} from "./map-draw.js";
import {
  cellWords,
  channelName,
  clickToJump,
  figure,
  fillMatrix,
  mapCells,
  matrix,
  receipt,
  setCaption,
} from "./step-parts.js";

/** Colour of output cells not computed yet (darker than a zero, which is near-white). */
export const NOT_YET = [214, 219, 228];

/** Draw channel c of an output map with cells 0..upto (raster order) filled, the rest blank. */
export function drawOutputProgress(grid, source, c, upto, scale) {
  for (let y = 0; y < source.H; y += 1) {
    for (let x = 0; x < source.W; x += 1) {
      const index = y * source.W + x;
      if (index <= upto) {
        const rgb = valueColor(source.get(y, x, c), scale);
        fillCell(grid, y, x, rgb);
        if (index === upto && grid.cell >= 22) cellText(grid, y, x, fmt(source.get(y, x, c), 2), rgb);
      } else fillCell(grid, y, x, NOT_YET);
    }
  }
  gridLines(grid);
  const y = Math.floor(upto / source.W);
  outline(grid, y, upto % source.W, 1, 1, "#4f46e5", Math.max(2, Math.min(3, grid.cell / 6)));
}

export const convView = {
  channels: (ctx) => ({ count: ctx.outShape[2], label: "Filter" }),
  inChannels: (ctx) => ctx.inShape[2],
  ...mapCells,
  describe: (ctx, pos) => `output ${cellWords(ctx, pos)}, filter ${ctx.channel}`,

  async mount(root, ctx) {
    const [input, output] = await Promise.all([ctx.inputSource, ctx.outputSource]);
    const F = ctx.spec.kernel_size;
    const S = ctx.spec.stride ?? 1;
    const P = paddingCells(ctx.spec);
    const C = ctx.inShape[2];
    const k = ctx.inChannel;
    const rows = input.H + 2 * P;
    const cols = input.W + 2 * P;
    const inGrid = cellCanvas(el("canvas", { class: "map" }), rows, cols, cellSize(rows, cols, 340));
    const [Ho, Wo] = ctx.outShape;
    const outGrid = cellCanvas(el("canvas", { class: "map map-click" }), Ho, Wo, cellSize(Ho, Wo, 260));
    const inScale = channelScale(input, k);
    const outScale = channelScale(output, ctx.channel);
    inGrid.canvas.setAttribute("role", "img");
    clickToJump(outGrid, ctx, "Output map; click a cell to jump to it", (cell) => cell.y * Wo + cell.x);

    const inName = ctx.index === 0 ? (C === 3 ? "colour image" : "image") : `channel ${k}`;
    const inFig = figure(
      `Input: ${inName}${P ? `, padded by ${P}` : ""} · ${F}×${F} window, stride ${S}`,
      inGrid.canvas,
    );
    const outFig = figure(`Output: filter ${ctx.channel}, ${Ho}×${Wo}`, outGrid.canvas);
    const ch = channelName(ctx, k);
    const patch = matrix("conv-patch", `Input patch (channel ${ch})`, F, F);
    const kernel = matrix("conv-kernel", `Kernel (filter ${ctx.channel}, channel ${ch})`, F, F);
    const products = matrix("conv-products", "Products", F, F);
    const terms = F * F * C;
    const act = ctx.spec.activation ?? "relu";
    const bill = receipt("conv", [
      ["sum", `Σ of ${plural(terms, "product")} (${F}×${F}×${C})`],
      ["bias", "+ bias"],
      ["pre", "= pre-activation z"],
      ["act", act === "relu" ? "ReLU: max(0, z)" : "no activation"],
      ["value", "output value"],
    ]);
    const sums = el("p", { class: "channel-sums", id: "conv-channel-sums" });
    sums.hidden = C === 1;
    root.replaceChildren(
      el(
        "div",
        { class: "step-stage step-conv" },
        el("div", { class: "step-maps" }, inFig.node, outFig.node),
        el(
          "div",
          { class: "step-calc" },
          el(
            "div",
            { class: "matrices" },
            patch,
            el("span", { class: "op", text: "⊙", "aria-hidden": "true" }),
            kernel,
            el("span", { class: "op", text: "=", "aria-hidden": "true" }),
            products,
          ),
          sums,
          bill.node,
        ),
      ),
    );

    return {
      update(pos, data) {
        const { top, left, size } = data.window;
        const at = (r, s, c = k) => data.patch[r][s][c];
        drawChannel(inGrid, input, k, {
          pad: P,
          scale: inScale,
          numbers: (y, x) => {
            const r = y - top;
            const s = x - left;
            return r >= 0 && s >= 0 && r < size && s < size ? fmt(at(r, s), 2) : null;
          },
        });
        outline(inGrid, top + P, left + P, size, size, "#4f46e5", 3);
        inGrid.canvas.setAttribute(
          "aria-label",
          `Input with the ${size} by ${size} window at row ${top}, column ${left}`,
        );
        drawOutputProgress(outGrid, output, ctx.channel, pos, outScale);

        fillMatrix(patch, (r, s) => at(r, s));
        fillMatrix(kernel, (r, s) => data.kernel[r][s][k]);
        fillMatrix(products, (r, s) => at(r, s) * data.kernel[r][s][k]);
        setCaption(products, `Products (channel ${ch})`);
        if (C > 1) {
          const parts = [];
          for (let c = 0; c < C; c += 1) {
            let sum = 0;
            for (let r = 0; r < size; r += 1) {
              for (let s = 0; s < size; s += 1) sum += at(r, s, c) * data.kernel[r][s][c];
            }
            parts.push(`${channelName(ctx, c)}: ${fmt(sum)}`);
          }
          sums.textContent = `Sum per input channel: ${parts.join(" + ")} = ${fmt(data.products_sum)}`;
        }
        bill.set("sum", fmt(data.products_sum));
        bill.set("bias", fmt(data.bias));
        bill.set("pre", fmt(data.pre_activation));
        bill.set("act", act === "relu" ? `max(0, ${fmt(data.pre_activation)})` : "—");
        bill.set("value", fmt(data.value));
        bill.label("value", `= output[${Math.floor(pos / Wo)}, ${pos % Wo}, ${ctx.channel}]`);
      },
    };
  },
};
