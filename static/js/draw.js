// The drawing pad: white strokes on black (like MNIST digits); each finished stroke becomes the
// input image.

import { $ } from "./dom.js";
import { state } from "./state.js";

const SIZE = 280;

/** Wire the drawing canvas; onDrawn(canvas) is called after each stroke and on clear. */
export function initDraw(onDrawn) {
  const canvas = $("#draw-canvas");
  canvas.width = SIZE;
  canvas.height = SIZE;
  const ctx = canvas.getContext("2d");
  const blank = () => {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, SIZE, SIZE);
  };
  blank();

  let drawing = false;
  let last = null;
  const point = (event) => {
    const rect = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) / rect.width) * SIZE,
      y: ((event.clientY - rect.top) / rect.height) * SIZE,
    };
  };
  const line = (from, to) => {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = Number($("#draw-brush").value) || 22;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  };

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    last = point(event);
    line(last, last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const next = point(event);
    line(last, next);
    last = next;
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    onDrawn(canvas);
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);

  $("#draw-clear").addEventListener("click", () => {
    blank();
    if (state.image.kind === "drawing") onDrawn(canvas);
  });
}
