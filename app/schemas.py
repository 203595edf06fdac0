"""The API's vocabulary: Pydantic models for every request and reply of /api/v1.

The single statement of the contract in /work/shared/API.md; /openapi.json and /docs are generated
from these models and their field descriptions. Network models convert to the engine's own frozen
dataclasses with `to_engine()`; the engine never sees Pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from app.cnn.kernels import PRESET_KERNELS
from app.cnn.spec import (
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    InputSpec,
    LayerSpec,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
)

_PRESETS = ", ".join(f'"{name}"' for name in sorted(PRESET_KERNELS))

# A saved model's name: a safe file name and Redis key, compared without case.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


def _rectangular(value: list | None, letters: str) -> list | None:
    """Refuse ragged nested lists (the engine checks the exact shape against the input)."""
    if value is None:
        return None
    try:
        np.asarray(value, dtype=np.float32)
    except ValueError:
        raise PydanticCustomError(
            "ragged_array",
            "is not a rectangular {letters} array: its rows have different lengths",
            {"letters": letters},
        ) from None
    return value


def _not_a_bool(value: Any) -> Any:
    """JSON true/false is not a count: Pydantic's lax mode would take it as 1/0."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "must be a whole number")
    return value


# A whole number in a request: what `int` accepts (also "3"), except true and false.
Int = Annotated[int, BeforeValidator(_not_a_bool)]
# The same, at least 1 (the bound inside, so that it stays `minimum` in an optional field's schema).
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_not_a_bool)]


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- layers ------------------------------------------------------------------------------------
class ConvLayer(_Layer):
    """K filters of size F x F x C sliding over the zero-padded input: [H, W, C] -> [Ho, Wo, K]."""

    type: Literal["conv"]
    filters: Int = Field(ge=1, description="K, the number of filters = output channels.")
    kernel_size: Int = Field(ge=1, description="F, the side of each square filter.")
    stride: Int = Field(1, ge=1, description="S, the step between filter positions.")
    padding: int | Literal["same", "valid"] = Field(
        0,
        description=(
            'P, zeros added on every side: a whole number >= 0, "same" = (F-1)/2 (odd F with '
            'stride 1; keeps the size) or "valid" = 0.'
        ),
    )
    activation: Literal["relu", "none"] = Field("relu", description="Applied after the sum.")
    weights: list[list[list[list[float]]]] | None = Field(
        None, description="Optional weights [K][F][F][C]; drawn from the seed (or init) if absent."
    )
    bias: list[float] | None = Field(None, description="Optional bias [K]; zeros if absent.")
    init: str = Field(
        "he",
        description=f'How absent weights are made: "he" (He-normal from the seed) or a 3x3 '
        f"preset kernel applied to every channel: {_PRESETS}.",
    )

    @field_validator("padding", mode="wrap")
    @classmethod
    def _padding(cls, value: Any, handler: Any) -> int | str:
        try:
            padding = handler(value)
        except ValueError:
            padding = None
        if padding is None or isinstance(value, bool) or (isinstance(padding, int) and padding < 0):
            raise PydanticCustomError(
                "padding", 'must be a whole number >= 0, "same" or "valid"'
            ) from None
        return padding

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: list | None) -> list | None:
        return _rectangular(value, "[K][F][F][C]")

    def to_engine(self) -> ConvSpec:
        return ConvSpec(
            filters=self.filters,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            activation=self.activation,
            weights=_array(self.weights),
            bias=_array(self.bias),
            init=self.init,
        )


class ReluLayer(_Layer):
    """max(x, 0) element by element; keeps the shape."""

    type: Literal["relu"]

    def to_engine(self) -> ReluSpec:
        return ReluSpec()


class _PoolLayer(_Layer):
    size: Int = Field(ge=1, description="F, the side of the square window.")
    stride: PositiveInt | None = Field(None, description="S, the step; defaults to size.")
    padding: Int = Field(
        0, ge=0, description="P, padding on every side; at most size/2 (max pads with -inf)."
    )


class MaxPoolLayer(_PoolLayer):
    """The largest value in each F x F window, channel by channel."""

    type: Literal["maxpool"]

    def to_engine(self) -> PoolSpec:
        return PoolSpec(kind="max", size=self.size, stride=self.stride, padding=self.padding)


class AvgPoolLayer(_PoolLayer):
    """The mean of each F x F window, channel by channel (padding counts as zeros)."""

    type: Literal["avgpool"]

    def to_engine(self) -> PoolSpec:
        return PoolSpec(kind="avg", size=self.size, stride=self.stride, padding=self.padding)


class GlobalMaxPoolLayer(_Layer):
    """The largest value of each channel: [H, W, C] -> [1, 1, C]."""

    type: Literal["globalmaxpool"]

    def to_engine(self) -> GlobalPoolSpec:
        return GlobalPoolSpec(kind="max")


class GlobalAvgPoolLayer(_Layer):
    """The mean of each channel: [H, W, C] -> [1, 1, C]."""

    type: Literal["globalavgpool"]

    def to_engine(self) -> GlobalPoolSpec:
        return GlobalPoolSpec(kind="avg")


class FlattenLayer(_Layer):
    """[H, W, C] -> [H*W*C], row-major with the channel fastest: i = (y*W + x)*C + c."""

    type: Literal["flatten"]

    def to_engine(self) -> FlattenSpec:
        return FlattenSpec()


class DenseLayer(_Layer):
    """z = W x + b on a flat input [n] -> [units], then the activation."""

    type: Literal["dense"]
    units: Int = Field(ge=1, description="Output values.")
    activation: Literal["none", "relu", "softmax"] = Field(
        "none", description="Applied to z; softmax turns the outputs into probabilities."
    )
    weights: list[list[float]] | None = Field(
        None, description="Optional weights [units][inputs]; He-normal from the seed if absent."
    )
    bias: list[float] | None = Field(None, description="Optional bias [units]; zeros if absent.")

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: list | None) -> list | None:
        return _rectangular(value, "[units][inputs]")

    def to_engine(self) -> DenseSpec:
        return DenseSpec(
            units=self.units,
            activation=self.activation,
            weights=_array(self.weights),
            bias=_array(self.bias),
        )


Layer = Annotated[
    ConvLayer
    | ReluLayer
    | MaxPoolLayer
    | AvgPoolLayer
    | GlobalMaxPoolLayer
    | GlobalAvgPoolLayer
    | FlattenLayer
    | DenseLayer,
    Field(discriminator="type"),
]

LAYER_MODELS: dict[str, type[_Layer]] = {
    "conv": ConvLayer,
    "relu": ReluLayer,
    "maxpool": MaxPoolLayer,
    "avgpool": AvgPoolLayer,
    "globalmaxpool": GlobalMaxPoolLayer,
    "globalavgpool": GlobalAvgPoolLayer,
    "flatten": FlattenLayer,
    "dense": DenseLayer,
}

# What a field accepts, in words; used to turn validation errors into suggestions.
FIELD_HINTS: dict[str, str] = {
    "filters": "a whole number >= 1, such as 8",
    "kernel_size": "a whole number >= 1, usually odd, such as 3 or 5",
    "size": "a whole number >= 1, such as 2",
    "stride": "a whole number >= 1 (1 keeps every position)",
    "padding": 'a whole number >= 0, "same" or "valid"',
    "units": "a whole number >= 1, such as 10",
    "init": f'"he" or a preset kernel: {_PRESETS}',
    "weights": "a nested list of numbers of the layer's weight shape, or leave it out",
    "bias": "a list of numbers, one per filter or unit, or leave it out",
    "height": "a whole number >= 1, such as 32",
    "width": "a whole number >= 1, such as 32",
    "channels": "1 (grayscale) or 3 (RGB)",
    "seed": "a whole number >= 0",
    "type": ", ".join(LAYER_MODELS),
}


def _array(value: list | None) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float32)


class InputModel(BaseModel):
    """The image as the network sees it; uploads are resized to height x width."""

    model_config = ConfigDict(extra="forbid")

    height: Int = Field(ge=1, description="Input height in pixels.")
    width: Int = Field(ge=1, description="Input width in pixels.")
    channels: Annotated[Literal[1, 3], BeforeValidator(_not_a_bool)] = Field(
        description="3 for RGB, 1 for grayscale."
    )


class NetworkSpecModel(BaseModel):
    """A network: the input size, a seed for weights not given, and the stack of layers."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "input": {"height": 32, "width": 32, "channels": 3},
                    "seed": 0,
                    "layers": [
                        {"type": "conv", "filters": 10, "kernel_size": 5, "padding": 2},
                        {"type": "maxpool", "size": 2, "stride": 2},
                        {"type": "flatten"},
                        {"type": "dense", "units": 10, "activation": "softmax"},
                    ],
                }
            ]
        },
    )

    input: InputModel
    seed: Int = Field(0, ge=0, description="Seed of the weights that are not given.")
    layers: list[Layer] = Field(min_length=1, description="The layers, applied in order.")

    def to_engine(self) -> NetworkSpec:
        """The engine's frozen NetworkSpec (weights as float32 ndarrays)."""
        layers: tuple[LayerSpec, ...] = tuple(layer.to_engine() for layer in self.layers)
        inp = InputSpec(self.input.height, self.input.width, self.input.channels)
        return NetworkSpec(input=inp, layers=layers, seed=self.seed)


# -- errors ------------------------------------------------------------------------------------
class IssueFix(BaseModel):
    """One change to the network that removes the problem, ready to apply: exactly one of `set`,
    `insert_before` and `drop` is given, the other two are null."""

    label: str = Field(description='What the change does, in a few words: "set stride to 2".')
    set: dict[str, int | str] | None = Field(
        None,
        description="Fields to write, with their new values: into layer `layer` of the issue, or "
        'into the network\'s `input` object when `layer` is null. E.g. {"stride": 2}, '
        '{"height": 512}.',
    )
    insert_before: dict[str, int | str] | None = Field(
        None,
        description='A layer to insert just before layer `layer` of the issue, e.g. {"type": '
        '"flatten"}.',
    )
    drop: list[str] | None = Field(
        None,
        description='Fields to remove from layer `layer` of the issue, e.g. ["weights", "bias"].',
    )


class Issue(BaseModel):
    """One problem, placed where a person can fix it."""

    layer: int | None = Field(description="0-based layer index, or null for the input / request.")
    field: str | None = Field(description='The field at fault, e.g. "stride"; null if none.')
    message: str = Field(description="What is wrong, with the numbers.")
    suggestion: str | None = Field(description="What would work instead, or null.")
    fix: IssueFix | None = Field(
        None,
        description="The one change that removes this problem, computed by the server (apply it "
        "and check again); null when no single change is known.",
    )


class ErrorDetail(BaseModel):
    message: str = Field(description="A summary a person can act on.")
    errors: list[Issue] | None = Field(None, description="Every problem (422 only).")

    model_config = ConfigDict(extra="allow")


class ErrorResponse(BaseModel):
    """The body of every 4xx reply."""

    detail: ErrorDetail


# -- health ------------------------------------------------------------------------------------
class HealthResponse(BaseModel):
    status: Literal["ok"] = Field(description='Always "ok" when the server answers.')
    version: str = Field(description="The cnn-explorer package version.")


# -- shapes ------------------------------------------------------------------------------------
class LayerShapeModel(BaseModel):
    index: int = Field(description="0-based layer index.")
    type: str = Field(description="Layer type, as in the spec.")
    input_shape: list[int] = Field(description="[h, w, c] or [n].")
    output_shape: list[int] = Field(description="[h, w, c] or [n].")
    params: int = Field(description="Learnable parameters: conv (F*F*D + 1)*K, dense (n + 1)*u.")
    formula: str = Field(description='The arithmetic, e.g. "(32 - 5 + 2*2)/1 + 1 = 32 -> ...".')


class ShapesResponse(BaseModel):
    valid: bool = Field(description="Whether every layer's arithmetic works out.")
    layers: list[LayerShapeModel] = Field(description="Layers up to the first invalid one.")
    total_params: int = Field(description="Sum of the listed layers' params.")
    errors: list[Issue] = Field(description="Why the network is invalid; empty when valid.")
    activation_bytes: int | None = Field(
        None,
        description="Estimated peak memory of one forward pass in bytes (4 per value of the "
        "input and every output, plus the largest working buffer); null when invalid.",
    )


# -- forward -----------------------------------------------------------------------------------
class LayerStats(BaseModel):
    min: float
    max: float
    mean: float


class ForwardLayer(BaseModel):
    index: int = Field(description="0-based layer index.")
    type: str = Field(description="Layer type, as in the spec.")
    output_shape: list[int] = Field(description="[h, w, c] or [n].")
    params: int = Field(description="Learnable parameters of the layer.")
    stats: LayerStats = Field(description="Min, max and mean of the layer's output.")
    grid_url: str = Field(description="PNG of all channels tiled (a flat layer: one strip/tile).")
    channel_url: str = Field(
        description="PNG of one channel at native resolution; replace the literal {c} with a "
        "channel number 0..C-1 (a flat layer has the one channel 0)."
    )
    array_url: str = Field(description="The raw float32 output as a .npy file.")
    explain_url: str = Field(
        description="How one value was computed; add ?y=&x=&c= (flat layers: ?i=)."
    )


class TopClass(BaseModel):
    index: int = Field(description="Output index.")
    label: str | None = Field(description="Class name from the model's labels, or null.")
    p: float = Field(description="Probability.")


class ForwardOutput(BaseModel):
    values: list[float] = Field(
        description="The last layer's output, flattened row-major (channel fastest); at most "
        "max_output_values of them (see truncated)."
    )
    probabilities: list[float] | None = Field(
        description="The same values when the last layer is a dense softmax, else null."
    )
    top: list[TopClass] | None = Field(
        description="Up to 5 most probable outputs, when probabilities is not null."
    )
    size: int = Field(description="How many values the last layer has in all.")
    truncated: bool = Field(description="True when values holds only the first ones.")


class ImageInfo(BaseModel):
    format: str = Field(description='Detected file format, e.g. "PNG".')
    original_shape: list[int] = Field(description="[h, w] of the uploaded image.")
    resized: bool = Field(description="Whether it was resized (Lanczos) to the input size.")


class ForwardResponse(BaseModel):
    run_id: str = Field(description="Names the kept run in the URLs below.")
    input_shape: list[int] = Field(description="[h, w, c] of the network input.")
    input_url: str = Field(description="PNG of the image as the network saw it.")
    image: ImageInfo = Field(description="What was uploaded and what was done to it.")
    model: str | None = Field(description="The preset model used, or null.")
    layers: list[ForwardLayer]
    output: ForwardOutput


# -- explain -----------------------------------------------------------------------------------
class Window(BaseModel):
    model_config = ConfigDict(extra="allow")

    top: int = Field(description="Row of the window's top edge in unpadded input coordinates.")
    left: int = Field(description="Column of the window's left edge (can be negative).")
    size: int = Field(description="Window side F.")


class _Explain(BaseModel):
    model_config = ConfigDict(extra="allow")

    layer: int = Field(description="The layer index explained.")
    value: float = Field(description="The output value, as in the .npy array.")


class ConvExplain(_Explain):
    type: Literal["conv"]
    patch: list[list[list[float]]] = Field(description="Input window [F][F][C], padding as 0.")
    kernel: list[list[list[float]]] = Field(description="The filter [F][F][C].")
    bias: float
    products_sum: float = Field(description="Sum of patch * kernel.")
    pre_activation: float = Field(description="products_sum + bias.")
    window: Window


class PoolExplain(_Explain):
    type: Literal["maxpool", "avgpool", "globalmaxpool", "globalavgpool"]
    window_values: list[list[float | None]] = Field(
        description="The window of channel c, [F][F]; max pooling's padded cells are null."
    )
    window: Window


class FlattenExplain(_Explain):
    type: Literal["flatten"]
    source: list[int] = Field(description="[y, x, c] in the input that became value i.")


class ReluExplain(_Explain):
    type: Literal["relu"]
    input: float = Field(description="The value before max(v, 0).")


class Contribution(BaseModel):
    input: int = Field(description="Input index j.")
    weight: float = Field(description="W[i][j].")
    product: float = Field(description="W[i][j] * x[j].")


class DenseExplain(_Explain):
    type: Literal["dense"]
    top_contributions: list[Contribution] = Field(description="Largest |W[i][j] * x[j]| first.")
    bias: float
    pre_activation: float | None = Field(None, description="z before the activation.")


ExplainResponse = Annotated[
    ConvExplain | PoolExplain | FlattenExplain | ReluExplain | DenseExplain,
    Field(discriminator="type"),
]


# -- the backward pass -------------------------------------------------------------------------
LossName = Literal["cross_entropy", "score"]


class GradientStats(BaseModel):
    min: float = Field(description="Smallest value of the gradient.")
    max: float = Field(description="Largest value of the gradient.")
    mean: float = Field(description="Mean value of the gradient.")
    abs_mean: float = Field(description="Mean of |value|: how strongly the loss depends on it.")


class GradientLayer(BaseModel):
    index: int = Field(description="0-based layer index.")
    type: str = Field(description="Layer type, as in the spec.")
    output_shape: list[int] = Field(description="[h, w, c] or [n], as the gradient's.")
    stats: GradientStats = Field(description="Of dL/d(the layer's output).")
    scale: float = Field(
        description="max |dL/d(output)|: grid_url's colours run from -scale (blue) through 0 (the "
        "middle colour, near white) to +scale (red), the same for every channel."
    )
    grid_url: str = Field(
        description="PNG of dL/d(output), all channels tiled as in the layer's own grid, in "
        "diverging colours."
    )
    gradient_url: str = Field(description="dL/d(output) as a float32 .npy, [h, w, c] or [n].")
    weight_gradient_url: str | None = Field(
        description="dL/dW as a float32 .npy (conv [K][F][F][C], dense [units][inputs]); null "
        "for a layer without weights."
    )
    bias_gradient_url: str | None = Field(
        description="dL/db as a float32 .npy [K]; null for a layer without weights."
    )
    explain_url: str = Field(
        description="How one gradient value was computed: add &y=&x=&c= (flat layers &i=), "
        "&weight=k,fy,fx,c (dense &weight=u,j) or &bias=k."
    )


class GradientsResponse(BaseModel):
    run_id: str = Field(description="The run whose backward pass this is.")
    target: int = Field(description="The output index the loss is of (the class, for softmax).")
    label: str | None = Field(description="The target's class name from the labels, or null.")
    loss: LossName = Field(
        description='"cross_entropy": L = -log p[target]; "score": L = output[target].'
    )
    loss_value: float = Field(description="L for this run's image.")
    input_gradient_url: str = Field(description="dL/d(input) as a float32 .npy [H, W, C].")
    input_grid_url: str = Field(description="PNG of dL/d(input), its channels tiled, diverging.")
    input_stats: GradientStats = Field(description="Of dL/d(input).")
    layers: list[GradientLayer] = Field(description="Every layer, input side first.")


class GradientTerm(BaseModel):
    """One term of the chain rule: `product` and the factors it is made of, with where they
    came from (e.g. "weight", "delta", "output", "tap", "input_value", "share", "won"). A long
    sum ends with one {"rest": true, "count", "product"} term holding the sum of the others."""

    model_config = ConfigDict(extra="allow")

    product: float = Field(description="This term's share of the value.")


class GradientCheckInfo(BaseModel):
    analytic: float = Field(description="The backward pass's value, computed in float64.")
    numeric: float = Field(description="(loss_plus - loss_minus) / 2h.")
    relative_error: float = Field(description="|analytic - numeric| / (|analytic| + |numeric|).")
    h: float = Field(description="The change made to the weight or bias, up and down.")
    loss_plus: float = Field(description="L with the weight (or bias) raised by h.")
    loss_minus: float = Field(description="L with the weight (or bias) lowered by h.")


class GradientExplainResponse(BaseModel):
    """How one gradient value was computed: the chain rule written out in numbers."""

    model_config = ConfigDict(extra="allow")

    value: float = Field(description="The gradient value, as in its .npy array.")
    formula: str = Field(description="The rule, with this value's indices filled in.")
    terms: list[GradientTerm] = Field(
        description="What adds up to value: their products sum to it (to float32 rounding); "
        "the largest |product| first."
    )
    what: Literal["output", "weight", "bias"] = Field(description="Which kind of gradient.")
    layer: int = Field(description="The layer index.")
    type: str = Field(description="The layer's type.")
    loss: LossName = Field(description="The loss L the gradient is of.")
    target: int = Field(description="The output index L is of.")
    rule: str | None = Field(
        None,
        description='For "output": the layer above that sends the gradient back ("conv", '
        '"maxpool", "dense", "relu", "flatten", ...; "loss" for the last layer).',
    )
    position: list[int] | None = Field(None, description='[y, x, c] or [i], for "output".')
    weight: list[int] | None = Field(None, description='[k, fy, fx, c] or [u, j], for "weight".')
    bias: int | None = Field(None, description='k, for "bias".')
    check: GradientCheckInfo | None = Field(
        None, description="With check=true: the same value by central differences."
    )


class StepRequest(BaseModel):
    """One plain gradient-descent step on every weight and bias: W <- W - learning_rate * dL/dW."""

    # Unknown fields are ignored rather than refused: the request validator would word them as
    # fields of a network spec (app/web/validation.py); a missing learning_rate is still named.
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"target": 3, "learning_rate": 0.01}]}
    )

    target: Int | None = Field(
        None, description="The output index whose loss is lowered; default: the top one."
    )
    learning_rate: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="The step size, > 0 and at most the server's train_max_learning_rate.",
    )
    loss: LossName = Field("cross_entropy", description="The loss stepped down.")


class StepResponse(ForwardResponse):
    """The forward reply of the new run (same image, the stepped weights, the same labels and
    model), with the loss before and after the step. `image` is the previous run's input as the
    network saw it (format "run", not resized again)."""

    previous_run_id: str = Field(description="The run whose gradients made the step.")
    target: int = Field(description="The output index whose loss was stepped down.")
    loss: LossName = Field(description="The loss stepped down.")
    learning_rate: float = Field(description="The step size used.")
    loss_before: float = Field(description="L of the previous run.")
    loss_after: float = Field(description="L of the new run (its /gradients loss_value).")


# -- models ------------------------------------------------------------------------------------
class PresetModelInfo(BaseModel):
    name: str = Field(description="Pass it as `model` to POST /api/v1/forward.")
    description: str
    network: NetworkSpecModel = Field(
        description="The architecture, without the trained weights (those are used when the "
        "model is named in /forward)."
    )
    labels: list[str] | None = Field(description="Class names of the outputs, or null.")
    accuracy: float | None = Field(None, description="Test accuracy, 0..1.")
    test_split: str | None = Field(None, description="How the test set was held out.")
    dataset: str | None = Field(None, description="What it was trained on.")
    command: str | None = Field(None, description="The command that trained it.")
    source: Literal["shipped", "trained"] = Field(
        "shipped",
        description='"shipped" with the server, or "trained" here with POST /api/v1/train (only '
        "those can be deleted).",
    )


# -- kernels -----------------------------------------------------------------------------------
class KernelInfo(BaseModel):
    name: str = Field(description='Give it as a conv layer\'s `init`, e.g. "sobel_x".')
    label: str = Field(description='A name for people, e.g. "Sobel x".')
    size: int = Field(
        description="F: the kernel is F x F; a conv layer using it needs kernel_size F."
    )
    values: list[list[float]] = Field(
        description="The kernel [F][F]. Each filter applies it to every input channel, divided by "
        "the number of channels C."
    )


class KernelsResponse(BaseModel):
    kernels: list[KernelInfo] = Field(description="Every preset kernel this server knows.")


# -- data sets ---------------------------------------------------------------------------------
class DatasetInfo(BaseModel):
    """A data set the server can train on."""

    name: str = Field(description="Give it as `dataset` to POST /api/v1/train.")
    description: str = Field(description="What the images are and where they come from.")
    input: InputModel = Field(
        description="The images' size: a network trained on the set takes exactly this input."
    )
    classes: list[str] = Field(
        description="Class names, in the order of the network's outputs; the last layer needs "
        "one unit per class."
    )
    counts: list[int] = Field(
        description="Images of each class in the whole set (train and test), as in classes."
    )
    train: int = Field(description="Images in the training split.")
    test: int = Field(description="Images held out to measure the test accuracy.")
    source: Literal["built-in"] = Field(description='"built-in": ships with the server.')
    sample: Literal["digit", "shapes"] | None = Field(
        description="Which of the page's own sample images suits the set (a drawn digit, a "
        "generated shape), or null."
    )


class VisualisationResponse(BaseModel):
    """An input that excites one channel of a layer (a final softmax layer: one class)."""

    layer: int = Field(description="The layer index.")
    channel: int = Field(description="The channel (or class) whose mean (or logit) was raised.")
    steps: int = Field(description="Gradient-ascent steps taken from the seeded noise.")
    seed: int = Field(description="Seed of the starting noise and the jitter.")
    objective: list[float] = Field(
        description="The objective before each step and after the last (steps + 1 values): the "
        "channel's mean activation, or the class's logit for a final softmax layer."
    )
    image_url: str = Field(description="The image as a PNG at the network's input size.")
    array_url: str = Field(description="The image as float32 (H, W, C) .npy in [0, 1].")
