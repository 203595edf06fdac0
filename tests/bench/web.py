"""Web-layer benchmarks: rendering the pipeline's maps to PNG, and a run through the ASGI app.

Both need app.web.render / app.web.imageio / app.web.main; when those are not importable the
benchmarks are skipped with the reason, and the engine benchmarks still run.
"""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.bench.report import Row, SkippedError
from tests.bench.timing import TimingPlan, measure
from tests.bench.workloads import pipeline_image, pipeline_spec

RENDER_NAME = "render_maps"
SERVER_NAME = "server_forward"
SERVER_TARGET = 1.2


def _need(module: str) -> Any:
    """Import a web-layer module or skip the benchmark saying which one is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise SkippedError(f"{module} is not importable yet ({error})") from None


def _pipeline_outputs() -> tuple[Any, np.ndarray, list[np.ndarray]]:
    build_network = _need("app.cnn.network").build_network
    network = build_network(pipeline_spec())
    image = pipeline_image()
    return network, image, network.forward(image)


def _map_count(out: np.ndarray) -> int:
    """Channel PNGs a layer has: one per channel, or one for a flat layer."""
    return out.shape[2] if out.ndim == 3 else 1


def render_layer(render: Any, out: np.ndarray) -> list[bytes]:
    """The grid and every channel PNG of one layer, drawn the way the server draws them: the
    layer coloured once, then each map encoded from those indices."""
    colours = render.layer_colours(out)
    return [render.encode_grid(colours)] + [
        render.encode_channel(colours, c) for c in range(colours.channels)
    ]


def render_all(render: Any, outputs: list[np.ndarray]) -> list[bytes]:
    return [png for out in outputs for png in render_layer(render, out)]


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _encoders(render: Any, maps: list[tuple[np.ndarray, bytes]]) -> dict[str, Callable[[], int]]:
    """Encode the same palette-index maps four ways; each returns the total PNG bytes."""
    from PIL import Image

    tables = {palette: np.frombuffer(palette, np.uint8).reshape(256, 3) for _, palette in maps}

    def encode(mode: str, level: int) -> Callable[[], int]:
        def run() -> int:
            total = 0
            for indices, palette in maps:
                h, w = indices.shape
                if mode == "RGB":
                    image = Image.frombytes("RGB", (w, h), tables[palette][indices].tobytes())
                else:
                    image = Image.frombytes(mode, (w, h), indices.tobytes())
                    if mode == "P":
                        image.putpalette(palette)
                buf = io.BytesIO()
                image.save(buf, format="PNG", compress_level=level)
                total += buf.tell()
            return total

        return run

    return {
        "P cl1": encode("P", 1),
        "L cl1": encode("L", 1),
        "RGB cl1": encode("RGB", 1),
        "P cl6": encode("P", 6),
    }


def _index_maps(render: Any, outputs: list[np.ndarray]) -> list[tuple[np.ndarray, bytes]]:
    """(uint8 indices, palette) for every grid and channel map, as app.web.render colours them."""
    maps = []
    for out in outputs:
        diverging = bool(out.min() < 0)
        palette = render.DIVERGING_PALETTE if diverging else render.VIRIDIS_PALETTE
        if out.ndim == 1:
            flat = render.flat_indices(out, diverging)
            maps += [(flat, palette), (flat, palette)]
            continue
        indices = render.colour_indices(out, diverging)
        maps.append((np.ascontiguousarray(render.tile(indices)), palette))
        maps += [(np.ascontiguousarray(indices[:, :, c]), palette) for c in range(out.shape[2])]
    return maps


def run_render(plan: TimingPlan) -> list[Row]:
    """All maps of the pipeline run to PNG (grid + every channel), and PNG mode choices."""
    render = _need("app.web.render")
    network, image, outputs = _pipeline_outputs()
    n_maps = sum(1 + _map_count(out) for out in outputs)
    total_bytes = sum(len(png) for png in render_all(render, outputs))

    result = measure(
        {"render": lambda: render_all(render, outputs), "forward": lambda: network.forward(image)},
        plan,
    )
    total = result.stats["render"]
    repeats = 3 if plan.rounds < 8 else 7
    per_layer = {
        f"{i}:{layer.spec.type}": {
            "maps": 1 + _map_count(out),
            "ms": _median_ms(lambda out=out: render_layer(render, out), repeats),
        }
        for i, (layer, out) in enumerate(zip(network.layers, outputs, strict=True))
    }
    breakdown = ", ".join(f"{name} {v['ms']:.1f}" for name, v in per_layer.items())
    rows = [
        Row(
            group="render",
            name=RENDER_NAME,
            subject="render",
            baseline="forward",
            subject_stats=total,
            baseline_stats=result.stats["forward"],
            ratio=result.ratio("render", "forward"),
            target=None,
            note=f"{n_maps} PNGs ({total_bytes / 1024:.0f} KB), "
            f"{total.median_ms / n_maps:.3f} ms per map; per layer ms: {breakdown}",
            extra={
                "maps": n_maps,
                "bytes": total_bytes,
                "ms_per_map": total.median_ms / n_maps,
                "per_layer": per_layer,
            },
        )
    ]

    encoders = _encoders(render, _index_maps(render, outputs))
    sizes = {name: encode() for name, encode in encoders.items()}
    modes = measure(encoders, plan)
    for other in ("L cl1", "RGB cl1", "P cl6"):
        rows.append(
            Row(
                group="render",
                name=f"png_P1_vs_{other.replace(' cl', '')}",
                subject="P cl1",
                baseline=other,
                subject_stats=modes.stats["P cl1"],
                baseline_stats=modes.stats[other],
                ratio=modes.ratio("P cl1", other),
                target=1.0,
                note=f"encode only, same {n_maps} maps: P cl1 "
                f"{sizes['P cl1'] / 1024:.0f} KB vs {other} {sizes[other] / 1024:.0f} KB",
                extra={"bytes": sizes[other], "p_cl1_bytes": sizes["P cl1"]},
            )
        )
    return rows


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def network_json() -> dict[str, Any]:
    """The pipeline network in the REST API's vocabulary (see shared/API.md)."""
    conv = {"type": "conv", "kernel_size": 3, "stride": 1, "padding": 1, "activation": "none"}
    return {
        "input": {"height": 224, "width": 224, "channels": 3},
        "seed": 0,
        "layers": [
            {**conv, "filters": 16},
            {"type": "relu"},
            {"type": "maxpool", "size": 2, "stride": 2},
            {**conv, "filters": 32},
            {"type": "relu"},
            {"type": "maxpool", "size": 2, "stride": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
    }


class AsgiClient:
    """The least a client can do: call the ASGI app with a scope, the body, and collect the reply.

    Server time is what this benchmark measures, so the client must cost next to nothing:
    httpx.ASGITransport spends about 0.2 ms a request of its own (URL parsing, a cookie jar, an
    import attempt of trio on every call), which is client work, not server work.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> tuple[int, bytes]:
        path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"bench.local"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("bench.local", 80),
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def _multipart(png: bytes, form: dict[str, str]) -> tuple[bytes, tuple[tuple[bytes, bytes], ...]]:
    """The body and headers of the /forward upload, encoded once by httpx (client-side work)."""
    httpx = _need("httpx")
    request = httpx.Request(
        "POST", "http://bench.local/", files={"image": ("bench.png", png, "image/png")}, data=form
    )
    body = request.read()
    headers = (
        (b"content-type", request.headers["content-type"].encode()),
        (b"content-length", str(len(body)).encode()),
    )
    return body, headers


def run_server(plan: TimingPlan) -> Row:
    """POST /api/v1/forward + GET every grid and channel PNG, in process, vs the same work
    without HTTP (build network, decode with app.web.imageio, forward, render every map)."""
    render = _need("app.web.render")
    imageio = _need("app.web.imageio")
    main = _need("app.web.main")
    settings_module = _need("app.settings")
    build_network = _need("app.cnn.network").build_network
    settings = settings_module.Settings()
    app = main.create_app(settings)
    png = _png_bytes(pipeline_image())
    body, headers = _multipart(png, {"network": json.dumps(network_json())})
    loop = asyncio.new_event_loop()
    client = AsgiClient(app)

    async def through_http() -> int:
        status, reply = await client.request("POST", "/api/v1/forward", body, headers)
        if status != 200:
            raise AssertionError(f"/forward answered {status}: {reply[:300]!r}")
        fetched = 0
        for layer in json.loads(reply)["layers"]:
            urls = [layer["grid_url"]]
            shape = layer["output_shape"]
            channels = shape[2] if len(shape) == 3 else 1
            urls += [layer["channel_url"].replace("{c}", str(c)) for c in range(channels)]
            for url in urls:
                status, png_bytes = await client.request("GET", url)
                if status != 200:
                    raise AssertionError(f"{url} answered {status}: {png_bytes[:300]!r}")
                fetched += len(png_bytes)
        return fetched

    def server() -> int:
        return loop.run_until_complete(through_http())

    def floor() -> int:
        network = build_network(pipeline_spec())
        decoded = imageio.decode_image(
            png,
            height=224,
            width=224,
            channels=3,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels,
        )
        outputs = network.forward(decoded.pixels)
        return sum(len(p) for p in render_all(render, outputs))

    try:
        served, direct = server(), floor()
        requests = 1 + sum(1 + _map_count(out) for out in _pipeline_outputs()[2])
        result = measure({"server": server, "floor": floor}, plan)
    finally:
        loop.close()
    stats = result.stats
    per_request = (stats["server"].median_ms - stats["floor"].median_ms) / requests
    return Row(
        group="server",
        name=SERVER_NAME,
        subject="server",
        baseline="floor",
        subject_stats=result.stats["server"],
        baseline_stats=result.stats["floor"],
        ratio=result.ratio("server", "floor"),
        target=SERVER_TARGET,
        note=f"{requests} requests straight into the ASGI app ({served / 1024:.0f} KB of PNG), "
        f"{per_request:.2f} ms more per request than the floor = build_network + decode_image + "
        f"forward + render ({direct / 1024:.0f} KB)",
        extra={
            "requests": requests,
            "png_bytes_server": served,
            "png_bytes_floor": direct,
            "overhead_ms_per_request": per_request,
        },
    )
