"""Which pixels a class score depends on: gradient saliency and Grad-CAM for a kept run.

Both differentiate the chosen class's logit z_t (the last dense layer before its softmax) with
app.cnn.trainer.TrainableNetwork.layer_gradients, on the run's own resolved weights:

- saliency (Simonyan et al. 2014): S[y, x] = max over channels c of |d z_t / d image[y, x, c]|;
- Grad-CAM (Selvaraju et al. 2017) at a layer with maps A (h, w, K):
  alpha_k = mean over (y, x) of d z_t / d A[y, x, k];  cam = relu(sum_k alpha_k A[:, :, k]),
  then resized to the input's height and width (bilinear, pixel centres aligned);
- HiResCAM (Draelos & Carin 2020), the same without the averaging:
  cam = relu(sum_k A[:, :, k] * d z_t / d A[:, :, k]). With only pooling, flatten and dense
  layers after A its sum over positions is z_t minus the bias part, so it shows where the score
  comes from even when the averaged weights of Grad-CAM cancel out (then Grad-CAM is all zero,
  which the max-pooled, weight-decayed shipped digits model shows).

Pure NumPy; app/render.py turns the maps into PNGs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from app import render
from app.cnn import ConvLayer, DenseLayer, Network
from app.cnn.spec import ConvSpec, ReluSpec
from app.cnn.trainer import TrainableNetwork, TrainError
from app.errors import AppError, InvalidRequestError, issue

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


def trainable(network: Network, dtype: type = np.float32) -> TrainableNetwork:
    """A TrainableNetwork holding exactly the run's resolved weights (however they were made)."""
    layers = []
    for layer_spec, layer in zip(network.spec.layers, network.layers, strict=True):
        if isinstance(layer, ConvLayer | DenseLayer):
            changes = {"weights": np.array(layer.weights), "bias": np.array(layer.bias)}
            if isinstance(layer_spec, ConvSpec):
                changes["init"] = "he"  # weights given: the preset kernel is already in them
            layer_spec = dataclasses.replace(layer_spec, **changes)
        layers.append(layer_spec)
    spec = dataclasses.replace(network.spec, layers=tuple(layers))
    try:
        return TrainableNetwork(spec, dtype=dtype)
    except TrainError as e:
        raise SaliencyUnavailableError(str(e)) from None


def resolve_target(network: Network, last_output: np.ndarray, target: int | None) -> int:
    """The class index to explain: `target`, or the most probable class when None."""
    classes = int(last_output.size)
    if target is None:
        return int(np.argmax(last_output))
    if not 0 <= target < classes:
        message = f"target {target} is not a class of this network; use 0..{classes - 1}."
        raise InvalidRequestError(message, [issue(None, "target", message)])
    return target


def cam_layers(network: Network) -> list[int]:
    """Indices of the layers whose output is a stack of maps (h, w, c): Grad-CAM candidates."""
    return [layer.index for layer in network.layers if len(layer.output_shape) == 3]


def default_cam_layer(network: Network) -> int:
    """The last conv layer, or the relu right after it when the conv itself has no activation.

    Grad-CAM weighs the last convolutional maps after their rectification.
    """
    convs = [i for i, layer in enumerate(network.layers) if isinstance(layer, ConvLayer)]
    if not convs:
        raise SaliencyUnavailableError(
            "Grad-CAM weighs the maps of a conv layer, and this network has none. Use the "
            "saliency map instead, or add a conv layer."
        )
    last = convs[-1]
    following = network.spec.layers[last + 1] if last + 1 < len(network.layers) else None
    return last + 1 if isinstance(following, ReluSpec) else last


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


def saliency_map(net: TrainableNetwork, image: np.ndarray, target: int) -> np.ndarray:
    """max_c |d z_target / d image| for image (H, W, C); returns (H, W) float32."""
    _, _, input_grad = net.layer_gradients(image[None], target)
    return np.abs(input_grad[0]).max(axis=-1).astype(np.float32)


CAM_METHODS = ("gradcam", "hirescam")


def grad_cam(
    net: TrainableNetwork, image: np.ndarray, target: int, layer: int, method: str = "gradcam"
) -> np.ndarray:
    """Grad-CAM (or HiResCAM) of layer `layer` for image (H, W, C); returns (h, w) float32 at
    the layer's size."""
    outputs, grads, _ = net.layer_gradients(image[None], target)
    maps, dmaps = outputs[layer][0], grads[layer][0]  # (h, w, K) each
    hires = method == "hirescam"
    cam = (maps * dmaps).sum(axis=-1) if hires else maps @ dmaps.mean(axis=(0, 1))
    return np.maximum(cam, 0.0).astype(np.float32)


def upsample(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a (h, w) to (height, width), pixel centres aligned, edges clamped."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo).astype(np.float64)

    a = np.asarray(a, dtype=np.float64)
    y0, y1, fy = axis(a.shape[0], height)
    x0, x1, fx = axis(a.shape[1], width)
    rows = a[y0] * (1 - fy)[:, None] + a[y1] * fy[:, None]  # (height, w)
    out = rows[:, x0] * (1 - fx)[None, :] + rows[:, x1] * fx[None, :]
    return out.astype(np.float32)


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
