"""A spec -> layers, running them, collecting each layer's output."""

from __future__ import annotations

import numpy as np

from .errors import SpecError
from .layers import Layer, build_layer
from .shapes import ShapeReport, infer_shapes, shape_text
from .spec import NetworkSpec


class Network:
    """Built layers of a valid spec, with the shape report that describes them."""

    def __init__(self, spec: NetworkSpec, layers: list[Layer], report: ShapeReport) -> None:
        self.spec = spec
        self.layers = layers
        self.report = report

    @property
    def input_shape(self) -> tuple[int, int, int]:
        inp = self.spec.input
        return (inp.height, inp.width, inp.channels)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the image through every layer.

        x : ndarray of shape (H, W, C) matching spec.input (converted to float32)
        Returns a list with each layer's output (len == len(layers)), float32.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            raise ValueError(
                f"Input of shape {shape_text(x.shape)} does not match the network input "
                f"{shape_text(self.input_shape)}."
            )
        outputs = []
        for layer in self.layers:
            x = layer.forward(x)
            outputs.append(x)
        return outputs


def build_network(spec: NetworkSpec) -> Network:
    """Check the spec and build its layers; weights not given come from spec.seed.

    Raises SpecError(report.issues) when the network is impossible.
    """
    report = infer_shapes(spec)
    if not report.valid:
        raise SpecError(report.issues)
    rng = np.random.default_rng(spec.seed)
    layers = [
        build_layer(layer, shape, rng)
        for layer, shape in zip(spec.layers, report.layers, strict=True)
    ]
    return Network(spec, layers, report)


def estimate_activation_bytes(report: ShapeReport) -> int:
    """Bytes a forward pass holds at its peak: the float32 input, every layer's output, plus the
    largest temporary buffer one layer needs (a padded copy of its input and one im2col chunk).

    For a memory limit; weights are extra (4 * report.total_params bytes).
    """
    cells = int(np.prod(report.input_shape)) if report.input_shape else 0
    cells += sum(int(np.prod(s.output_shape)) for s in report.layers)
    scratch = max((s.scratch_bytes for s in report.layers), default=0)
    return 4 * cells + scratch
