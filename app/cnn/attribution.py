"""Which pixels a class score depends on: gradient saliency and Grad-CAM, from Network.gradients.

Both differentiate the chosen class's score z_t (the logit before a final softmax) through the
same backward pass that training uses, on a replica of the network (its own caches, the same
weights), so a network shared between requests is never written to:

- saliency (Simonyan et al. 2014): S[y, x] = max over channels c of |d z_t / d image[y, x, c]|;
- Grad-CAM (Selvaraju et al. 2017) at a layer with maps A (h, w, K):
  alpha_k = mean over (y, x) of d z_t / d A[y, x, k];  cam = relu(sum_k alpha_k A[:, :, k]),
  then resized to the input's height and width (bilinear, pixel centres aligned);
- HiResCAM (Draelos & Carin 2020), the same without the averaging:
  cam = relu(sum_k A[:, :, k] * d z_t / d A[:, :, k]). With only pooling, flatten and dense
  layers after A its sum over positions is z_t minus the bias part, so it shows where the score
  comes from even when the averaged weights of Grad-CAM cancel out (then Grad-CAM is all zero,
  which the max-pooled, weight-decayed shipped digits model shows).
"""

from __future__ import annotations

import numpy as np

from .layers import ConvLayer, ReluLayer
from .network import Network

CAM_METHODS = ("gradcam", "hirescam")


def saliency_map(network: Network, image: np.ndarray, target: int) -> np.ndarray:
    """max_c |d z_target / d image| for image (H, W, C); returns (H, W) float32."""
    _, _, input_grad = network.replica().gradients(image[None], target)
    return np.abs(input_grad[0]).max(axis=-1).astype(np.float32)


def grad_cam(
    network: Network, image: np.ndarray, target: int, layer: int, method: str = "gradcam"
) -> np.ndarray:
    """Grad-CAM (or HiResCAM) of layer `layer` for image (H, W, C); returns (h, w) float32 at
    the layer's size."""
    outputs, grads, _ = network.replica().gradients(image[None], target)
    maps, dmaps = outputs[layer][0], grads[layer][0]  # (h, w, K) each
    hires = method == "hirescam"
    cam = (maps * dmaps).sum(axis=-1) if hires else maps @ dmaps.mean(axis=(0, 1))
    return np.maximum(cam, 0.0).astype(np.float32)


def cam_layers(network: Network) -> list[int]:
    """Indices of the layers whose output is a stack of maps (h, w, c): Grad-CAM candidates."""
    return [layer.index for layer in network.layers if len(layer.output_shape) == 3]


def last_conv_maps(network: Network) -> int | None:
    """The last conv layer, or the relu right after it when the conv itself has no activation
    (Grad-CAM weighs the last convolutional maps after their rectification); None without one."""
    convs = [i for i, layer in enumerate(network.layers) if isinstance(layer, ConvLayer)]
    if not convs:
        return None
    last = convs[-1]
    following = network.layers[last + 1] if last + 1 < len(network.layers) else None
    return last + 1 if isinstance(following, ReluLayer) else last


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
