"""Every check a request passes before the engine, once: a request in, a checked network or a
checked training plan out, or an error that says what to change.

A network is checked in this order, each step once per request: the Pydantic schema (FastAPI, or
`parse_network_field` for a form field), this server's limits (settings.py) on its numbers,
`to_engine()` and the engine's arithmetic (`infer_shapes`), then the cost of a forward pass.
The result, a CheckedNetwork, holds the engine spec and the shape report, so building the
network (`CheckedNetwork.build`) infers nothing again. Training adds its own limits, the fit to
the data set and the memory of a batch (`check_training`); saliency and Grad-CAM check the run's
network and the query (`saliency_target`, `cam_layer`); the backward pass its loss and target
(`gradient_target`), which gradient to explain (`gradient_selector`) and a step's size
(`step_learning_rate`).

Problems are issue dicts (app/web/validation.py) with a `fix` where one change removes them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from app.cnn import (
    DenseLayer,
    LayerShape,
    Network,
    NetworkSpec,
    ShapeReport,
    build_network,
    estimate_activation_bytes,
    infer_shapes,
)
from app.cnn.attribution import cam_layers, last_conv_maps
from app.cnn.backprop import check_loss
from app.cnn.errors import Fix
from app.errors import (
    InvalidNetworkError,
    InvalidRequestError,
    IssueDict,
    SaliencyUnavailableError,
)
from app.learning.datasets import DIGIT_LABELS, SHAPE_LABELS
from app.schemas import AvgPoolLayer, ConvLayer, MaxPoolLayer, NetworkSpecModel
from app.schemas import DenseLayer as DenseLayerModel
from app.settings import Settings
from app.train_schemas import TrainRequest
from app.web.validation import (
    file_size,
    issue,
    issues_from_engine,
    issues_from_pydantic,
    summarize,
    unreadable_json,
)

# (height, width, channels), class names of each built-in data set: what a network must fit.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "digits": ((28, 28, 1), DIGIT_LABELS),
    "shapes": ((32, 32, 3), SHAPE_LABELS),
}


# -- one network -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckedNetwork:
    """A request's network after every check.

    model : the NetworkSpecModel as checked (for training: without its weights)
    spec : model.to_engine(), the engine's NetworkSpec
    report : infer_shapes(spec), or of the layers before the first one over a server limit
    issues : every problem (limits, arithmetic, cost) in layer order; [] when it can run
    activation_bytes : estimated peak bytes of one forward pass; None unless valid
    """

    model: NetworkSpecModel
    spec: NetworkSpec
    report: ShapeReport
    issues: list[IssueDict]
    activation_bytes: int | None

    @property
    def valid(self) -> bool:
        return not self.issues

    def listed_layers(self) -> list[LayerShape]:
        """The layers' shapes before the first problem (all of them when valid)."""
        stop = len(self.report.layers)  # the engine stops at its first impossible layer
        for found in self.issues:
            if found["layer"] is not None:
                stop = min(stop, found["layer"])
        return self.report.layers[:stop]

    def build(self) -> Network:
        """The network, built from the checked spec and report; InvalidNetworkError (422) when
        there is any problem."""
        if self.issues:
            raise InvalidNetworkError(summarize("The network", self.issues), self.issues)
        return build_network(self.spec, report=self.report)


def _over(index: int | None, field: str, what: str, value: int, most: int) -> IssueDict:
    return issue(
        index,
        field,
        f"{what}: {field} {value} is more than this server allows ({most}).",
        f"Use {field} {most} or less.",
        Fix.set_to(field, most),
    )


def limit_issues(model: NetworkSpecModel, settings: Settings) -> list[IssueDict]:
    """This server's size limits (settings.py) on the numbers in a spec, before any arithmetic."""
    found: list[IssueDict] = []
    side = settings.max_input_side
    for name in ("height", "width"):
        value = getattr(model.input, name)
        if value > side:
            found.append(
                issue(
                    None,
                    f"input.{name}",
                    f"Input {name} {value} is more than this server allows ({side}).",
                    f"Use an input {name} of at most {side}; uploads are resized to it.",
                    Fix.set_to(name, side),
                )
            )
    if len(model.layers) > settings.max_layers:
        found.append(
            issue(
                None,
                "layers",
                f"The network has {len(model.layers)} layers; this server allows "
                f"{settings.max_layers}.",
                f"Remove {len(model.layers) - settings.max_layers} layers.",
            )
        )
    window = settings.max_kernel_size
    for index, layer in enumerate(model.layers):
        checks: list[tuple[str, int, int]] = []
        if isinstance(layer, ConvLayer):
            checks = [
                ("filters", layer.filters, settings.max_filters),
                ("kernel_size", layer.kernel_size, window),
                ("stride", layer.stride, side),
            ]
            if isinstance(layer.padding, int):
                checks.append(("padding", layer.padding, window))
        elif isinstance(layer, MaxPoolLayer | AvgPoolLayer):
            checks = [("size", layer.size, window), ("padding", layer.padding, window)]
            checks += [("stride", layer.stride, side)] if layer.stride is not None else []
        elif isinstance(layer, DenseLayerModel):
            checks = [("units", layer.units, settings.max_units)]
        what = f"Layer {index} ({layer.type})"
        found += [_over(index, name, what, v, most) for name, v, most in checks if v > most]
    return found


def multiply_adds(model: NetworkSpecModel, report: ShapeReport) -> int:
    """Multiply-adds of one forward pass: conv Ho*Wo*K*F*F*C, dense units*inputs."""
    total = 0
    for shape in report.layers:
        layer = model.layers[shape.index]
        if isinstance(layer, ConvLayer):
            total += int(np.prod(shape.output_shape)) * layer.kernel_size**2 * shape.input_shape[2]
        elif isinstance(layer, DenseLayerModel):
            total += shape.output_shape[0] * shape.input_shape[0]
    return total


def cost_issues(
    model: NetworkSpecModel, report: ShapeReport, settings: Settings
) -> tuple[int, list[IssueDict]]:
    """(estimated bytes, issues) for a valid network's memory, parameters and arithmetic."""
    found: list[IssueDict] = []
    needed = estimate_activation_bytes(report)
    if needed > settings.max_activation_bytes:
        found.append(
            issue(
                None,
                None,
                f"One forward pass would need {needed / 2**20:.1f} MB (every layer's output at 4 "
                f"bytes per value, plus working buffers); this server allows "
                f"{settings.max_activation_bytes / 2**20:.1f} MB.",
                "Use a smaller input size or fewer filters, or shrink the maps earlier with a "
                "stride or pooling.",
            )
        )
    if report.total_params > settings.max_params:
        found.append(
            issue(
                None,
                None,
                f"The network has {report.total_params:,} parameters; this server allows "
                f"{settings.max_params:,}.",
                "Shrink the input of the dense layers (pool or stride first) or use fewer units "
                "or filters.",
            )
        )
    work = multiply_adds(model, report)
    if work > settings.max_multiply_adds:
        found.append(
            issue(
                None,
                None,
                f"One forward pass would take {work / 1e9:.1f} billion multiply-adds; this "
                f"server allows {settings.max_multiply_adds / 1e9:.1f} billion.",
                "Use a smaller input, fewer or smaller filters, or a stride or pooling earlier.",
            )
        )
    return needed, found


def check_network(model: NetworkSpecModel, settings: Settings) -> CheckedNetwork:
    """Every problem of a schema-valid network (limits, arithmetic, cost), each checked once.

    The engine only sees the layers before the first one over a limit, so no arithmetic (or
    search for a fitting stride) ever runs on numbers this server refuses.
    """
    limits = limit_issues(model, settings)
    checked = len(model.layers)
    for found in limits:
        checked = 0 if found["layer"] is None else min(checked, found["layer"])
    spec = model.to_engine()
    in_limits = spec if checked == len(spec.layers) else _first_layers(spec, checked)
    report = infer_shapes(in_limits)
    issues = sorted(
        limits + issues_from_engine(report.issues),
        key=lambda i: -1 if i["layer"] is None else i["layer"],
    )
    if issues:
        return CheckedNetwork(model, spec, report, issues, None)
    needed, costly = cost_issues(model, report, settings)
    return CheckedNetwork(model, spec, report, costly, None if costly else needed)


def _first_layers(spec: NetworkSpec, n: int) -> NetworkSpec:
    return dataclasses.replace(spec, layers=spec.layers[:n])


def parse_network_field(text: str) -> NetworkSpecModel:
    """The `network` form field (a JSON string) -> NetworkSpecModel; InvalidNetworkError (422)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        found = issue(
            None,
            "network",
            f"The network field is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}.",
            "Send the network spec as a JSON string (JSON.stringify(spec)).",
        )
        raise InvalidNetworkError(summarize("The network", [found]), [found]) from None
    except (ValueError, RecursionError) as e:  # a number over 4300 digits, nesting too deep
        message = f"The network field could not be read as JSON: {unreadable_json(e)}."
        found = issue(None, "network", message, None)
        raise InvalidNetworkError(summarize("The network", [found]), [found]) from None
    try:
        return NetworkSpecModel.model_validate(data)
    except ValidationError as e:
        found_all = issues_from_pydantic(e.errors())
        raise InvalidNetworkError(summarize("The network", found_all), found_all) from None


def network_or_model(network: str | None, model: str | None) -> tuple[str | None, str | None]:
    """/forward's two ways to name a network, an empty field as none: exactly one of them
    (else InvalidRequestError, 422)."""
    network, model = network or None, model or None
    if (network is None) == (model is None):
        both = network is not None
        found = issue(
            None,
            "model" if both else "network",
            "Give either network or model, not both."
            if both
            else "Give a network (a JSON network spec) or a model (a preset name).",
            "Send network to try your own layers, or model to use a trained preset "
            "(GET /api/v1/models lists them).",
        )
        raise InvalidRequestError(found["message"], [found])
    return network, model


def network_from_field(text: str, settings: Settings) -> Network:
    """The `network` form field -> a built Network, or InvalidNetworkError (422) saying why."""
    return check_network(parse_network_field(text), settings).build()


# -- a training plan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingPlan:
    """A training request after every check.

    request : the request, its network without inline weights (training starts from the seed)
    network : that network checked: the engine spec to train and its shape report
    """

    request: TrainRequest
    network: CheckedNetwork


def without_weights(model: NetworkSpecModel) -> NetworkSpecModel:
    """The architecture only: training ignores inline weights (so they are not checked)."""
    layers = [
        layer.model_copy(update={"weights": None, "bias": None})
        if isinstance(layer, ConvLayer | DenseLayerModel)
        else layer
        for layer in model.layers
    ]
    return model.model_copy(update={"layers": layers})


def training_limit_issues(body: TrainRequest, settings: Settings) -> list[IssueDict]:
    """This server's limits on epochs, batch size and learning rate."""
    checks = [
        ("epochs", body.epochs, settings.train_max_epochs),
        ("batch_size", body.batch_size, settings.train_max_batch_size),
        ("learning_rate", body.learning_rate, settings.train_max_learning_rate),
    ]
    return [
        issue(
            None,
            name,
            f"{name} {value:g} is more than this server allows ({most:g}).",
            f"Use {name} {most:g} or less.",
        )
        for name, value, most in checks
        if value > most
    ]


def fit_issues(model: NetworkSpecModel, dataset: str) -> list[IssueDict]:
    """Why a network cannot learn `dataset` as it stands (input size, last layer), or []."""
    (h, w, c), labels = DATASET_SHAPES[dataset]
    n = len(labels)
    what_fits = (
        f"The {dataset} dataset is {h}x{w}x{c} with {n} classes; set the input to {h}x{w}x{c} "
        f"and the last dense layer to {n} units with softmax."
    )
    found: list[IssueDict] = []
    inp = model.input
    if (inp.height, inp.width, inp.channels) != (h, w, c):
        found.append(
            issue(
                None,
                "input",
                f"The input is {inp.height}x{inp.width}x{inp.channels}, but the {dataset} images "
                f"are {h}x{w}x{c}.",
                what_fits,
                Fix.setting(f"set the input to {h}x{w}x{c}", height=h, width=w, channels=c),
            )
        )
    last_index = len(model.layers) - 1
    last = model.layers[last_index]
    if not isinstance(last, DenseLayerModel):
        found.append(
            issue(
                last_index,
                "type",
                f"Layer {last_index} ({last.type}) is last, but training needs a dense layer "
                "last, with one unit per class.",
                what_fits,
            )
        )
    else:
        if last.units != n:
            found.append(
                issue(
                    last_index,
                    "units",
                    f"Layer {last_index} (dense) has {last.units} units, but {dataset} has {n} "
                    "classes.",
                    what_fits,
                    Fix.set_to("units", n),
                )
            )
        if last.activation != "softmax":
            found.append(
                issue(
                    last_index,
                    "activation",
                    f"Layer {last_index} (dense) has activation {last.activation!r}; training "
                    "needs softmax on the last layer (its outputs become class probabilities).",
                    what_fits,
                    Fix.set_to("activation", "softmax"),
                )
            )
    for index, layer in enumerate(model.layers[:-1]):
        if isinstance(layer, DenseLayerModel) and layer.activation == "softmax":
            found.append(
                issue(
                    index,
                    "activation",
                    f"Layer {index} (dense) uses softmax but is not the last layer.",
                    "Use activation relu or none there; only the last layer may use softmax.",
                    Fix.set_to("activation", "relu"),
                )
            )
    return found


def batch_memory_issues(
    body: TrainRequest, report: ShapeReport, settings: Settings
) -> list[IssueDict]:
    """A batch keeps every layer's output and its gradient for each image (about 3 copies)."""
    cells = math.prod(report.input_shape) + sum(math.prod(s.output_shape) for s in report.layers)
    per_image = 4 * cells * 3
    if per_image * body.batch_size <= settings.max_activation_bytes:
        return []
    fits = settings.max_activation_bytes // per_image
    return [
        issue(
            None,
            "batch_size",
            f"A batch of {body.batch_size} would hold {file_size(per_image * body.batch_size)} "
            f"of activations and gradients; this server allows "
            f"{file_size(settings.max_activation_bytes)}.",
            f"Use batch_size {fits} or less, or a smaller network."
            if fits >= 1
            else "Use a smaller input or fewer filters: even one image does not fit.",
        )
    ]


def check_training(body: TrainRequest, settings: Settings) -> TrainingPlan:
    """The plan a training job runs, or the first kind of problem as an error (422): the
    request's limits, the network (without its weights), its fit to the data set, the memory
    of one batch."""
    limits = training_limit_issues(body, settings)
    if limits:
        raise InvalidRequestError(summarize("The training request", limits), limits)
    network = check_network(without_weights(body.network), settings)
    if network.issues:
        raise InvalidNetworkError(summarize("The network", network.issues), network.issues)
    fit = fit_issues(network.model, body.dataset)
    if fit:
        message = f"The network does not fit the {body.dataset} data set. {fit[0]['suggestion']}"
        raise InvalidNetworkError(message, fit)
    memory = batch_memory_issues(body, network.report, settings)
    if memory:
        raise InvalidRequestError(summarize("The training request", memory), memory)
    return TrainingPlan(body.model_copy(update={"network": network.model}), network)


# -- saliency and Grad-CAM on a kept run -------------------------------------------------------
def check_classifier(network: Network) -> None:
    """SaliencyUnavailableError (409) unless the network ends in a dense layer with softmax."""
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


def saliency_target(network: Network, last_output: np.ndarray, target: int | None) -> int:
    """The class index to explain: `target`, or the most probable class when None.

    last_output : ndarray of shape (n_classes,), the run's last layer. 409 unless the network is
    a classifier, 422 for a target that is not one of its classes.
    """
    check_classifier(network)
    classes = int(last_output.size)
    if target is None:
        return int(np.argmax(last_output))
    if not 0 <= target < classes:
        message = f"target {target} is not a class of this network; use 0..{classes - 1}."
        raise InvalidRequestError(message, [issue(None, "target", message)])
    return target


def cam_layer(network: Network, layer: int | None) -> int:
    """The layer whose maps Grad-CAM weighs: `layer` if its output is a stack of maps (else
    422), or when None the last conv layer's (attribution.last_conv_maps; 409 without one)."""
    if layer is None:
        found = last_conv_maps(network)
        if found is None:
            raise SaliencyUnavailableError(
                "Grad-CAM weighs the maps of a conv layer, and this network has none. Use the "
                "saliency map instead, or add a conv layer."
            )
        return found
    allowed = cam_layers(network)
    if layer not in allowed:
        listed = ", ".join(map(str, allowed)) or "none"
        message = (
            f"layer {layer} has no maps to weigh; Grad-CAM works on a layer whose output is "
            f"height x width x channels: {listed}."
        )
        raise InvalidRequestError(message, [issue(None, "layer", message)])
    return layer


# -- the backward pass of a kept run -----------------------------------------------------------
def gradient_target(
    network: Network, last_output: np.ndarray, target: int | None, loss: str
) -> int:
    """The output index the loss is of: `target`, or the run's largest output when None.

    last_output : the run's last layer, any shape (the target indexes it flattened). LossError
    (422, app/web/handlers.py) for a loss that does not fit the network or a target it lacks.
    """
    chosen = int(np.argmax(last_output.reshape(-1))) if target is None else target
    check_loss(network, loss, chosen)
    return chosen


def _refuse(field: str, message: str, suggestion: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(message, [issue(None, field, message, suggestion)])


def weight_position(text: str | None) -> tuple[int, ...] | None:
    """ "2,0,1,0" -> (2, 0, 1, 0); whether it fits the layer's weights is the engine's check."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise _refuse(
            "weight",
            f"weight must be whole numbers separated by commas, got {text!r}.",
            "Use weight=k,fy,fx,c for a conv layer's weight, weight=u,j for a dense layer's.",
        ) from None


def gradient_selector(
    *,
    yxc: tuple[int | None, int | None, int | None],
    i: int | None,
    weight: str | None,
    bias: int | None,
    check: bool,
) -> tuple[int, ...] | None:
    """Which one gradient an explain_gradient request asks for: 422 unless exactly one of
    y,x,c / i / weight / bias is given, and check=true only with a weight or a bias.
    Returns the parsed weight position (None unless weight= was given)."""
    given = [
        name
        for name, present in (
            ("y, x, c", any(v is not None for v in yxc)),
            ("i", i is not None),
            ("weight", weight is not None),
            ("bias", bias is not None),
        )
        if present
    ]
    if not given:
        raise _refuse(
            "y",
            "Say which gradient to explain: y=&x=&c= (a flat layer: i=) for dL/d(one output "
            "value), weight=k,fy,fx,c (dense: weight=u,j) for dL/dW, or bias=k for dL/db.",
        )
    if len(given) > 1:
        raise _refuse(
            given[1].split(",")[0],
            f"Ask for one gradient at a time: {' and '.join(given)} were given together.",
            "Give y=&x=&c= (or i=), weight= or bias=, one of them.",
        )
    if check and weight is None and bias is None:
        raise _refuse(
            "check",
            "check=true compares the gradient of one weight or bias with central differences; "
            "it needs weight= or bias=.",
            "Add weight=k,fy,fx,c (dense: u,j) or bias=k, or leave out check.",
        )
    return weight_position(weight)


def step_learning_rate(learning_rate: float, settings: Settings) -> float:
    """The learning rate of one step, at most train_max_learning_rate (422 beyond it); the
    schema has already refused 0, negative and non-finite ones."""
    most = settings.train_max_learning_rate
    if learning_rate > most:
        raise _refuse(
            "learning_rate",
            f"learning_rate {learning_rate:g} is more than this server allows ({most:g}).",
            f"Use a learning rate above 0 and at most {most:g}, such as {min(0.01, most):g}.",
        )
    return learning_rate


# -- feature visualisation ---------------------------------------------------------------------
def visualisation(
    network: Network, index: int, channel: int, steps: int, settings: Settings
) -> None:
    """422 unless layer `index` (already found) has channel `channel` and `steps` is within the
    server's visualise_max_steps."""
    channels = network.layers[index].output_shape[-1]
    if not 0 <= channel < channels:
        what = (
            "class" if network.ends_in_softmax and index == len(network.layers) - 1 else "channel"
        )
        raise _refuse(
            "channel",
            f"Layer {index} ({network.layers[index].type}) has {channels} channels; there is no "
            f"{what} {channel}.",
            f"Use channel 0..{channels - 1}.",
        )
    most = settings.visualise_max_steps
    if steps > most:
        raise _refuse(
            "steps",
            f"steps {steps} is more than this server allows ({most}).",
            f"Use at most {most} steps; 64 usually shows the pattern.",
        )
