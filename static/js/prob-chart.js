// A horizontal bar chart of class probabilities with labels and values (3 decimals).

import { el } from "./dom.js";
import { fmt } from "./format.js";

/**
 * probabilities: number[]; labels: string[]; highlight: index to mark (or -1).
 * Returns an <ol> whose rows carry .prob-label and .prob-value.
 */
export function probChart(probabilities, labels, { highlight = -1, id = null } = {}) {
  const best = probabilities.indexOf(Math.max(...probabilities));
  const list = el("ol", { class: "prob-chart", id });
  probabilities.forEach((p, i) => {
    const classes = ["prob-row"];
    if (i === best) classes.push("is-best");
    if (i === highlight) classes.push("is-current");
    const bar = el("span", { class: "prob-bar", "aria-hidden": "true" });
    bar.style.setProperty("--p", String(Math.max(0, Math.min(1, p))));
    list.append(
      el(
        "li",
        { class: classes.join(" "), dataset: { index: i } },
        el("span", { class: "prob-label", text: labels[i] ?? `class ${i}` }),
        el("span", { class: "prob-track" }, bar),
        el("span", { class: "prob-value", text: fmt(p, 3) }),
      ),
    );
  });
  return list;
}
