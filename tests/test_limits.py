"""Every limit of settings.py, each tested at the limit (accepted) and one past it (refused).

Each test builds its own app with a small limit (create_app(Settings(...)) via make_app), so it
fails if the check is removed: what it refuses would then be accepted. The time budget (503/504)
is tested in test_admission.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from app.web.validation import file_size
from tests.conftest import client_for, encode, random_pixels
from tests.test_admission import Blocker

pytestmark = pytest.mark.anyio

API = "/api/v1"


def net(*layers: dict, h: int = 16, w: int = 16, c: int = 3) -> dict:
    return {"input": {"height": h, "width": w, "channels": c}, "layers": list(layers)}


RELU = {"type": "relu"}
SMALL = net(RELU, h=8, w=8)


async def post_forward(client, image: bytes, network: dict | str, **fields: str):
    text = network if isinstance(network, str) else json.dumps(network)
    return await client.post(
        f"{API}/forward",
        files={"image": ("i.png", image, "image/png")},
        data={"network": text, **fields},
    )


def message(r) -> str:
    return r.json()["detail"]["message"]


# -- uploads (413) -----------------------------------------------------------------------------
async def test_an_image_of_exactly_max_upload_bytes_is_accepted_one_more_is_413(make_app):
    image = encode(random_pixels(16, 16, 3))
    n = len(image)
    async with client_for(make_app(max_upload_bytes=n)) as client:
        assert (await post_forward(client, image, SMALL)).status_code == 200
    async with client_for(make_app(max_upload_bytes=n - 1)) as client:
        r = await post_forward(client, image, SMALL)
    assert r.status_code == 413
    assert f"The file is {file_size(n)}; the limit is {file_size(n - 1)}" in message(r)


async def test_an_image_of_exactly_max_image_pixels_is_accepted_one_more_is_413(make_app):
    image = encode(random_pixels(10, 20, 3))  # 20 wide, 10 high: 200 pixels in a few hundred B
    async with client_for(make_app(max_image_pixels=200)) as client:
        assert (await post_forward(client, image, SMALL)).status_code == 200
    async with client_for(make_app(max_image_pixels=199)) as client:
        r = await post_forward(client, image, SMALL)
    assert r.status_code == 413 and "20x10 = 200 pixels" in message(r)


def padded(spec: dict, size: int) -> str:
    text = json.dumps(spec)
    assert len(text) <= size
    return text + " " * (size - len(text))


async def test_a_network_field_of_exactly_max_network_bytes_is_accepted_one_more_is_413(
    make_app, png_bytes
):
    async with client_for(make_app(max_network_bytes=2048)) as client:
        assert (await post_forward(client, png_bytes, padded(SMALL, 2048))).status_code == 200
        r = await post_forward(client, png_bytes, padded(SMALL, 2049))
    assert r.status_code == 413 and "network field is larger" in message(r)


async def test_a_json_body_of_exactly_max_network_bytes_is_accepted_one_more_is_413(make_app):
    headers = {"content-type": "application/json"}
    async with client_for(make_app(max_network_bytes=2048)) as client:
        r = await client.post(f"{API}/shapes", content=padded(SMALL, 2048), headers=headers)
        assert r.status_code == 200 and r.json()["valid"] is True
        r = await client.post(f"{API}/shapes", content=padded(SMALL, 2049), headers=headers)
    assert r.status_code == 413 and "for a network spec (2.0 KB)" in message(r)


async def test_a_multipart_body_over_upload_plus_network_plus_framing_is_413(make_app):
    # Extra form fields are ignored by /forward, so only the body limit can refuse these:
    # the limit is 1000 + 1024 + 64 KiB of framing = 67584 bytes.
    app = make_app(max_upload_bytes=1000, max_network_bytes=1024)
    image = encode(random_pixels(8, 8, 3))

    def fields(total: int) -> dict[str, str]:
        return {f"pad{i}": "x" * 1000 for i in range(total // 1000)}

    async with client_for(app) as client:
        r = await post_forward(client, image, SMALL, **fields(60_000))
        assert r.status_code == 200 and int(r.request.headers["content-length"]) < 67584
        r = await post_forward(client, image, SMALL, **fields(68_000))
    assert int(r.request.headers["content-length"]) > 67584
    assert r.status_code == 413 and "66.0 KB including the image" in message(r)


# -- networks (422; /shapes says valid=false) --------------------------------------------------
def conv(**fields: object) -> dict:
    return {"type": "conv", "filters": 2, "kernel_size": 3, **fields}


FLAT_DENSE = [{"type": "flatten"}, {"type": "dense", "units": 10}]
LIMITS = {
    # setting: (limit, network at the limit, network one past it, field named, text)
    "max_input_side": (16, net(RELU), net(RELU, h=17), "input.height", "(16)"),
    "max_layers": (3, net(RELU, RELU, RELU), net(RELU, RELU, RELU, RELU), "layers", "allows 3"),
    "max_filters": (4, net(conv(filters=4)), net(conv(filters=5)), "filters", "(4)"),
    "max_kernel_size": (5, net(conv(kernel_size=5)), net(conv(kernel_size=6)), "kernel_size",
                        "(5)"),
    "max_kernel_size pool": (4, net({"type": "maxpool", "size": 4, "stride": 1}),
                             net({"type": "maxpool", "size": 5, "stride": 1}), "size", "(4)"),
    "max_kernel_size padding": (5, net(conv(padding=5)), net(conv(padding=6)), "padding", "(5)"),
    "max_input_side stride": (4, net(conv(kernel_size=4, stride=4), h=4, w=4),
                              net(conv(kernel_size=4, stride=5), h=4, w=4), "stride", "(4)"),
    "max_units": (10, net(*FLAT_DENSE), net(FLAT_DENSE[0], {"type": "dense", "units": 11}),
                  "units", "(10)"),
}  # fmt: skip


@pytest.mark.parametrize("case", LIMITS)
async def test_a_network_at_a_size_limit_runs_and_one_past_it_is_refused(make_app, png_bytes, case):
    limit, at, over, field, text = LIMITS[case]
    app = make_app(**{case.split()[0]: limit})
    async with client_for(app) as client:
        ok = (await client.post(f"{API}/shapes", json=at)).json()
        assert ok["valid"] is True, ok["errors"]
        assert (await post_forward(client, png_bytes, at)).status_code == 200
        runs = len(app.state.run_store)

        out = (await client.post(f"{API}/shapes", json=over)).json()
        assert out["valid"] is False
        assert any(e["field"] == field and text in e["message"] for e in out["errors"]), out
        r = await post_forward(client, png_bytes, over)
        assert r.status_code == 422 and any(
            e["field"] == field for e in r.json()["detail"]["errors"]
        )
        assert len(app.state.run_store) == runs  # nothing ran


COSTLY = net(conv(filters=8, padding=1), {"type": "maxpool", "size": 2}, *FLAT_DENSE)
# conv 16*16*8 outputs of 3*3*3 products each; dense 10 units of 8*8*8 inputs.
COSTLY_WORK = 16 * 16 * 8 * 3 * 3 * 3 + 10 * 8 * 8 * 8


@pytest.mark.parametrize(
    ("setting", "measure", "text"),
    [
        ("max_activation_bytes", lambda shapes: shapes["activation_bytes"], "would need"),
        ("max_params", lambda shapes: shapes["total_params"], "parameters"),
        ("max_multiply_adds", lambda shapes: COSTLY_WORK, "multiply-adds"),
    ],
)
async def test_a_network_costing_exactly_a_limit_runs_and_one_unit_less_refuses_it(
    make_app, png_bytes, setting, measure, text
):
    async with client_for(make_app()) as client:
        cost = measure((await client.post(f"{API}/shapes", json=COSTLY)).json())
    async with client_for(make_app(**{setting: cost})) as client:
        assert (await client.post(f"{API}/shapes", json=COSTLY)).json()["valid"] is True
        assert (await post_forward(client, png_bytes, COSTLY)).status_code == 200
    app = make_app(**{setting: cost - 1})
    async with client_for(app) as client:
        out = (await client.post(f"{API}/shapes", json=COSTLY)).json()
        assert out["valid"] is False and text in out["errors"][0]["message"]
        r = await post_forward(client, png_bytes, COSTLY)
        assert r.status_code == 422 and text in r.json()["detail"]["errors"][0]["message"]
    assert len(app.state.run_store) == 0


async def test_output_values_up_to_the_limit_are_inline_beyond_it_truncated(make_app, png_bytes):
    size = 8 * 8 * 3
    async with client_for(make_app(max_output_values=size)) as client:
        out = (await post_forward(client, png_bytes, SMALL)).json()["output"]
        assert len(out["values"]) == size and out["truncated"] is False
    async with client_for(make_app(max_output_values=size - 1)) as client:
        out = (await post_forward(client, png_bytes, SMALL)).json()["output"]
        assert len(out["values"]) == size - 1 and out["truncated"] is True


# -- memory: the run store and the render cache ------------------------------------------------
RUN_BYTES = 2 * 8 * 8 * 3 * 4  # SMALL keeps its input and one output, float32


async def test_a_run_of_exactly_the_store_size_is_kept_a_bigger_one_is_413(make_app, png_bytes):
    async with client_for(make_app(run_store_max_bytes=RUN_BYTES)) as client:
        body = (await post_forward(client, png_bytes, SMALL)).json()
        assert (await client.get(body["layers"][0]["array_url"])).status_code == 200
    async with client_for(make_app(run_store_max_bytes=RUN_BYTES - 1)) as client:
        r = await post_forward(client, png_bytes, SMALL)
    assert r.status_code == 413 and "more than the" in message(r)


async def test_the_run_store_keeps_at_most_its_bytes_dropping_the_oldest(make_app, png_bytes):
    app = make_app(run_store_max_bytes=3 * RUN_BYTES)
    async with client_for(app) as client:
        urls = [
            (await post_forward(client, png_bytes, SMALL)).json()["layers"][0]["array_url"]
            for _ in range(5)
        ]
        status = [(await client.get(url)).status_code for url in urls]
    assert status == [404, 404, 200, 200, 200]


async def test_the_run_store_bound_counts_each_runs_network_weights(make_app, png_bytes):
    heavy = net({"type": "flatten"}, {"type": "dense", "units": 400})  # 769 * 400 params
    weights = 4 * (16 * 16 * 3 + 1) * 400  # 1.2 MB, against 6 KB of activations
    real = weights + 4 * (2 * 16 * 16 * 3 + 400)
    app = make_app(run_store_max_bytes=4 * 2**20)
    async with client_for(app) as client:
        urls = [
            (await post_forward(client, png_bytes, heavy)).json()["layers"][1]["array_url"]
            for _ in range(10)
        ]
        kept = sum([(await client.get(url)).status_code == 200 for url in urls])
    assert kept * real <= 4 * 2**20, f"{kept} runs of {real / 2**20:.1f} MB kept in 4 MB"


async def test_the_render_cache_never_holds_more_than_its_bytes(make_app, png_bytes):
    app = make_app(render_cache_max_bytes=1500)
    cache = app.state.render_cache
    network = net(conv(filters=6, padding=1), h=24, w=24)
    async with client_for(app) as client:
        layer = (await post_forward(client, png_bytes, network)).json()["layers"][0]
        sizes = []
        for c in range(6):
            r = await client.get(layer["channel_url"].replace("{c}", str(c)))
            assert r.status_code == 200
            sizes.append(len(r.content))
            assert cache.nbytes <= 1500
        assert sum(sizes) > 1500 and 0 < len(cache) < 6  # some were dropped, some kept
        grid = await client.get(layer["grid_url"])  # bigger than the whole cache: not kept
        assert grid.status_code == 200 and len(grid.content) > 1500 and cache.nbytes <= 1500


# -- overload (503) ----------------------------------------------------------------------------
@pytest.mark.parametrize("queue", [1, 2])
async def test_a_request_past_workers_plus_queue_is_503_one_within_it_waits(
    make_app, png_bytes, queue
):
    app = make_app(cpu_workers=1, cpu_queue=queue)
    gate = app.state.gate
    blocker = Blocker()
    async with client_for(app) as client:
        # Two jobs: one running, one queued. A queue of 1 is then full; a queue of 2 is not.
        tasks = [asyncio.create_task(gate.run(blocker)) for _ in range(2)]
        await blocker.wait_started(1)
        assert gate.in_flight == 2
        request = asyncio.create_task(post_forward(client, png_bytes, SMALL))
        if queue == 1:
            r = await request
            assert r.status_code == 503 and r.headers["retry-after"].isdigit()
        else:
            for _ in range(100_000):  # yield until the request reaches the gate
                if gate.in_flight == 3 or request.done():
                    break
                await asyncio.sleep(0)
            assert not request.done() and gate.in_flight == 3  # admitted: waiting its turn
        blocker.release.set()
        await asyncio.gather(*tasks)
        if queue == 2:
            assert (await request).status_code == 200
