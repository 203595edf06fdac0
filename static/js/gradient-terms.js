// One gradient value written out as the chain rule, in the numbers of explain_gradient: the
// server's formula, the terms with their factors (a table), the sum and the value. Used by the
// backward step-through and by the gradient check.

import { el } from "./dom.js";
import { plural, sig } from "./format.js";
import { receipt } from "./step-parts.js";

const index = (v) => `[${v.join(", ")}]`;
const yesNo = (v) => (v ? "yes" : "no");
const POOLS = new Set(["maxpool", "avgpool", "globalmaxpool", "globalavgpool"]);
const DELTA_Z = new Set(["conv", "dense"]);

/** [header, format] of factor `key` of a term of `data`, or null for a key not shown. */
function column(key, data) {
  const rule = data.what === "output" ? data.rule : data.what;
  switch (key) {
    case "output":
      return [POOLS.has(rule) ? "window y[oy, ox, c]" : "at z[oy, ox, k]", index];
    case "unit":
      return ["unit u", String];
    case "flat_index":
      return ["flat index", String];
    case "tap":
      return ["tap W[k, fy, fx, c]", index];
    case "input_at":
      return ["input x[y, x, c]", index];
    case "input":
      return rule === "relu" ? ["ReLU input a", sig] : ["input j", String];
    case "input_value":
      return ["x", sig];
    case "weight":
      return ["W", sig];
    case "share":
      return ["share", sig];
    case "passes":
      return ["a > 0?", yesNo];
    case "won":
      return ["won?", yesNo];
    case "delta":
      return [DELTA_Z.has(rule) || data.what !== "output" ? "dL/dz" : "dL/dy", sig];
    case "loss":
      return ["loss", String];
    default:
      return null;
  }
}

const ORDER = ["output", "unit", "flat_index", "tap", "input_at", "input", "input_value",
  "weight", "share", "passes", "won", "delta", "loss"]; // prettier-ignore

/** The columns the terms of `data` have, in reading order: [[key, header, format], ...]. */
function columnsOf(data) {
  const keys = new Set(data.terms.flatMap((t) => (t.rest ? [] : Object.keys(t))));
  return ORDER.filter((k) => keys.has(k)).map((k) => [k, ...column(k, data)]);
}

/** "dL/da[2, 2, 0]", "dL/dW[0, 1, 1, 0]", "dL/db[3]": the value's name. */
export function valueName(data, { symbol = "a" } = {}) {
  if (data.what === "weight") return `dL/dW${index(data.weight)}`;
  if (data.what === "bias") return `dL/db[${data.bias}]`;
  return `dL/d${symbol}${index(data.position)}`;
}

/** "a + b − c + … = v" for the terms' products, the rest folded in as "(N more: s)". */
function sumText(data) {
  const listed = data.terms.filter((t) => !t.rest);
  const rest = data.terms.find((t) => t.rest);
  const shown = listed.slice(0, 4).map((t) => t.product);
  let text = "";
  shown.forEach((p, i) => {
    const magnitude = sig(Math.abs(p));
    text += i === 0 ? (p < 0 ? `−${magnitude}` : magnitude) : ` ${p < 0 ? "−" : "+"} ${magnitude}`;
  });
  const hidden = listed.length - shown.length;
  if (hidden > 0) text += ` + … (${plural(hidden, "more listed term")})`;
  if (rest) text += ` + (${plural(rest.count, "more term")}: ${sig(rest.product)})`;
  return `${text} = ${sig(data.value)}`;
}

/**
 * The formula, terms table, sum and value of one explain_gradient reply, with ids under
 * `prefix` (`${prefix}-formula`, -terms, -sum, -count, -value). Returns {node, update(data,
 * {symbol}), formula}; symbol names the layer's output in the value's name ("a", or "p" for
 * softmax); formula is the formula's node, in `node` unless the caller places it elsewhere.
 */
export function termsView(prefix) {
  const formula = el("p", { class: "formula-big grad-formula", id: `${prefix}-formula` });
  const table = el("table", { class: "contrib-table terms-table", id: `${prefix}-terms` });
  const sum = el("p", { class: "term-sum", id: `${prefix}-sum` });
  const bill = receipt(prefix, [
    ["count", "terms"],
    ["value", "value"],
  ]);
  const node = el(
    "div",
    { class: "grad-terms" },
    formula,
    el("div", { class: "terms-wrap" }, table),
    sum,
    bill.node,
  );

  function update(data, { symbol = "a" } = {}) {
    formula.textContent = data.formula;
    const columns = columnsOf(data);
    const head = el(
      "tr",
      {},
      columns.map(([, header]) => el("th", { scope: "col", text: header })),
      el("th", { scope: "col", text: "product" }),
    );
    const rows = data.terms.map((term) => {
      if (term.rest) {
        return el(
          "tr",
          { class: "is-rest", dataset: { count: term.count } },
          el("td", { colspan: columns.length, text: `+ ${plural(term.count, "more term")} =` }),
          el("td", { class: "num term-product", text: sig(term.product) }),
        );
      }
      return el(
        "tr",
        { class: term.product === 0 ? "is-zero" : "" },
        columns.map(([key, , format]) => el("td", { class: "num", dataset: { key }, text: format(term[key]) })),
        el("td", { class: "num term-product", text: sig(term.product) }),
      );
    });
    table.replaceChildren(
      el("caption", { text: "The terms, largest |product| first" }),
      el("thead", {}, head),
      el("tbody", {}, rows),
    );
    sum.textContent = sumText(data);
    const listed = data.terms.filter((t) => !t.rest).length;
    const count = listed + (data.terms.find((t) => t.rest)?.count ?? 0);
    bill.label("count", count === listed ? "terms" : `terms (the ${listed} largest listed)`);
    bill.set("count", String(count));
    bill.label("value", `= ${valueName(data, { symbol })}`);
    bill.set("value", sig(data.value));
  }

  return { node, update, formula };
}
