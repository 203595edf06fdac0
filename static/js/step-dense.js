// Dense (+ softmax) step-through: for output unit j, the inputs that contribute most
// (x_i · w_ji), their sum plus the bias, the activation, and for a softmax output the
// probability of every class.

import { el } from "./dom.js";
import { fmt, plural } from "./format.js";
import { probChart } from "./prob-chart.js";
import { receipt } from "./step-parts.js";

function contributionRows(table, data, inputs) {
  const body = table.querySelector("tbody");
  const top = data.top_contributions ?? [];
  const biggest = Math.max(1e-12, ...top.map((t) => Math.abs(t.product)));
  body.replaceChildren(
    ...top.map((t) => {
      const bar = el("span", { class: `contrib-bar ${t.product < 0 ? "is-neg" : "is-pos"}` });
      bar.style.setProperty("--w", String(Math.abs(t.product) / biggest));
      const x = inputs ? inputs.data[t.input] : t.weight ? t.product / t.weight : null;
      return el(
        "tr",
        {},
        el("th", { scope: "row", text: String(t.input) }),
        el("td", { class: "num", text: fmt(x) }),
        el("td", { class: "num", text: fmt(t.weight) }),
        el("td", { class: "num", text: fmt(t.product) }),
        el("td", { class: "bar-cell", "aria-hidden": "true" }, bar),
      );
    }),
  );
}

export const denseView = {
  channels: () => null,
  positions: (ctx) => ctx.outShape[0],
  query: (ctx, pos) => ({ i: pos }),
  describe: (ctx, pos) => `unit j=${pos}${ctx.isLast ? ` (${ctx.labels[pos] ?? `class ${pos}`})` : ""}`,

  async mount(root, ctx) {
    const [inputs, outputs] = await Promise.all([ctx.inputArray, ctx.outputArray]);
    const nIn = ctx.inShape[0];
    const act = ctx.spec.activation ?? "none";
    const probabilities = ctx.isLast ? ctx.run.output?.probabilities : null;
    const table = el(
      "table",
      { class: "contrib-table", id: "dense-contrib" },
      el("caption", { text: "Largest contributions x_i · w_ji" }),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col", text: "input i" }),
          el("th", { scope: "col", text: "x_i" }),
          el("th", { scope: "col", text: "w_ji" }),
          el("th", { scope: "col", text: "x_i · w_ji" }),
          el("th", { scope: "col", text: "", "aria-hidden": "true" }),
        ),
      ),
      el("tbody"),
    );
    const actLabel =
      act === "softmax" ? "softmax: e^z_j / Σ_k e^z_k" : act === "relu" ? "ReLU: max(0, z)" : "no activation";
    const bill = receipt("dense", [
      ["sum", `Σ of all ${plural(nIn, "product")}`],
      ["bias", "+ bias b_j"],
      ["pre", "= z_j"],
      ["act", actLabel],
      ["value", "output"],
    ]);
    const chartBox = el("div", { class: "dense-output" });
    root.replaceChildren(
      el(
        "div",
        { class: "step-stage step-dense" },
        el("div", { class: "dense-left" }, table),
        el("div", { class: "step-calc" }, bill.node, chartBox),
      ),
    );

    return {
      update(pos, data) {
        contributionRows(table, data, inputs);
        const pre = data.pre_activation ?? data.value;
        bill.set("sum", fmt(pre - data.bias));
        bill.set("bias", fmt(data.bias));
        bill.set("pre", fmt(pre));
        bill.set("act", act === "none" ? "—" : act === "relu" ? `max(0, ${fmt(pre)})` : `p_${pos}`);
        bill.set("value", fmt(data.value));
        bill.label("value", `= output[${pos}]`);
        if (probabilities) {
          chartBox.replaceChildren(
            el("h4", { text: "Class probabilities (softmax of all z)" }),
            probChart(probabilities, ctx.labels, { highlight: pos, id: "dense-probs" }),
          );
        } else {
          const values = Array.from(outputs.data);
          chartBox.replaceChildren(
            el("h4", { text: `All ${values.length} outputs of this layer` }),
            el(
              "ol",
              { class: "value-list" },
              values.map((v, j) =>
                el(
                  "li",
                  { class: j === pos ? "is-current" : "" },
                  el("span", { text: `${j}` }),
                  el("span", { class: "num", text: fmt(v) }),
                ),
              ),
            ),
          );
        }
      },
    };
  },
};
