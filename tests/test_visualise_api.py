"""GET /runs/{id}/layers/{i}/visualise (.png, .npy): feature visualisation through the API."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import WORKED_EXAMPLE, client_for, encode, random_pixels
from tests.test_gradients_api import forward, get_npy

API = "/api/v1"
pytestmark = pytest.mark.anyio


async def run_of(client) -> str:
    return (await forward(client, WORKED_EXAMPLE, encode(random_pixels(32, 32, 3, seed=1))))[
        "run_id"
    ]


async def test_a_channel_visualisation_raises_its_objective_and_serves_the_image(client) -> None:
    run_id = await run_of(client)
    r = await client.get(f"{API}/runs/{run_id}/layers/0/visualise?channel=3&steps=12&seed=2")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["layer"], body["channel"], body["steps"], body["seed"]) == (0, 3, 12, 2)
    assert len(body["objective"]) == 13
    assert body["objective"][-1] > body["objective"][0]
    image = await get_npy(client, body["array_url"])
    assert image.shape == (32, 32, 3) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    png = await client.get(body["image_url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    shown = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"), dtype=np.float32)
    np.testing.assert_allclose(shown / 255.0, image, atol=0.5 / 255 + 1e-6)
    again = await client.get(f"{API}/runs/{run_id}/layers/0/visualise?channel=3&steps=12&seed=2")
    assert again.json()["objective"] == body["objective"]  # seeded (and kept)


async def test_a_class_visualisation_raises_the_class_logit(client) -> None:
    run_id = await run_of(client)
    r = await client.get(f"{API}/runs/{run_id}/layers/3/visualise?channel=7&steps=16")
    assert r.status_code == 200, r.text
    objective = r.json()["objective"]
    assert objective[-1] > objective[0]


async def test_visualise_refuses_what_does_not_exist_with_words(client, settings) -> None:
    run_id = await run_of(client)
    base = f"{API}/runs/{run_id}/layers"
    r = await client.get(f"{base}/0/visualise?channel=10")
    assert r.status_code == 422
    assert "has 10 channels; there is no channel 10" in r.json()["detail"]["message"]
    r = await client.get(f"{base}/3/visualise?channel=10")
    assert r.status_code == 422 and "no class 10" in r.json()["detail"]["message"]
    r = await client.get(f"{base}/0/visualise?channel=0&steps={settings.visualise_max_steps + 1}")
    assert r.status_code == 422 and "more than this server allows" in r.json()["detail"]["message"]
    r = await client.get(f"{base}/9/visualise?channel=0")
    assert r.status_code == 404 and "there is no layer 9" in r.json()["detail"]["message"]
    r = await client.get(f"{API}/runs/nope/layers/0/visualise?channel=0")
    assert r.status_code == 404
    r = await client.get(f"{base}/0/visualise.png?channel=x")
    assert r.status_code == 422


async def test_the_page_publishes_the_step_limit_and_its_input_keeps_to_it(make_app, settings):
    shipped = Path(__file__).resolve().parent.parent / "templates"
    async with client_for(make_app(templates_dir=shipped)) as client:
        page = (await client.get("/")).text
    config = json.loads(re.search(r'id="page-config">(.*?)</script>', page).group(1))
    assert config["limits"]["visualise_max_steps"] == settings.visualise_max_steps
    assert f'id="vis-steps" min="1" max="{settings.visualise_max_steps}"' in page
