// Each rule of the chain rule in words: how the layer above sends its gradient back to one
// value (explain_gradient's `rule`), or how a weight's or a bias's gradient is gathered.

const WORDS = {
  conv:
    "The conv layer above used this value in every window that covers it. Each (output cell, filter) " +
    "sends back its delta dL/dz times the kernel tap that met this value: the full convolution of the " +
    "deltas with the kernel turned 180°.",
  maxpool:
    "Max pooling passes each window's gradient to the cell that won the window (its maximum); every " +
    "other cell of the window gets 0.",
  avgpool: "Average pooling spreads each window's gradient evenly: every cell of the window gets dL/dy / F².",
  globalmaxpool: "Global max pooling gives the channel's gradient to its one maximum cell; the rest get 0.",
  globalavgpool: "Global average pooling spreads the channel's gradient over all H·W cells.",
  dense:
    "The dense layer above used this value in every unit: dL/dx[i] = Σ_u W[u, i] · dL/dz[u] " +
    "(dx = Wᵀδ); the terms are the units that matter most.",
  relu: "ReLU passes the gradient where its input a was positive and blocks it (0) where it was not.",
  flatten:
    "Flatten only moved the value into a vector, so its gradient is the vector's gradient at index " +
    "(y·W + x)·C + c.",
};

/** The words for explain_gradient reply `data`; ctx: {softmax, last, run, layer} of the stage. */
export function ruleWords(data, ctx = {}) {
  if (data.what === "weight") {
    return "A weight is used at every output position: its gradient adds up, over those positions, the input value it multiplied times the delta dL/dz it met.";
  }
  if (data.what === "bias") {
    return "A bias is added at every output position of its filter, so its gradient is the sum of the deltas dL/dz there.";
  }
  if (data.rule === "loss") {
    return data.loss === "cross_entropy"
      ? "The loss L = −log p[target] depends on the target's probability alone. Softmax and cross-entropy together then send dL/dz[u] = p[u] − 1 (target) or p[u] (any other class) into the dense layer: the deltas of the next stage."
      : "The loss L = output[target] is one output value: its gradient is 1 there and 0 everywhere else.";
  }
  let words = WORDS[data.rule] ?? "";
  const above = ctx.run ? ctx.run.layers.length - 1 === ctx.layer + 1 : false;
  if (data.rule === "dense" && above && data.loss === "cross_entropy") {
    words += " Here the deltas are softmax + cross-entropy's p[u] − 1[u = target].";
  }
  return words;
}
