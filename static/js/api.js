// The page's only door to the server: the REST API of /work/shared/API.md, version 1.

const BASE = "/api/v1";

/** An API failure with the server's own words (the JSON "detail"). */
export class ApiError extends Error {
  constructor(status, message, detail = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

/**
 * The human message inside a "detail": a string; {message, errors}; or FastAPI's list of
 * validation errors [{loc, msg}].
 */
export function detailMessage(detail) {
  if (detail === null || detail === undefined) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        if (typeof item === "string") return item;
        const loc = (item.loc ?? []).filter((part) => part !== "body").join(".");
        return loc ? `${loc}: ${item.msg}` : String(item.msg ?? JSON.stringify(item));
      })
      .join("; ");
  }
  if (typeof detail === "object") {
    if (detail.message) return String(detail.message);
    return JSON.stringify(detail);
  }
  return String(detail);
}

/**
 * fetch(url, options), or an ApiError carrying the server's words (its JSON "detail") when the
 * server cannot be reached or answers with an error status. Aborts are thrown as they are.
 */
async function fetchOk(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, `Could not reach the server (${error.message}).`);
  }
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    const message = detailMessage(body?.detail) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, body?.detail ?? null);
  }
  return response;
}

async function request(path, options = {}) {
  return fetchOk(BASE + path, options);
}

async function json(path, options) {
  return (await request(path, options)).json();
}

export const api = {
  health: () => json("/health"),

  models: () => json("/models"),

  /** DELETE /models/{name}: a trained model (204, no body). */
  deleteModel: async (name) => {
    await request(`/models/${encodeURIComponent(name)}`, { method: "DELETE" });
  },

  /** GET /datasets: [{name, description, input, classes, counts, train, test, source, sample}]. */
  datasets: () => json("/datasets"),

  /** GET /kernels: the preset kernels a conv layer's `init` may name [{name, label, size, values}]. */
  kernels: async () => (await json("/kernels")).kernels,

  /** POST /shapes: {valid, layers, total_params, errors}. */
  shapes: (spec, signal) =>
    json("/shapes", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(spec),
      signal,
    }),

  /** POST /forward with a PNG blob and either {network: spec} or {model: name}. */
  forward: (pngBlob, { network = null, model = null }) => {
    const form = new FormData();
    form.append("image", pngBlob, "input.png");
    if (model) form.append("model", model);
    else form.append("network", JSON.stringify(network));
    return json("/forward", { method: "POST", body: form });
  },

  /** GET .../layers/{i}/explain with {y, x, c} or {i}. */
  explain: (runId, layer, query) => {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) params.set(key, String(value));
    return json(`/runs/${encodeURIComponent(runId)}/layers/${layer}/explain?${params}`);
  },

  /**
   * GET /runs/{id}/gradients?target=&loss=: {target, label, loss, loss_value, input_grid_url,
   * input_stats, layers: [{index, type, stats, scale, grid_url, gradient_url, ...}]}. A null
   * target lets the server choose (the top class); the reply says which.
   */
  gradients: (runId, { target = null, loss = "cross_entropy" } = {}, signal = undefined) => {
    const params = new URLSearchParams({ loss });
    if (target !== null) params.set("target", String(target));
    return json(`/runs/${encodeURIComponent(runId)}/gradients?${params}`, { signal });
  },

  /**
   * GET .../layers/{i}/explain_gradient?target=&loss= and {y, x, c}, {i}, {weight: "k,fy,fx,c"}
   * or {bias}, with {check: true} for the central difference: {value, formula, terms, rule, ...}.
   */
  explainGradient: (runId, layer, { target, loss }, query) => {
    const params = new URLSearchParams({ target: String(target), loss });
    for (const [key, value] of Object.entries(query)) params.set(key, String(value));
    return json(`/runs/${encodeURIComponent(runId)}/layers/${layer}/explain_gradient?${params}`);
  },

  /**
   * POST /runs/{id}/step {target, learning_rate, loss}: the /forward reply of the new run with
   * loss_before, loss_after and previous_run_id.
   */
  step: (runId, body) =>
    json(`/runs/${encodeURIComponent(runId)}/step`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }),

  /**
   * GET .../layers/{i}/visualise?channel=&steps=&seed=: {layer, channel, steps, seed,
   * objective: [...], image_url, array_url}, an input that excites that channel (or class).
   */
  visualise: (runId, layer, { channel, steps, seed }) => {
    const params = new URLSearchParams({ channel: String(channel), steps: String(steps), seed: String(seed) });
    return json(`/runs/${encodeURIComponent(runId)}/layers/${layer}/visualise?${params}`);
  },

  /** POST /train: {job_id, status (the TrainStatus), status_url, events_url, cancel_url}. */
  train: (body) =>
    json("/train", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }),

  /** GET /train: every job this server knows, oldest first. */
  trainJobs: () => json("/train"),

  /** GET /train/{job}: one job's TrainStatus. */
  trainJob: (jobId) => json(`/train/${encodeURIComponent(jobId)}`),

  /** POST /train/{job}/cancel?save=: stop a job (keeping what it learnt when save), its status. */
  cancelTrain: (jobId, save) =>
    json(`/train/${encodeURIComponent(jobId)}/cancel?save=${Boolean(save)}`, { method: "POST" }),

  /**
   * GET /train/{job}/events as an EventSource ("progress" and "end" events, each a TrainStatus).
   * The caller closes it; an EventSource reconnects by itself when a stream ends.
   */
  trainEvents: (jobId) => new EventSource(`${BASE}/train/${encodeURIComponent(jobId)}/events`),

  /** Fetch a URL the API handed out (grid_url, array_url, ...) as an ArrayBuffer. */
  bytes: async (url) => (await fetchOk(url)).arrayBuffer(),

  /**
   * GET .../saliency.png (mode "saliency") or .../gradcam.png?method=mode over the input image:
   * {blob, layer (the X-Layer header), peak (X-Map-Max)}.
   */
  explainMap: async (runId, mode, target) => {
    const path = mode === "saliency" ? "saliency.png?" : `gradcam.png?method=${mode}&`;
    const run = encodeURIComponent(runId);
    const response = await request(`/runs/${run}/${path}overlay=1&target=${target}`);
    return {
      blob: await response.blob(),
      layer: response.headers.get("X-Layer"),
      peak: Number(response.headers.get("X-Map-Max")),
    };
  },
};
