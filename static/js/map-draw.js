// Drawing feature maps as grids of cells on a canvas, for the step-through views.
//
// A map source is {H, W, C, get(y, x, c) -> number, rgb(y, x) -> [r, g, b] | null}: either the
// input image exactly as sent (true colours) or an activation from array_url (a diverging
// blue-white-orange scale centred on zero, so negative and positive values read apart).

const NEGATIVE = [37, 99, 235];
const ZERO = [248, 250, 252];
const POSITIVE = [234, 88, 12];

// The server's gradient PNGs (app/web/render.py): ColorBrewer RdBu reversed, blue for negative,
// near-white for zero, red for positive; backward.css draws the same stops as the scale bar.
const GRADIENT_STOPS = [
  [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
  [247, 247, 247], [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43],
  [103, 0, 31],
]; // prettier-ignore

/** Colour of gradient value v on the symmetric scale -scale..scale, as the gradient PNGs. */
export function gradientColor(v, scale) {
  const t = scale > 0 && Number.isFinite(v) ? Math.max(-1, Math.min(1, v / scale)) : 0;
  const at = ((t + 1) / 2) * (GRADIENT_STOPS.length - 1);
  const i = Math.min(GRADIENT_STOPS.length - 2, Math.floor(at));
  const f = at - i;
  return GRADIENT_STOPS[i].map((a, k) => Math.round(a + (GRADIENT_STOPS[i + 1][k] - a) * f));
}

/** t in [-1, 1] -> [r, g, b] on the diverging scale. */
export function diverging(t) {
  const clamped = Math.max(-1, Math.min(1, Number.isFinite(t) ? t : 0));
  const end = clamped < 0 ? NEGATIVE : POSITIVE;
  const a = Math.abs(clamped);
  return ZERO.map((z, i) => Math.round(z + (end[i] - z) * a));
}

export function css([r, g, b]) {
  return `rgb(${r}, ${g}, ${b})`;
}

/** A readable text colour on background rgb. */
export function textOn([r, g, b]) {
  const lum = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
  return lum > 0.55 ? "#111827" : "#ffffff";
}

/** Colour of value v on a scale whose ends are -scale and +scale. */
export function valueColor(v, scale) {
  return diverging(scale > 0 ? v / scale : 0);
}

/** The input image as a map source; pixels are value / 255 as the network sees them. */
export function sourceFromImage(imageData, channels) {
  const { width: W, height: H, data } = imageData;
  return {
    H,
    W,
    C: channels,
    image: true,
    get: (y, x, c) => data[(y * W + x) * 4 + (channels === 1 ? 0 : c)] / 255,
    rgb: (y, x) => {
      const o = (y * W + x) * 4;
      return [data[o], data[o + 1], data[o + 2]];
    },
  };
}

/** An [H, W, C] (or flat [n], seen as 1×n×1) activation as a map source. */
export function sourceFromArray({ shape, data }) {
  const [H, W, C] = shape.length === 3 ? shape : [1, shape[0], 1];
  return {
    H,
    W,
    C,
    image: false,
    get: (y, x, c) => data[(y * W + x) * C + c],
    rgb: () => null,
  };
}

/** Largest |value| in channel c, the ends of its colour scale. */
export function channelScale(source, c) {
  let m = 0;
  for (let y = 0; y < source.H; y += 1) {
    for (let x = 0; x < source.W; x += 1) m = Math.max(m, Math.abs(source.get(y, x, c)));
  }
  return m;
}

/** Colour of cell (y, x) of channel c. */
export function cellColor(source, y, x, c, scale) {
  if (source.image) {
    if (source.C === 3) return source.rgb(y, x);
    const g = Math.round(source.get(y, x, 0) * 255);
    return [g, g, g];
  }
  return valueColor(source.get(y, x, c), scale);
}

/** Cell size in CSS pixels so that cols×rows fits in maxPx. */
export function cellSize(rows, cols, maxPx, min = 3, max = 56) {
  return Math.max(min, Math.min(max, Math.floor(maxPx / Math.max(rows, cols))));
}

/**
 * A canvas of rows×cols cells of `cell` CSS pixels, sharp on high-DPI screens.
 * Returns {canvas, ctx, cell, rows, cols}.
 */
export function cellCanvas(canvas, rows, cols, cell) {
  const ratio = Math.min(2, window.devicePixelRatio || 1);
  canvas.width = Math.round(cols * cell * ratio);
  canvas.height = Math.round(rows * cell * ratio);
  canvas.style.width = `${cols * cell}px`;
  canvas.style.aspectRatio = `${cols} / ${rows}`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.imageSmoothingEnabled = false;
  return { canvas, ctx, cell, rows, cols };
}

export function fillCell(grid, y, x, rgb) {
  grid.ctx.fillStyle = css(rgb);
  grid.ctx.fillRect(x * grid.cell, y * grid.cell, grid.cell, grid.cell);
}

/** A padding cell: pale, hatched, "0" when there is room. */
export function padCell(grid, y, x, showNumber) {
  const { ctx, cell } = grid;
  ctx.fillStyle = "#eef0f5";
  ctx.fillRect(x * cell, y * cell, cell, cell);
  ctx.strokeStyle = "#d5d9e2";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(x * cell, (y + 1) * cell);
  ctx.lineTo((x + 1) * cell, y * cell);
  ctx.stroke();
  if (showNumber) cellText(grid, y, x, "0", [238, 240, 245]);
}

/** Text centred in a cell, coloured for contrast against bg. */
export function cellText(grid, y, x, text, bg) {
  const { ctx, cell } = grid;
  const size = Math.max(8, Math.min(14, Math.floor(cell / (text.length > 4 ? 3.3 : 2.6))));
  ctx.font = `600 ${size}px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace`;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillStyle = textOn(bg);
  ctx.fillText(text, x * cell + cell / 2, y * cell + cell / 2 + 0.5);
}

/** Thin grid lines between cells (only when cells are big enough to need them). */
export function gridLines(grid) {
  const { ctx, cell, rows, cols } = grid;
  if (cell < 8) return;
  ctx.strokeStyle = "rgba(15, 23, 42, 0.12)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let r = 0; r <= rows; r += 1) {
    ctx.moveTo(0, r * cell + 0.5);
    ctx.lineTo(cols * cell, r * cell + 0.5);
  }
  for (let c = 0; c <= cols; c += 1) {
    ctx.moveTo(c * cell + 0.5, 0);
    ctx.lineTo(c * cell + 0.5, rows * cell);
  }
  ctx.stroke();
}

/** A highlighted rectangle of h×w cells at (y, x). */
export function outline(grid, y, x, h, w, color = "#4f46e5", width = 3) {
  const { ctx, cell } = grid;
  ctx.strokeStyle = "#ffffff";
  ctx.lineWidth = width + 2;
  ctx.strokeRect(x * cell + width / 2, y * cell + width / 2, w * cell - width, h * cell - width);
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.strokeRect(x * cell + width / 2, y * cell + width / 2, w * cell - width, h * cell - width);
}

/**
 * Draw channel c of source into grid with `pad` padding cells around it.
 * numbers(y, x) -> string|null puts text in a cell (unpadded coordinates).
 */
export function drawChannel(grid, source, c, { pad = 0, scale = null, numbers = null } = {}) {
  const s = scale ?? channelScale(source, c);
  const showPadNumbers = grid.cell >= 22;
  for (let y = -pad; y < source.H + pad; y += 1) {
    for (let x = -pad; x < source.W + pad; x += 1) {
      const inside = y >= 0 && x >= 0 && y < source.H && x < source.W;
      if (!inside) {
        padCell(grid, y + pad, x + pad, showPadNumbers);
        continue;
      }
      const rgb = cellColor(source, y, x, c, s);
      fillCell(grid, y + pad, x + pad, rgb);
      const text = numbers ? numbers(y, x) : null;
      if (text !== null && grid.cell >= 22) cellText(grid, y + pad, x + pad, text, rgb);
    }
  }
  gridLines(grid);
  return s;
}

/** Hit-test a pointer event on a cell canvas -> {y, x} in cells (or null outside). */
export function cellAt(grid, event) {
  const rect = grid.canvas.getBoundingClientRect();
  const x = Math.floor(((event.clientX - rect.left) / rect.width) * grid.cols);
  const y = Math.floor(((event.clientY - rect.top) / rect.height) * grid.rows);
  if (x < 0 || y < 0 || x >= grid.cols || y >= grid.rows) return null;
  return { y, x };
}
