"""RFC 9457 ``application/problem+json`` errors: ``type, title, status, detail, instance`` plus ``code``, ``param``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from negminer._errors import ConfigError, DataError, IndexFileError, ModelError, NegminerError
from negminer.index import IndexNotFound

logger = logging.getLogger("negminer")

PROBLEM = "application/problem+json"


def problem(status: int, detail: str, *, code: str, param: str | None = None, instance: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://negminer.dev/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
        "param": param,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _param_of(message: str) -> str | None:
    head = message.split(":", 1)[0]
    return head if head and " " not in head and len(head) < 64 else None


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json (never a bare 500 for bad input)."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts, first = [], None
        for e in errors:
            loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
            name = ".".join(loc) or "body"
            first = first or name
            parts.append(f"{name}: {e.get('msg')}")
        return problem(422, "; ".join(parts), code="invalid_request", param=first, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
                413: "payload_too_large"}.get(
            exc.status_code, "http_error")
        return problem(exc.status_code, str(exc.detail), code=code, instance=request.url.path,
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(NegminerError)
    async def _negminer(request: Request, exc: NegminerError) -> JSONResponse:
        if isinstance(exc, IndexNotFound):
            return problem(404, str(exc), code="index_not_found", param="name", instance=request.url.path)
        if isinstance(exc, IndexFileError):
            return problem(409, str(exc), code="index_not_ready", instance=request.url.path)
        if isinstance(exc, DataError):
            extra = {"line": exc.line} if exc.line is not None else {}
            return problem(422, str(exc), code="invalid_data", param=exc.field, instance=request.url.path, **extra)
        if isinstance(exc, (ConfigError, ModelError)):
            code = "invalid_model" if isinstance(exc, ModelError) else "invalid_request"
            return problem(422, str(exc), code=code, param=_param_of(str(exc)), instance=request.url.path)
        return problem(400, str(exc), code="bad_request", instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return problem(500, "internal error", code="internal_error", instance=request.url.path)
