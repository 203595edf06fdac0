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
export async function fetchOk(url, options = {}) {
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
