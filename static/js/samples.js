// Sample images the page paints itself, at any size (so a 7×7 network gets a crisp 7×7 picture).

/**
 * Each sample: {id, name, label?, paint(ctx, w, h)}; paint fills the whole w×h area. label is
 * what the picture is, in the class names of the shipped models and data sets (the backward
 * pass takes it as the true class when the network's labels include it).
 */
export const SAMPLES = [
  {
    id: "digit",
    name: "Digit 7",
    label: "7",
    paint(ctx, w, h) {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, w, h);
      ctx.strokeStyle = "#fff";
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.lineWidth = Math.max(1, Math.min(w, h) * 0.14);
      ctx.beginPath();
      ctx.moveTo(w * 0.24, h * 0.22);
      ctx.lineTo(w * 0.76, h * 0.22);
      ctx.lineTo(w * 0.42, h * 0.82);
      ctx.moveTo(w * 0.36, h * 0.52);
      ctx.lineTo(w * 0.66, h * 0.52);
      ctx.stroke();
    },
  },
  {
    id: "circle",
    name: "Circle",
    label: "circle",
    paint(ctx, w, h) {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, w, h);
      ctx.fillStyle = "#fff";
      ctx.beginPath();
      ctx.ellipse(w / 2, h / 2, w * 0.34, h * 0.34, 0, 0, Math.PI * 2);
      ctx.fill();
    },
  },
  {
    id: "checkerboard",
    name: "Checkerboard",
    paint(ctx, w, h) {
      const cell = Math.max(1, Math.round(Math.min(w, h) / 8));
      for (let y = 0; y < h; y += cell) {
        for (let x = 0; x < w; x += cell) {
          ctx.fillStyle = ((x + y) / cell) % 2 === 0 ? "#fff" : "#000";
          ctx.fillRect(x, y, cell, cell);
        }
      }
    },
  },
  {
    id: "gradient",
    name: "Diagonal gradient",
    paint(ctx, w, h) {
      const gradient = ctx.createLinearGradient(0, 0, w, h);
      gradient.addColorStop(0, "#000");
      gradient.addColorStop(1, "#fff");
      ctx.fillStyle = gradient;
      ctx.fillRect(0, 0, w, h);
    },
  },
  {
    id: "shapes",
    name: "Coloured shapes",
    paint(ctx, w, h) {
      ctx.fillStyle = "#f8fafc";
      ctx.fillRect(0, 0, w, h);
      ctx.fillStyle = "#dc2626";
      ctx.fillRect(w * 0.08, h * 0.1, w * 0.36, h * 0.36);
      ctx.fillStyle = "#16a34a";
      ctx.beginPath();
      ctx.moveTo(w * 0.74, h * 0.08);
      ctx.lineTo(w * 0.94, h * 0.48);
      ctx.lineTo(w * 0.54, h * 0.48);
      ctx.closePath();
      ctx.fill();
      ctx.fillStyle = "#2563eb";
      ctx.beginPath();
      ctx.ellipse(w * 0.5, h * 0.74, w * 0.2, h * 0.2, 0, 0, Math.PI * 2);
      ctx.fill();
    },
  },
  {
    id: "stripes",
    name: "Vertical stripes",
    paint(ctx, w, h) {
      const band = Math.max(1, Math.round(w / 6));
      for (let x = 0; x < w; x += band) {
        ctx.fillStyle = (x / band) % 2 === 0 ? "#fff" : "#000";
        ctx.fillRect(x, 0, band, h);
      }
    },
  },
];

/** A new w×h canvas holding sample `id`. */
export function paintSample(id, w, h) {
  const sample = SAMPLES.find((s) => s.id === id) ?? SAMPLES[0];
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  sample.paint(canvas.getContext("2d"), w, h);
  return canvas;
}

/** What sample `id` shows ("7", "circle"), or null when it is no class of anything. */
export function sampleLabel(id) {
  return SAMPLES.find((s) => s.id === id)?.label ?? null;
}
