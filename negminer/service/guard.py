"""The request guard (ASGI): the API key is checked, request bodies are capped while they stream in, and URLs with
NUL bytes are refused, all before the application reads a byte of the body.

The key is checked here rather than only in a route dependency because FastAPI reads (and spools to disk) a
multipart body before it runs dependencies: an unauthenticated 512 MB upload would be read in full to be refused.

Why the body cap is hand-written though Starlette has ``RequestBodyLimitMiddleware`` (and FastAPI ``max_body_size``):
the cap depends on the path (uploads vs JSON bodies), which FastAPI sets per route only when the route is declared,
not from settings read at start; and tried in place of this code, Starlette's limit answered 413 but let a chunked
64 MiB upload stream in to the end (``test_a_chunked_upload_is_refused_at_the_cap_not_after`` saw all 64 MiB sent),
where this guard tells the app the client left and closes the connection after 2 MiB.

A body over the cap is refused with 413 as soon as its declared ``Content-Length`` or the bytes received so far
pass the cap, chunked uploads included, so nothing past the cap is ever read, parsed or spooled to disk. The cap is
``max_upload_bytes`` for ``POST /v1/files``, ``max_model_bytes`` for ``POST /v1/models/uploads`` and
``max_body_bytes`` elsewhere.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from negminer._settings import ServiceSettings
from negminer.service.errors import problem

__all__ = ["DOC_PATHS", "RequestGuard", "key_matches"]

DOC_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")

# On every answer: no MIME sniffing, never framed (the page's Cancel button must not be clickjacked).
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
# The page: its own script and style files only (it builds every node with the DOM, no inline code), its own API.
PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def key_matches(authorization: str, settings: ServiceSettings) -> bool:
    """Whether an ``Authorization`` header carries the service's key (compared in constant time)."""
    if settings.api_key is None:
        return True
    scheme, _, token = authorization.partition(" ")
    expected = settings.api_key.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode("latin-1", "replace"), expected)


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings

    def public(self, path: str, method: str = "GET") -> bool:
        """Paths served without the key: health, the web page's files (a shell with no data: it asks for the key
        and sends it with every API call), and the API's documentation when ``public_docs``."""
        path = path.rstrip("/") or "/"
        if path in ("/healthz", "/readyz"):
            return True
        if method in ("GET", "HEAD") and (path in ("/", "/ui") or path.startswith("/ui/")):
            return True
        return self.settings.public_docs and (path in DOC_PATHS or path.startswith("/docs/"))

    def limit(self, path: str) -> int:
        s = self.settings
        path = path.rstrip("/")
        if path == "/v1/models/uploads":
            return s.max_model_bytes
        return s.max_upload_bytes if path == "/v1/files" else s.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if "\x00" in path or b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            await _answer(send, problem(422, "the URL holds a NUL byte", code="invalid_request", param="url"))
            return
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if (
            self.settings.api_key is not None
            and not self.public(path, scope.get("method", "GET"))
            and not key_matches(authorization, self.settings)
        ):
            unauthorized = problem(
                401, "missing or wrong bearer token", code="unauthorized", headers={"WWW-Authenticate": "Bearer"}
            )
            await _answer(send, unauthorized)
            return
        limit = self.limit(path)

        def too_large() -> Any:
            return problem(413, f"request body over {limit} bytes", code="payload_too_large")

        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, too_large())
            return
        received = 0
        started = refused = body_done = False
        timeout = self.settings.read_timeout_seconds

        async def capped_receive() -> Message:
            nonlocal received, refused, started, body_done
            if refused:
                return {"type": "http.disconnect"}
            if body_done:  # afterwards the app only listens for the client leaving: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), timeout)
            except asyncio.TimeoutError:
                refused = True  # a client that stalls mid-body holds no connection or worker thread
                if not started:
                    started = True
                    slow = f"no part of the request body for {timeout:g} s (NEGMINER_READ_TIMEOUT_SECONDS)"
                    await _answer(send, problem(408, slow, code="request_timeout"))
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    # answer 413 now and tell the app the client left: nothing more is read, parsed or spooled
                    refused = True
                    if not started:
                        started = True
                        await _answer(send, too_large())
                    return {"type": "http.disconnect"}
            return message

        page = path.startswith("/ui")

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if refused:  # the app's own answer to the disconnect: the client already has its 413
                return
            if message["type"] == "http.response.start":
                started = True
                extra = [*SECURITY_HEADERS, *([(b"content-security-policy", PAGE_CSP)] if page else [])]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, capped_receive, tracked_send)
        except Exception:
            if not refused:
                raise


async def _answer(send: Send, response: Any) -> None:
    """Send a whole JSONResponse without running the app."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": [(b"connection", b"close"), *response.raw_headers, *SECURITY_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": response.body})
