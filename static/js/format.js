// Numbers, shapes and layers in words people read aloud.

/** v with a fixed number of decimals; "-0.000" shows as "0.000"; null/NaN as an en dash. */
export function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
  const n = Number(v);
  if (!Number.isFinite(n)) return n > 0 ? "∞" : "−∞";
  const s = n.toFixed(digits);
  return Number(s) === 0 ? (0).toFixed(digits) : s;
}

/**
 * v to `digits` significant figures, for gradients that live far from 1: 0.0501983 -> "0.0502",
 * 3.6e-12 -> "3.600e-12"; 0 (and -0) -> "0"; null/NaN as an en dash.
 */
export function sig(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
  const n = Number(v);
  if (!Number.isFinite(n)) return n > 0 ? "∞" : "−∞";
  if (n === 0) return "0";
  const a = Math.abs(n);
  if (a >= 1e-3 && a < 1e5) return String(Number(n.toPrecision(digits)));
  return n.toExponential(digits - 1);
}

/** 12345 -> "12,345". */
export function int(n) {
  return Number(n).toLocaleString("en-US");
}

/** 0.9312 -> "93.1%"; null as an en dash. */
export function percent(v) {
  return v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`;
}

/** [32, 32, 3] -> "32×32×3"; [10] -> "10". */
export function shapeText(shape) {
  return (shape ?? []).join("×");
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * A shape in plain words: [32, 32, 3] as an image -> "32×32×3 image";
 * as an activation -> "10 feature maps of 32×32"; [10] -> "a vector of 10 values".
 */
export function shapeWords(shape, { image = false, probabilities = false } = {}) {
  if (!shape) return "";
  if (shape.length === 3) {
    const [h, w, c] = shape;
    if (image) return `${h}×${w}×${c} ${c === 1 ? "grayscale" : "colour"} image`;
    return `${plural(c, "feature map")} of ${h}×${w}`;
  }
  const n = shape[0];
  if (probabilities) return `${plural(n, "class probability", "class probabilities")}`;
  return `a vector of ${plural(n, "value")}`;
}

const POOL_NAMES = {
  maxpool: "max pool",
  avgpool: "average pool",
  globalmaxpool: "global max pool",
  globalavgpool: "global average pool",
};

/** A layer spec in a few words: "conv 5×5 ×10, stride 1, pad 2, ReLU". */
export function layerTitle(layer) {
  switch (layer.type) {
    case "conv": {
      const f = layer.kernel_size;
      const parts = [`conv ${f}×${f} ×${layer.filters}`];
      if ((layer.stride ?? 1) !== 1) parts.push(`stride ${layer.stride}`);
      const pad = layer.padding ?? 0;
      if (pad !== 0) parts.push(typeof pad === "string" ? `pad ${pad}` : `pad ${pad}`);
      if ((layer.activation ?? "relu") === "relu") parts.push("ReLU");
      return parts.join(", ");
    }
    case "maxpool":
    case "avgpool": {
      const parts = [`${POOL_NAMES[layer.type]} ${layer.size}×${layer.size}`];
      const stride = layer.stride ?? layer.size;
      if (stride !== layer.size) parts.push(`stride ${stride}`);
      if (layer.padding) parts.push(`pad ${layer.padding}`);
      return parts.join(", ");
    }
    case "globalmaxpool":
    case "globalavgpool":
      return POOL_NAMES[layer.type];
    case "dense": {
      const act = layer.activation ?? "none";
      return `dense ${layer.units}${act === "none" ? "" : `, ${act === "relu" ? "ReLU" : act}`}`;
    }
    case "relu":
      return "ReLU";
    default:
      return layer.type;
  }
}

/** Padding as a number of cells for drawing: "same" -> (F-1)/2, "valid" -> 0. */
export function paddingCells(layer) {
  const p = layer.padding ?? 0;
  if (p === "same") return Math.floor(((layer.kernel_size ?? layer.size) - 1) / 2);
  if (p === "valid") return 0;
  return Number(p) || 0;
}
