// The one state object every view reads, and a tiny event bus to say what changed.
//
// Events: "network" (stack or input size edited), "structure" (layers added, removed, moved or
// replaced: the editor redraws), "shapes" (a validation reply arrived), "image" (the input image
// changed), "run" (a forward pass finished), "step" (the step-through selection moved),
// "models" (the shipped model list arrived), "datasets" and "kernels" (the server's data sets and
// preset kernels arrived), "train" (the training job followed moved on, or another was taken up),
// "mode" (Forward or Backward was opened), "gradients" (a /gradients reply for the run arrived,
// or the target or loss changed: state.backward.gradients is null until the reply).

export const state = {
  /** The network spec as the API takes it: {input: {height, width, channels}, seed, layers}. */
  network: {
    input: { height: 32, width: 32, channels: 3 },
    seed: 0,
    layers: [],
  },
  /** A shipped model {name, description, network, labels} while the stack still equals it. */
  model: null,
  /** Last /shapes reply (or null while none), and the spec string it answered. */
  shapes: null,
  shapesFor: "",
  /** Problems found before asking the API (a field that is not a number), by layer index. */
  localErrors: new Map(),
  /** The chosen image: a redraw function for the network's input size, and a caption. */
  image: { kind: "sample", name: "", render: null },
  /** Canvas at the network's input size holding exactly what the network will see. */
  inputCanvas: null,
  /**
   * Last /forward reply (or /step reply: it adds previous_run_id, target, loss, loss_before,
   * loss_after) plus {network, labels, inputPixels (ImageData), modelName, imageLabel (what a
   * drawn sample shows, e.g. "7", or null)}; null before a run.
   */
  run: null,
  /** True when the stack or the image changed after the last run. */
  stale: false,
  /** Step-through selection. pos indexes the layer's output positions (y * W + x, or i). */
  step: { layer: null, pos: 0, channel: 0, inChannel: 0, playing: false, speed: 4 },
  /** "forward" (activations and their step-through: the first view) or "backward". */
  mode: "forward",
  /**
   * The backward pass of state.run. target: the class the loss is of (null until chosen: the
   * true class where known, else the server's top class); loss: "cross_entropy" or "score";
   * gradients: the /gradients reply for (run, target, loss), or null while asked; step: the
   * backward step-through selection (layer: whose output gradient; pos as in state.step);
   * history: the losses of this run's line of gradient-descent steps [{run_id, loss}], oldest
   * first; before: the run a step started from (its probabilities are shown beside the new).
   */
  backward: {
    target: null,
    loss: "cross_entropy",
    gradients: null,
    step: { layer: null, pos: 0, channel: 0, playing: false, speed: 4 },
    history: [],
    before: null,
  },
  models: [],
  /** GET /datasets: what each data set's images are, its classes and sizes (empty until asked). */
  datasets: [],
  /** GET /kernels: the preset kernels a conv layer can start from (empty until asked). */
  kernels: [],
  /**
   * The training job the page follows. job: its last TrainStatus {job_id, status, history,
   * batch_losses, ...} or null; source: the EventSource following it; poll: the timer of the
   * status poll that replaces the stream when it fails (at most one of the two is set).
   */
  train: { job: null, source: null, poll: null },
  limits: {},
  version: "",
};

const listeners = new Map();

/** Call fn(detail) whenever event is emitted. */
export function on(event, fn) {
  if (!listeners.has(event)) listeners.set(event, new Set());
  listeners.get(event).add(fn);
}

export function emit(event, detail) {
  for (const fn of listeners.get(event) ?? []) fn(detail);
}

/** The spec to send to the API: a deep copy, so later edits cannot change a request in flight. */
export function currentSpec() {
  return structuredClone(state.network);
}

/** True while the stack is exactly the shipped model's (so a run can name the model instead). */
export function isModelUnchanged() {
  if (!state.model) return false;
  return JSON.stringify(state.model.network) === JSON.stringify(state.network);
}
