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
  which the max-pooled, weight-decayed shipped digits model shows);
- feature visualisation (Olah et al. 2017, Lucid; tf-keras-vis): an input that excites one
  channel or class, by gradient ascent from noise with jitter and blur (visualise()).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers import ConvLayer, DenseLayer, ReluLayer
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


@dataclass(frozen=True)
class Visualisation:
    """An input that excites one channel or class, and how the objective rose on the way.

    image : ndarray of shape (H, W, C), float32 in [0, 1]
    objective : the objective after each step (the channel's mean, or the class score)
    """

    image: np.ndarray
    objective: list[float]
    layer: int
    channel: int


def _blur(x: np.ndarray) -> np.ndarray:
    """A separable 3x3 binomial blur of x (H, W, C), edges repeated."""
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
    return 0.25 * rows[:, :-2] + 0.5 * rows[:, 1:-1] + 0.25 * rows[:, 2:]


def objective_gradient(
    network: Network, x: np.ndarray, layer: int, channel: int
) -> tuple[float, np.ndarray]:
    """(objective, d objective / d x) for x (H, W, C): the mean of layer `layer`'s channel (a
    map's channel, or one value of a flat output; the logit for a final softmax)."""
    out = x[None]
    for lay in network.layers[: layer + 1]:
        out = lay.forward(out)
    top = network.layers[layer]
    if isinstance(top, DenseLayer) and top.activation == "softmax":
        value = float(top.logits[0, channel])
        seed = np.zeros_like(top.logits)
        seed[0, channel] = 1.0
        grad = top.backward_logits(seed)
    else:
        cells = out[..., channel]
        value = float(cells.mean())
        seed = np.zeros_like(out)
        seed[..., channel] = 1.0 / cells.size
        grad = top.backward(seed)
    for lay in reversed(network.layers[:layer]):
        grad = lay.backward(grad)
    return value, grad[0]


def visualise(
    network: Network,
    layer: int,
    channel: int,
    *,
    steps: int = 64,
    learning_rate: float = 0.05,
    jitter: int = 2,
    blur_every: int = 4,
    seed: int = 0,
) -> Visualisation:
    """Gradient ascent on the input from seeded grey noise, as Lucid and tf-keras-vis do: each
    step the image is shifted by up to `jitter` pixels (the gradient shifted back), the step is
    the gradient over its mean magnitude times `learning_rate`, pixels stay in [0, 1], and every
    `blur_every` steps a light blur keeps high-frequency noise from taking over.

    layer, channel : the channel of layer `layer` whose mean is raised (for a final softmax
    layer, the class's logit). Runs on a replica in float32; `steps` bounds the work.
    """
    n = len(network.layers)
    if not 0 <= layer < n:
        raise ValueError(f"layer must be in 0..{n - 1}, got {layer}.")
    shape = network.layers[layer].output_shape
    channels = shape[-1]
    if not 0 <= channel < channels:
        raise ValueError(f"channel must be in 0..{channels - 1} for layer {layer}, got {channel}.")
    net = network.replica()
    for lay in net.layers:  # dL/dx is wanted all the way down to the image
        if isinstance(lay, ConvLayer | DenseLayer):
            lay.need_input_grad = True
    rng = np.random.default_rng(seed)
    x = (0.5 + 0.05 * rng.standard_normal(network.input_shape)).astype(np.float32)
    np.clip(x, 0.0, 1.0, out=x)
    history = []
    for step in range(steps):
        dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
        shifted = np.roll(x, (dy, dx), axis=(0, 1))
        value, grad = objective_gradient(net, shifted, layer, channel)
        grad = np.roll(grad, (-dy, -dx), axis=(0, 1))
        history.append(value)
        scale = float(np.abs(grad).mean())
        if scale > 0:
            x += np.float32(learning_rate / scale) * grad.astype(np.float32)
        if blur_every and (step + 1) % blur_every == 0:
            x = _blur(x).astype(np.float32)
        np.clip(x, 0.0, 1.0, out=x)
    final, _ = objective_gradient(net, x, layer, channel)
    history.append(final)
    return Visualisation(image=x, objective=history, layer=layer, channel=channel)
