"""Security headers on every response, and CORS only for the origins the settings name.

The page's policy allows no inline script or style and nothing from other sites: the page is
one module script and stylesheets under /static, and it fetches only /api/v1. The interactive
docs (/docs, /redoc) are FastAPI's pages, which load Swagger UI / ReDoc from a CDN and start
them with one inline script; they get a policy of their own that allows that CDN and exactly
those inline scripts (by hash), and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

_CDN = "https://cdn.jsdelivr.net"


def docs_policy(script_hashes: list[str]) -> str:
    """The docs pages' policy: their CDN, their own inline scripts by hash, inline styles."""
    scripts = " ".join(f"'{h}'" for h in script_hashes)
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {_CDN} {scripts}".rstrip(),
            f"style-src 'self' {_CDN} https://fonts.googleapis.com 'unsafe-inline'",
            "font-src 'self' https://fonts.gstatic.com",
            "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
            "worker-src 'self' blob:",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'self'",
        ]
    )


_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.I)


def inline_script_hashes(html: bytes) -> list[str]:
    """CSP hashes ("sha256-...") of every <script> without src in an HTML page."""
    return [
        "sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        for body in _INLINE_SCRIPT.findall(html)
    ]


class SecurityHeaders:
    """Add SECURITY_HEADERS to every HTTP response (a header a route set itself is kept).

    Responses on `docs_paths` are held until complete (small HTML pages) so their inline scripts
    can be hashed into their policy.
    """

    def __init__(self, app: ASGIApp, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path in self.docs_paths:
            await self._docs(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        body: list[bytes] = []

        async def held(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            headers = MutableHeaders(scope=start)
            for name, value in SECURITY_HEADERS.items():
                headers.setdefault(name, value)
            headers["Content-Security-Policy"] = docs_policy(inline_script_hashes(b"".join(body)))
            await send(start)
            await send({"type": "http.response.body", "body": b"".join(body)})

        await self.app(scope, receive, held)


def install_security(app: FastAPI, cors_origins: list[str]) -> None:
    """Security headers outside every other layer (error pages included); CORS if configured.

    FastAPI puts its error handler outside all added middleware, so SecurityHeaders wraps the
    built stack itself: a 500 gets the headers too.
    """
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type"],
            expose_headers=["Retry-After", "Content-Disposition"],
            max_age=600,
        )
    docs = frozenset(
        p for p in (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p
    )
    build = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        return SecurityHeaders(build(), docs)

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
