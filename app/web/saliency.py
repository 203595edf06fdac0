"""The web side of saliency and Grad-CAM: which runs can be explained, the checks on the
query, and the PNGs. The maps themselves are app/cnn/attribution.py."""

from __future__ import annotations

import numpy as np

from app.cnn import DenseLayer, Network
from app.cnn.attribution import cam_layers, last_conv_maps
from app.errors import AppError, InvalidRequestError, issue
from app.web import render

# The overlay dims the image to OVERLAY_DIM of its brightness, then covers it with the heat colour
# up to OVERLAY_STRENGTH where the map peaks; colours skip viridis's darkest third, which would
# only darken the picture.
OVERLAY_DIM = 0.6
OVERLAY_STRENGTH = 0.85
OVERLAY_LOWEST_COLOUR = 0.35


class SaliencyUnavailableError(AppError):
    """The run's network has no class scores to explain (409)."""

    status_code = 409


def check_classifier(network: Network) -> None:
    """SaliencyUnavailableError unless the network ends in a dense layer with softmax."""
    last = network.layers[-1]
    if not (isinstance(last, DenseLayer) and last.activation == "softmax"):
        ends = (
            f"dense with activation {last.activation!r}"
            if isinstance(last, DenseLayer)
            else (last.type)
        )
        raise SaliencyUnavailableError(
            f"Saliency and Grad-CAM explain a class score, so they need a network that ends in "
            f"a dense layer with softmax; this run's network ends in {ends}. Add a flatten and "
            "a dense layer with softmax (one unit per class), run again, then ask."
        )


def resolve_target(network: Network, last_output: np.ndarray, target: int | None) -> int:
    """The class index to explain: `target`, or the most probable class when None."""
    classes = int(last_output.size)
    if target is None:
        return int(np.argmax(last_output))
    if not 0 <= target < classes:
        message = f"target {target} is not a class of this network; use 0..{classes - 1}."
        raise InvalidRequestError(message, [issue(None, "target", message)])
    return target


def default_cam_layer(network: Network) -> int:
    """The last conv layer's maps (attribution.last_conv_maps), or 409 without a conv layer."""
    found = last_conv_maps(network)
    if found is None:
        raise SaliencyUnavailableError(
            "Grad-CAM weighs the maps of a conv layer, and this network has none. Use the "
            "saliency map instead, or add a conv layer."
        )
    return found


def check_cam_layer(network: Network, layer: int | None) -> int:
    """`layer` if its output is a stack of maps, the default when None; else 422."""
    if layer is None:
        return default_cam_layer(network)
    allowed = cam_layers(network)
    if layer not in allowed:
        listed = ", ".join(map(str, allowed)) or "none"
        message = (
            f"layer {layer} has no maps to weigh; Grad-CAM works on a layer whose output is "
            f"height x width x channels: {listed}."
        )
        raise InvalidRequestError(message, [issue(None, "layer", message)])
    return layer


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
