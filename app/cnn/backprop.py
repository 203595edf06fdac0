"""The backward pass of one image: the loss for a target class and every gradient of it.

Two losses, as in API.md "Backward pass":
- "cross_entropy": L = -log p[target], for a network whose last layer is dense + softmax; its
  gradient at the logits is p - onehot(target);
- "score": L = output[target], the last layer's raw output value (after its activation), for
  any network.

Every gradient is dL/d(something) in the layout of the thing: a layer's output (h, w, c) or
(n,), conv weights (K, F, F, C), dense weights (units, inputs), biases (K,), and the input image
(H, W, C). The work runs on a replica of the network (its own caches, the same weights), so a
network shared between requests is never written to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .layers import ConvLayer, DenseLayer
from .network import Network, build_network
from .spec import ConvSpec, NetworkSpec

LOSSES = ("cross_entropy", "score")


class LossError(ValueError):
    """A loss or target that does not fit the network; the message says what to use instead."""


@dataclass(frozen=True)
class Gradients:
    """Every gradient of one loss for one image.

    outputs : each layer's output, (h, w, c) or (n,), as the forward pass made it
    output_grads : dL/d(output of layer i), same shapes
    weight_grads, bias_grads : dL/dW and dL/db of conv and dense layers, None for the others
    image : the input (H, W, C) in the network's dtype
    input_grad : dL/d(image), (H, W, C)
    pre_activation_grads : dL/dz of conv and dense layers (before their activation), else None
    """

    target: int
    loss: str
    loss_value: float
    outputs: list[np.ndarray]
    output_grads: list[np.ndarray]
    weight_grads: list[np.ndarray | None]
    bias_grads: list[np.ndarray | None]
    image: np.ndarray
    input_grad: np.ndarray
    pre_activation_grads: list[np.ndarray | None]


def check_loss(network: Network, loss: str, target: int) -> None:
    """LossError unless `loss` is known, fits the network, and `target` is one of its outputs."""
    if loss not in LOSSES:
        raise LossError(f"loss must be 'cross_entropy' or 'score', got {loss!r}.")
    if loss == "cross_entropy" and not network.ends_in_softmax:
        raise LossError(
            "The cross-entropy loss -log p[target] needs a network that ends in a dense layer "
            "with softmax. Use loss=score (the raw output value), or end the stack in a dense "
            "layer with softmax."
        )
    if isinstance(target, bool) or not 0 <= target < network.n_classes:
        raise LossError(
            f"target {target!r} is not an output of this network; use 0..{network.n_classes - 1}."
        )


def loss_of(network: Network, image: np.ndarray, target: int, loss: str) -> float:
    """L for image (H, W, C) in the network's dtype (float64 for gradient checks)."""
    check_loss(network, loss, target)
    net = network.replica()
    out = net.forward_batch(image[None].astype(network.dtype))[-1].reshape(-1)
    if loss == "score":
        return float(out[target])
    return _cross_entropy(net.layers[-1].logits[0], target)  # type: ignore[attr-defined]


def _cross_entropy(z: np.ndarray, target: int) -> float:
    """-log softmax(z)[target] from the logits z (n,), as logsumexp(z) - z[target]: finite even
    where p[target] itself rounds to 0."""
    z = z.astype(np.float64)
    top = float(z.max())
    return float(top + np.log(np.exp(z - top).sum()) - z[target])


def gradients(network: Network, image: np.ndarray, target: int, loss: str) -> Gradients:
    """Forward image (H, W, C), then backward from L: every gradient, in the network's dtype."""
    check_loss(network, loss, target)
    net = network.replica()
    for layer in net.layers:  # every dL/dx is wanted here, the image's included
        if isinstance(layer, ConvLayer | DenseLayer):
            layer.need_input_grad = True
    image = image.astype(net.dtype)
    outputs = net.forward_batch(image[None])
    last = net.layers[-1]
    out = outputs[-1].reshape(-1)
    onehot = np.zeros(out.size, dtype=net.dtype)
    onehot[target] = 1.0
    if loss == "cross_entropy":
        value = _cross_entropy(last.logits[0], target)  # type: ignore[attr-defined]
        # dL/dp is -1/p[target] at the target and 0 elsewhere (shown at the output); the
        # backward pass itself starts from p - onehot at the logits, which needs no division.
        d_p = np.float64(-np.exp(min(value, 700.0)))
        d_last = (onehot * d_p).astype(net.dtype).reshape(outputs[-1].shape)
        grad = last.backward_logits((out - onehot)[None])
    else:
        value = float(out[target])
        d_last = onehot.reshape(outputs[-1].shape)
        grad = last.backward(d_last)
    grads = [grad]
    for layer in reversed(net.layers[:-1]):
        grad = layer.backward(grad)
        grads.append(grad)
    grads.reverse()  # grads[i] = dL/d(input of layer i)
    output_grads = [g[0] for g in grads[1:]] + [d_last[0]]
    learners = [isinstance(layer, ConvLayer | DenseLayer) for layer in net.layers]
    return Gradients(
        target=target,
        loss=loss,
        loss_value=value,
        outputs=[o[0] for o in outputs],
        output_grads=output_grads,
        weight_grads=[
            layer.grads["weights"] if learns else None
            for layer, learns in zip(net.layers, learners, strict=True)
        ],
        bias_grads=[
            layer.grads["bias"] if learns else None
            for layer, learns in zip(net.layers, learners, strict=True)
        ],
        image=image,
        input_grad=grads[0][0],
        pre_activation_grads=[
            (
                out - onehot
                if loss == "cross_entropy" and i == len(net.layers) - 1
                else _pre_activation_grad(layer, g, o)
            )
            if learns
            else None
            for i, (layer, learns, g, o) in enumerate(
                zip(net.layers, learners, output_grads, [o[0] for o in outputs], strict=True)
            )
        ],
    )


def _pre_activation_grad(
    layer: ConvLayer | DenseLayer, dy: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """dL/dz from dL/dy for one image: relu passes where y > 0, softmax by its Jacobian."""
    if layer.activation == "relu":
        return dy * (y > 0)
    if layer.activation == "softmax":
        return y * (dy - float(np.dot(dy, y)))
    return dy


@dataclass(frozen=True)
class GradientCheck:
    """A backprop gradient beside the central difference (L(w + h) - L(w - h)) / 2h."""

    analytic: float
    numeric: float
    relative_error: float  # |a - n| / max(|a| + |n|, tiny)
    h: float
    loss_plus: float
    loss_minus: float


def gradient_check(
    network: Network,
    image: np.ndarray,
    target: int,
    loss: str,
    index: int,
    *,
    weight: tuple[int, ...] | None = None,
    bias: int | None = None,
    h: float = 1e-3,
) -> GradientCheck:
    """Check dL/dW[weight] (or dL/db[bias]) of layer `index` by central differences, all in
    float64 on a copy of the network's weights (the network itself is not changed)."""
    layer = network.layers[index]
    if not isinstance(layer, ConvLayer | DenseLayer) or (weight is None) == (bias is None):
        raise LossError("A gradient check needs a conv or dense layer and one weight or bias.")
    exact = build_network(network.to_spec(), np.float64)
    name, where = ("weights", tuple(weight)) if weight is not None else ("bias", (bias,))
    image64 = image.astype(np.float64)
    analytic = gradients(exact, image64, target, loss)
    grad = analytic.weight_grads[index] if weight is not None else analytic.bias_grads[index]
    array = exact.layers[index].params[name]
    old = float(array[where])
    array[where] = old + h
    plus = loss_of(exact, image64, target, loss)
    array[where] = old - h
    minus = loss_of(exact, image64, target, loss)
    array[where] = old
    numeric = (plus - minus) / (2 * h)
    a = float(grad[where])
    error = abs(a - numeric) / max(abs(a) + abs(numeric), 1e-12)
    return GradientCheck(a, numeric, error, h, plus, minus)


def sgd_step(network: Network, grads: Gradients, learning_rate: float) -> NetworkSpec:
    """The network's spec after one plain gradient-descent step on every weight and bias:
    W <- W - learning_rate * dL/dW (float32, as the explorer runs it)."""
    layers = []
    for layer_spec, layer, dw, db in zip(
        network.spec.layers, network.layers, grads.weight_grads, grads.bias_grads, strict=True
    ):
        if dw is not None and db is not None:
            lr = np.float64(learning_rate)
            changes = {
                "weights": (layer.weights - lr * dw).astype(np.float32),
                "bias": (layer.bias - lr * db).astype(np.float32),
            }
            if isinstance(layer_spec, ConvSpec):
                changes["init"] = "he"  # weights given: the preset is already in them
            layer_spec = replace(layer_spec, **changes)
        layers.append(layer_spec)
    return replace(network.spec, layers=tuple(layers))
