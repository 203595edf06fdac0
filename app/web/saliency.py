"""The PNGs of saliency and Grad-CAM: a map alone, or laid over the input image. The maps
themselves are app/cnn/attribution.py; which runs and queries can be answered, app/web/checks.py."""

from __future__ import annotations

import numpy as np

from app.web import render

# The overlay dims the image to OVERLAY_DIM of its brightness, then covers it with the heat colour
# up to OVERLAY_STRENGTH where the map peaks; colours skip viridis's darkest third, which would
# only darken the picture.
OVERLAY_DIM = 0.6
OVERLAY_STRENGTH = 0.85
OVERLAY_LOWEST_COLOUR = 0.35


def heat_png(heat: np.ndarray) -> bytes:
    """A (H, W) map as a viridis PNG (lowest value darkest)."""
    return render.render_channel(heat, diverging=False)


def overlay_png(image: np.ndarray, heat: np.ndarray) -> bytes:
    """The image (H, W, C) in [0, 1] with the map (H, W) >= 0 laid over it in viridis colours,
    more opaque where the map is higher (see OVERLAY_*); an RGB PNG."""
    base = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    top = float(np.max(heat)) if heat.size else 0.0
    level = np.clip(heat / top, 0.0, 1.0) if top > 0 else np.zeros_like(heat)
    table = np.frombuffer(render.VIRIDIS_PALETTE, dtype=np.uint8).reshape(256, 3)
    shade = OVERLAY_LOWEST_COLOUR + (1 - OVERLAY_LOWEST_COLOUR) * level
    colours = table[np.rint(shade * (render.LEVELS - 1)).astype(np.intp)] / 255.0  # (H, W, 3)
    # sqrt: middling values stay visible next to a sharp peak (Grad-CAM often has one).
    weight = (OVERLAY_STRENGTH * np.sqrt(level))[:, :, None]
    return render.render_image(OVERLAY_DIM * base * (1 - weight) + colours * weight)
