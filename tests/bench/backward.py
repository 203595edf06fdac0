"""The backward pass of one run against its forward pass, in process, side by side.

Target (issue 13): every gradient of one run of the 224x224 pipeline (dL/d every layer's output,
dL/dW, dL/db, dL/d input; app.cnn.backprop.gradients, which runs its own forward first) takes at
most 3x the time of the forward pass alone (Network.forward, what /forward computes).
"""

from __future__ import annotations

from tests.bench.report import Row
from tests.bench.timing import TimingPlan, measure
from tests.bench.workloads import pipeline_image, pipeline_spec

BACKWARD_NAME = "backward_224"
BACKWARD_TARGET = 3.0


def run_backward(plan: TimingPlan) -> Row:
    from app.cnn.backprop import gradients
    from app.cnn.network import build_network

    network = build_network(pipeline_spec())
    image = pipeline_image()
    target = int(network.forward(image)[-1].argmax())
    result = measure(
        {
            "gradients": lambda: gradients(network, image, target, "cross_entropy"),
            "forward": lambda: network.forward(image),
        },
        plan,
    )
    return Row(
        group="backward",
        name=BACKWARD_NAME,
        subject="gradients",
        baseline="forward",
        subject_stats=result.stats["gradients"],
        baseline_stats=result.stats["forward"],
        ratio=result.ratio("gradients", "forward"),
        target=BACKWARD_TARGET,
        note="forward + every gradient of the pipeline_224 run (cross-entropy) vs its forward",
        extra={"layers": len(network.layers)},
    )
