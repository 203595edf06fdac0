"""Engine workloads, each paired with the same computation in PyTorch (same weights).

NumPy sees channels-last [H, W, C] arrays; PyTorch sees NCHW with batch 1. Both get their input in
their own layout ready-made, so only the computation is timed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from tests.bench.report import Row
from tests.bench.timing import TimingPlan, measure

RTOL = 1e-4


@dataclass(frozen=True)
class ConvWorkload:
    """One convolution: C x H x W input, K filters of F x F, stride, zero padding."""

    name: str
    channels: int
    size: int
    filters: int
    kernel: int
    stride: int
    padding: int
    target: float

    @property
    def label(self) -> str:
        return (
            f"{self.channels}x{self.size}x{self.size} -> {self.filters} "
            f"{self.kernel}x{self.kernel} s{self.stride} p{self.padding}"
        )


CONV_WORKLOADS = (
    ConvWorkload("conv_3x224_16k3", 3, 224, 16, 3, 1, 1, 1.5),
    ConvWorkload("conv_16x112_32k3", 16, 112, 32, 3, 1, 1, 1.5),
    ConvWorkload("conv_3x32_8k5", 3, 32, 8, 5, 1, 2, 1.5),
    ConvWorkload("conv_64x56_64k3", 64, 56, 64, 3, 1, 1, 1.5),
    # Stride 2 over a big image with a 7x7 kernel reads far more than it computes: memory-bound.
    ConvWorkload("conv_3x512_8k7s2", 3, 512, 8, 7, 2, 3, 3.0),
)

PIPELINE_NAME = "pipeline_224"
PIPELINE_TARGET = 1.0


def fallback_conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """Plain im2col conv, used only while app.cnn.im2col does not exist yet.

    x (H, W, C), w (K, F, F, C), b (K,) -> (Ho, Wo, K) float32.
    """
    k, f, _, c = w.shape
    xp = np.pad(x, ((padding, padding), (padding, padding), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (f, f), axis=(0, 1))
    windows = windows[::stride, ::stride]  # (Ho, Wo, C, F, F)
    ho, wo = windows.shape[:2]
    cols = windows.transpose(0, 1, 3, 4, 2).reshape(ho * wo, f * f * c)
    return (cols @ w.reshape(k, -1).T + b).reshape(ho, wo, k).astype(np.float32)


def engine_conv2d() -> tuple[Callable[..., np.ndarray], str]:
    """(conv2d, where it came from): app.cnn.im2col if importable, else the local fallback."""
    try:
        from app.cnn.im2col import conv2d
    except ImportError as error:
        return fallback_conv2d, f"fallback (app.cnn.im2col not importable: {error})"
    return conv2d, "app.cnn.im2col.conv2d"


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: one number for 'agree to 1e-4 relative'."""
    scale = float(np.max(np.abs(want))) or 1.0
    return float(np.max(np.abs(got - want))) / scale


def _check_agreement(name: str, got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        raise AssertionError(f"{name}: NumPy shape {got.shape} != PyTorch shape {want.shape}")
    error = relative_error(got, want)
    if not error <= RTOL:
        raise AssertionError(f"{name}: NumPy and PyTorch differ by {error:.2e} relative (> {RTOL})")
    return error


def run_conv(workload: ConvWorkload, torch: ModuleType, plan: TimingPlan) -> Row:
    """Time one conv in NumPy (engine), PyTorch, and the bare NumPy GEMM it cannot beat."""
    conv2d, source = engine_conv2d()
    rng = np.random.default_rng(0)
    c, n, k, f = workload.channels, workload.size, workload.filters, workload.kernel
    x = rng.random((n, n, c), dtype=np.float32)
    w = (rng.standard_normal((k, f, f, c), dtype=np.float32) * np.sqrt(2 / (f * f * c))).astype(
        np.float32
    )
    b = rng.standard_normal(k, dtype=np.float32) * np.float32(0.1)
    s, p = workload.stride, workload.padding

    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))[None])
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2)))
    bt = torch.from_numpy(b)
    conv_t = torch.nn.functional.conv2d

    def torch_conv() -> Any:
        with torch.inference_mode():
            return conv_t(xt, wt, bt, stride=s, padding=p)

    got = conv2d(x, w, b, s, p)
    want = torch_conv()[0].permute(1, 2, 0).numpy()
    error = _check_agreement(workload.name, got, want)

    # The GEMM at the heart of im2col, on ready-made columns: the floor for this approach.
    ho, wo = got.shape[:2]
    cols = rng.random((ho * wo, f * f * c), dtype=np.float32)
    w_mat = np.ascontiguousarray(w.reshape(k, -1).T)
    gemm_out = np.empty((ho * wo, k), dtype=np.float32)

    result = measure(
        {
            "numpy": lambda: conv2d(x, w, b, s, p),
            "torch": torch_conv,
            "gemm": lambda: np.matmul(cols, w_mat, out=gemm_out),
        },
        plan,
    )
    gemm = result.stats["gemm"]
    return Row(
        group="conv",
        name=workload.name,
        subject="numpy",
        baseline="torch",
        subject_stats=result.stats["numpy"],
        baseline_stats=result.stats["torch"],
        ratio=result.ratio("numpy", "torch"),
        target=workload.target,
        note=(
            f"{workload.label}; bare GEMM ({ho * wo}x{f * f * c} @ {f * f * c}x{k}) "
            f"{gemm.median_ms:.3f} ms = {result.ratio('gemm', 'torch'):.2f}x torch; "
            f"rel err {error:.1e}" + ("" if source.startswith("app.") else f"; {source}")
        ),
        extra={
            "label": workload.label,
            "gemm_stats": gemm.to_json(),
            "gemm_over_torch": result.ratio("gemm", "torch"),
            "rel_error": error,
            "conv2d": source,
        },
    )


def pipeline_spec() -> Any:
    """conv16 3x3 p1, relu, maxpool2, conv32 3x3 p1, relu, maxpool2, flatten, dense10 softmax."""
    from app.cnn.spec import (
        ConvSpec,
        DenseSpec,
        FlattenSpec,
        InputSpec,
        NetworkSpec,
        PoolSpec,
        ReluSpec,
    )

    return NetworkSpec(
        input=InputSpec(224, 224, 3),
        layers=(
            ConvSpec(filters=16, kernel_size=3, stride=1, padding=1, activation="none"),
            ReluSpec(),
            PoolSpec(kind="max", size=2),
            ConvSpec(filters=32, kernel_size=3, stride=1, padding=1, activation="none"),
            ReluSpec(),
            PoolSpec(kind="max", size=2),
            FlattenSpec(),
            DenseSpec(units=10, activation="softmax"),
        ),
        seed=0,
    )


def pipeline_image(size: int = 224) -> np.ndarray:
    """A deterministic RGB test image (H, W, 3) float32 in [0, 1]: smooth gradients plus edges."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    red = 0.5 + 0.5 * np.sin(12 * xx) * np.cos(9 * yy)
    green = ((xx * 8).astype(int) + (yy * 8).astype(int)) % 2 * 0.8 + 0.1
    blue = np.clip(1.2 - 2 * np.hypot(xx - 0.5, yy - 0.5), 0, 1)
    return np.stack([red, green, blue], axis=-1).astype(np.float32)


def torch_pipeline(network: Any, torch: ModuleType) -> Callable[[Any], Any]:
    """The same network in PyTorch, built from the NumPy network's weights (NCHW, batch 1)."""
    functional = torch.nn.functional
    steps: list[Callable[[Any], Any]] = []
    flattened_from: tuple[int, ...] | None = None  # (H, W, C) that flatten unrolled
    for layer in network.layers:
        kind = layer.spec.type
        if kind == "conv":
            weight = torch.from_numpy(np.ascontiguousarray(layer.weights.transpose(0, 3, 1, 2)))
            bias = torch.from_numpy(np.ascontiguousarray(layer.bias))
            stride, padding = layer.spec.stride, int(layer.spec.padding)
            steps.append(
                lambda t, w=weight, b=bias, s=stride, p=padding: functional.conv2d(
                    t, w, b, stride=s, padding=p
                )
            )
            if layer.spec.activation == "relu":
                steps.append(functional.relu)
        elif kind == "relu":
            steps.append(functional.relu)
        elif kind == "maxpool":
            size, stride = layer.spec.size, layer.spec.effective_stride
            steps.append(lambda t, k=size, s=stride: functional.max_pool2d(t, k, s))
        elif kind == "flatten":
            flattened_from = tuple(layer.input_shape)
            steps.append(lambda t: torch.flatten(t, 1))
        elif kind == "dense":
            weights = layer.weights  # (units, inputs), columns in (y, x, c) order
            if flattened_from is not None and len(flattened_from) == 3:
                # PyTorch flattens NCHW as (c, y, x): reorder the columns once, at build time.
                h, w, c = flattened_from
                units = len(weights)
                weights = weights.reshape(units, h, w, c).transpose(0, 3, 1, 2).reshape(units, -1)
            dense_w = torch.from_numpy(np.ascontiguousarray(weights))
            dense_b = torch.from_numpy(np.ascontiguousarray(layer.bias))
            steps.append(lambda t, w=dense_w, b=dense_b: functional.linear(t, w, b))
            if layer.spec.activation == "softmax":
                steps.append(lambda t: functional.softmax(t, dim=1))
            elif layer.spec.activation == "relu":
                steps.append(functional.relu)
        else:
            raise ValueError(f"pipeline benchmark has no PyTorch twin for layer type {kind!r}")

    def run(t: Any) -> Any:
        with torch.inference_mode():
            for step in steps:
                t = step(t)
            return t

    return run


def run_pipeline(torch: ModuleType, plan: TimingPlan) -> Row:
    """Whole network forward: app.cnn.network vs the same layers in PyTorch."""
    from app.cnn.network import build_network

    network = build_network(pipeline_spec())
    run_torch = torch_pipeline(network, torch)
    image = pipeline_image()
    image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))[None])

    outputs = network.forward(image)
    error = _check_agreement(PIPELINE_NAME, outputs[-1], run_torch(image_t)[0].numpy())
    result = measure(
        {"numpy": lambda: network.forward(image), "torch": lambda: run_torch(image_t)}, plan
    )
    return Row(
        group="pipeline",
        name=PIPELINE_NAME,
        subject="numpy",
        baseline="torch",
        subject_stats=result.stats["numpy"],
        baseline_stats=result.stats["torch"],
        ratio=result.ratio("numpy", "torch"),
        target=PIPELINE_TARGET,
        note="conv16-relu-maxpool2-conv32-relu-maxpool2-flatten-dense10-softmax on 224x224x3; "
        f"rel err {error:.1e}",
        extra={"rel_error": error, "layers": len(network.layers)},
    )
