"""Optimisers that update parameter arrays in place from their gradients.

Each optimiser holds the list of (layer.params, layer.grads) dicts it updates; `step()` reads
every grads[name] and changes params[name] in place, so layers keep seeing the same arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ParamGroup = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


def _decayed(name: str, param: np.ndarray, grad: np.ndarray, weight_decay: float) -> np.ndarray:
    """L2 weight decay on weights only (biases are not shrunk)."""
    if weight_decay and name == "weights":
        return grad + weight_decay * param
    return grad


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum.

    v <- momentum * v + g;  p <- p - lr * v
    """

    def __init__(
        self,
        groups: Sequence[ParamGroup],
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        self.groups = list(groups)
        self.learning_rate, self.momentum, self.weight_decay = learning_rate, momentum, weight_decay
        self._velocity = [{k: np.zeros_like(v) for k, v in p.items()} for p, _ in self.groups]

    def step(self) -> None:
        for (params, grads), velocity in zip(self.groups, self._velocity, strict=True):
            for name, param in params.items():
                g = _decayed(name, param, grads[name], self.weight_decay)
                v = velocity[name]
                v *= self.momentum
                v += g
                param -= self.learning_rate * v


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction, and decoupled weight decay (AdamW).

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  p <- p - lr * m_hat / (sqrt(v_hat) + eps)
    Weight decay shrinks weights (not biases) by lr * weight_decay per step, apart from the
    gradient (Loshchilov & Hutter 2019): L2 added to g would be rescaled away by Adam.
    """

    def __init__(
        self,
        groups: Sequence[ParamGroup],
        learning_rate: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.groups = list(groups)
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self.weight_decay = weight_decay
        self._m = [{k: np.zeros_like(v) for k, v in p.items()} for p, _ in self.groups]
        self._v = [{k: np.zeros_like(v) for k, v in p.items()} for p, _ in self.groups]
        self._t = 0

    def step(self) -> None:
        self._t += 1
        b1, b2 = self.beta1, self.beta2
        # Bias corrections folded into one step size (the form in the paper's section 2).
        lr_t = float(self.learning_rate * np.sqrt(1 - b2**self._t) / (1 - b1**self._t))
        for (params, grads), m_group, v_group in zip(self.groups, self._m, self._v, strict=True):
            for name, param in params.items():
                g = grads[name]
                if self.weight_decay and name == "weights":  # decoupled, as in AdamW
                    param *= 1.0 - self.learning_rate * self.weight_decay
                m, v = m_group[name], v_group[name]
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * (g * g)
                param -= lr_t * m / (np.sqrt(v) + self.eps)


def make_optimizer(
    name: str,
    groups: Sequence[ParamGroup],
    learning_rate: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> SGD | Adam:
    """'sgd' (with `momentum`) or 'adam' over the given (params, grads) groups."""
    if name == "sgd":
        return SGD(groups, learning_rate, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return Adam(groups, learning_rate=learning_rate, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")
