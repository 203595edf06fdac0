"""Security headers on every response, bodies refused before parsing, static files that stay in
static/, and CORS that is off until origins are configured."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI

from app.settings import Settings
from tests.conftest import WORKED_EXAMPLE, client_for

pytestmark = pytest.mark.anyio

API = "/api/v1"
REQUIRED_POLICY = {
    "default-src": {"'self'"},
    "img-src": {"'self'", "data:", "blob:"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "frame-ancestors": {"'none'"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
}


def policy(header: str) -> dict[str, set[str]]:
    """ "a b; c d e" -> {"a": {"b"}, "c": {"d", "e"}}."""
    out = {}
    for part in header.split(";"):
        name, *values = part.split()
        out[name] = set(values)
    return out


def assert_secured(response) -> None:
    h = response.headers
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] in ("no-referrer", "same-origin")
    got = policy(h["content-security-policy"])
    for directive, values in REQUIRED_POLICY.items():
        assert got.get(directive) == values, (directive, got.get(directive))


async def test_every_kind_of_response_carries_the_security_headers(make_app, png_bytes):
    app = make_app(max_upload_bytes=50_000, max_network_bytes=4096)

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug")

    async with client_for(app) as client:
        body = (
            await client.post(
                f"{API}/forward",
                files={"image": ("i.png", png_bytes, "image/png")},
                data={"network": json.dumps(WORKED_EXAMPLE)},
            )
        ).json()
        responses = {
            "page": await client.get("/"),
            "json": await client.get(f"{API}/health"),
            "png": await client.get(body["layers"][0]["grid_url"]),
            "npy": await client.get(body["layers"][0]["array_url"]),
            "static": await client.get("/static/hello.css"),
            "openapi": await client.get("/openapi.json"),
            "404": await client.get(f"{API}/nothing"),
            "405": await client.delete(f"{API}/health"),
            "422": await client.post(f"{API}/shapes", json={"layers": []}),
            "413": await client.post(
                f"{API}/shapes", content=b"{}", headers={"content-length": "999999999"}
            ),
        }
    # A real server logs the exception and answers 500, which the test client would re-raise.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses["500"] = await client.get("/boom")
    expected = {"page": 200, "json": 200, "png": 200, "npy": 200, "static": 200, "openapi": 200,
                "404": 404, "405": 405, "422": 422, "413": 413, "500": 500}  # fmt: skip
    assert {k: r.status_code for k, r in responses.items()} == expected
    for response in responses.values():
        assert_secured(response)


async def test_a_503_from_the_admission_gate_is_secured_too(make_app, png_bytes):
    app = make_app(cpu_workers=1, cpu_queue=0)
    gate = app.state.gate
    gate.in_flight = gate.capacity  # as if every slot were taken
    async with client_for(app) as client:
        r = await client.post(
            f"{API}/forward",
            files={"image": ("i.png", png_bytes, "image/png")},
            data={"network": json.dumps(WORKED_EXAMPLE)},
        )
    assert r.status_code == 503 and "retry-after" in r.headers
    assert_secured(r)


async def test_the_docs_page_allows_only_its_own_inline_script_by_hash(client):
    r = await client.get("/docs")
    assert r.status_code == 200
    scripts = policy(r.headers["content-security-policy"])["script-src"]
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    inline = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    assert inline, "FastAPI's docs page starts Swagger UI with an inline script"
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in scripts
    assert r.headers["x-frame-options"] == "DENY"
    assert policy(r.headers["content-security-policy"])["frame-ancestors"] == {"'none'"}


async def test_a_body_declared_too_large_is_refused_before_it_is_parsed(make_app):
    # Not JSON at all: a parser would answer 422; the size check answers first.
    async with client_for(make_app(max_network_bytes=2048)) as client:
        r = await client.post(
            f"{API}/shapes", content=b"x" * 3000, headers={"content-type": "application/json"}
        )
    assert r.status_code == 413 and "2.0 KB" in r.json()["detail"]["message"]


# -- static files ------------------------------------------------------------------------------
async def raw_get(app: FastAPI, raw_path: bytes) -> tuple[int, bytes]:
    """GET with the path exactly as a server hands it over: uvicorn percent-decodes raw_path
    into scope["path"] once and never removes dot segments (httpx would normalise them)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
        "root_path": "", "query_string": b"", "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 1000), "server": ("test", 80),
    }  # fmt: skip
    sent: list[dict] = []
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected until the response ends
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


TRAVERSALS = [
    b"/static/../secret.txt",
    b"/static/../../secret.txt",
    b"/static/%2e%2e/secret.txt",
    b"/static/%2E%2E%2Fsecret.txt",
    b"/static/..%2fsecret.txt",
    b"/static/..%5csecret.txt",
    b"/static/%252e%252e/secret.txt",
    b"/static/css/../../secret.txt",
    b"/static/./.././secret.txt",
    b"/static//" + str(Path("/etc/hostname")).encode(),
    b"/static/%2fetc%2fhostname",
    b"/static/..%00/secret.txt",
    b"/static/link/secret.txt",
    b"/static/outside-link",
]


@pytest.mark.parametrize("raw_path", TRAVERSALS, ids=[p.decode() for p in TRAVERSALS])
async def test_static_files_cannot_escape_the_static_directory(make_app, settings, raw_path):
    static = settings.static_dir
    secret = static.parent / "secret.txt"
    secret.write_text("TOP SECRET", encoding="utf-8")
    (static / "css").mkdir(exist_ok=True)
    (static / "link").symlink_to(static.parent, target_is_directory=True)
    (static / "outside-link").symlink_to(secret)
    app = make_app()
    status, body = await raw_get(app, raw_path)
    assert status == 404 and b"SECRET" not in body
    assert (await raw_get(app, b"/static/hello.css"))[0] == 200  # the directory itself works


async def test_an_encoded_traversal_through_httpx_is_404(client, settings):
    (settings.static_dir.parent / "secret.txt").write_text("TOP SECRET", encoding="utf-8")
    for url in ("/static/%2e%2e/secret.txt", "/static/..%2Fsecret.txt"):
        r = await client.get(url)
        assert r.status_code == 404 and "SECRET" not in r.text


# -- CORS --------------------------------------------------------------------------------------
async def preflight(client, origin: str):
    return await client.options(
        f"{API}/shapes",
        headers={"origin": origin, "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"},
    )  # fmt: skip


async def test_cors_is_off_by_default(client):
    r = await preflight(client, "https://elsewhere.example")
    assert "access-control-allow-origin" not in r.headers
    r = await client.get(f"{API}/health", headers={"origin": "https://elsewhere.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


async def test_cors_allows_exactly_the_configured_origins(make_app):
    good, bad = "https://notebook.example", "https://elsewhere.example"
    async with client_for(make_app(cors_origins=[good])) as client:
        r = await preflight(client, good)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == good
        assert "POST" in r.headers["access-control-allow-methods"]
        r = await preflight(client, bad)
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        r = await client.post(f"{API}/shapes", json=WORKED_EXAMPLE, headers={"origin": good})
        assert r.headers["access-control-allow-origin"] == good
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()
        assert_secured(r)
        r = await client.post(f"{API}/shapes", json=WORKED_EXAMPLE, headers={"origin": bad})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_origins_come_from_a_json_list_in_the_environment(monkeypatch):
    monkeypatch.setenv("CNN_EXPLORER_CORS_ORIGINS", '["https://a.example", "https://b.example"]')
    assert Settings().cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.delenv("CNN_EXPLORER_CORS_ORIGINS")
    assert Settings().cors_origins == []
