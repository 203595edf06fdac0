// Building DOM nodes without ever parsing strings as HTML: text goes in through textContent.

const PROPS = new Set(["value", "checked", "disabled", "selected", "hidden", "open"]);

/**
 * el("button", {class: "btn", text: "Run", onclick: fn}, child, ...) -> HTMLElement.
 * Attribute values are set with setAttribute; "text" sets textContent; "on*" adds listeners.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (PROPS.has(key)) node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return [...root.querySelectorAll(selector)];
}

/** A labelled form field: <label>text <control></label> wrapped for layout. */
export function field(labelText, control, extraClass = "") {
  return el("label", { class: `field ${extraClass}`.trim() }, el("span", { text: labelText }), control);
}

/** <select> with [value, text] options. */
export function select(options, value, props = {}) {
  const node = el("select", props);
  for (const [optValue, text] of options) {
    node.append(el("option", { value: optValue, text, selected: String(optValue) === String(value) }));
  }
  return node;
}

/** Put message in an alert box, hidden while the message is empty. */
export function showAlert(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

/** Wait ms milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** fn debounced by ms; the returned function also has .flush() and .cancel(). */
export function debounce(fn, ms) {
  let timer = null;
  let lastArgs = [];
  const run = (...args) => {
    lastArgs = args;
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn(...lastArgs);
    }, ms);
  };
  run.flush = () => {
    if (timer === null) return;
    clearTimeout(timer);
    timer = null;
    fn(...lastArgs);
  };
  run.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return run;
}
