"""RFC 9457 ``application/problem+json`` errors: ``type, title, status, detail, instance`` plus ``code``, ``param``."""

from __future__ import annotations

import errno
import json
import logging
import sys
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from negminer import ConfigError, DataError, IndexFileError, ModelError, NegminerError
from negminer._errors import error_message
from negminer.client import ServiceError
from negminer.client.schemas import Problem, ProblemError
from negminer.jobs import FileGone, FileInUse, StoreUnavailable
from negminer.service.exceptions import (
    ChecksumMismatch,
    IndexBusy,
    IndexDeleting,
    IndexExists,
    IndexNotFound,
    IndexNotReady,
    LeaseExpired,
    UnsafeArchive,
    UploadNotFound,
    UploadTooLarge,
)

logger = logging.getLogger("negminer")

PROBLEM = "application/problem+json"

__all__ = ["PROBLEM", "STATUS_OF", "install", "problem", "problem_responses", "status_of"]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries: these statuses answer problem+json (the :class:`Problem` schema)."""
    return {s: {"model": Problem, "content": {PROBLEM: {}}, "description": HTTPStatus(s).phrase} for s in statuses}


def problem(
    status: int,
    detail: str,
    *,
    code: str,
    param: str | None = None,
    instance: str | None = None,
    line: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A :class:`Problem` answer (``line`` only when an uploaded file's line is at fault)."""
    body = Problem(
        type=f"https://negminer.dev/problems/{code}",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        code=code,
        param=param,
        line=line,
        message=detail,
        error=ProblemError(
            message=detail, type=_OPENAI_TYPE.get(status, "invalid_request_error"), code=code, param=param
        ),
    )
    return JSONResponse(
        body.model_dump(exclude=None if line is not None else {"line"}),
        status_code=status,
        media_type=PROBLEM,
        headers=headers,
    )


# OpenAI's error ``type`` by status (what its SDKs and clients expect to find in ``error.type``).
_OPENAI_TYPE = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}
_OPENAI_TYPE.update({s: "server_error" for s in range(500, 600)})


# NegminerError subclasses -> (HTTP status, problem code); the most specific class that matches wins.
STATUS_OF: dict[type[NegminerError], tuple[int, str]] = {
    IndexNotFound: (404, "index_not_found"),
    UploadNotFound: (404, "upload_not_found"),
    ChecksumMismatch: (422, "checksum_mismatch"),
    UnsafeArchive: (422, "unsafe_archive"),
    UploadTooLarge: (413, "payload_too_large"),
    LeaseExpired: (410, "lease_expired"),
    IndexExists: (409, "index_exists"),
    IndexBusy: (409, "index_busy"),
    IndexDeleting: (409, "index_deleting"),
    StoreUnavailable: (503, "store_unavailable"),
    FileInUse: (409, "file_in_use"),
    FileGone: (422, "invalid_file"),
    IndexNotReady: (409, "index_not_ready"),
    IndexFileError: (409, "index_file_error"),
    DataError: (422, "invalid_data"),
    ModelError: (422, "invalid_model"),
    ConfigError: (422, "invalid_request"),
    ServiceError: (502, "upstream_error"),
    NegminerError: (400, "bad_request"),
}


def status_of(exc: NegminerError) -> tuple[int, str]:
    """(HTTP status, problem code) of an error, by its type alone."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return STATUS_OF[NegminerError]


def _malformed(error: dict[str, Any], body: Any) -> str:
    """ "malformed JSON at line L, column C: why" from FastAPI's ``json_invalid`` error (whose location is a
    character offset into the body)."""
    loc = error.get("loc") or ()
    why = str((error.get("ctx") or {}).get("error") or error.get("msg") or "invalid JSON")
    offset = loc[-1] if loc and isinstance(loc[-1], int) else None
    if offset is None or not isinstance(body, (str, bytes)):
        return f"malformed JSON: {why}"
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return f"malformed JSON at line {line}, column {column}: {why}"


_FASTAPI_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's 400 for any non-JSONDecodeError failure


def _unparseable(body: bytes) -> str:
    """Why a body that FastAPI could not parse is not JSON negminer takes: bad UTF-8, nesting too deep for the
    parser, or an integer past Python's digit limit (each a 422 ``invalid_json``, as malformed JSON is)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    try:
        json.loads(text)
    except RecursionError:
        return "malformed JSON: nested too deeply"
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            return f"malformed JSON: an integer of more than {sys.get_int_max_str_digits()} digits"
        return f"malformed JSON: {exc}"
    return "malformed JSON"


def _no_paths(text: str, request: Request) -> str:
    """``text`` without the server's own folders (see :meth:`ServiceSettings.without_paths`)."""
    settings = getattr(request.app.state, "settings", None)
    return settings.without_paths(text) if settings is not None else text


# negminer's field -> the OpenAI name a caller may have sent instead (the request's own word is the one to name)
_SENT_AS = {"epochs": "n_epochs", "learning_rate": "learning_rate_multiplier"}


def _as_sent(loc: list[str], body: Any) -> list[str]:
    """The error's field path in the caller's words: ``hyperparameters.n_epochs`` when the request said
    ``n_epochs``, though the model validates it as ``epochs``."""
    node = body
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part not in node and _SENT_AS.get(part) in node:
            return [*loc[:i], _SENT_AS[part], *loc[i + 1 :]]
        node = node.get(part) if isinstance(node, dict) else None
    return loc


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json (never a bare 500 for bad input)."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":  # the body is not JSON: say where, not a "field"
            return problem(
                422,
                _malformed(errors[0], exc.body),
                code="invalid_json",
                param="body",
                instance=request.url.path,
            )
        parts, first = [], None
        for e in errors:
            loc = _as_sent([str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")], exc.body)
            name = ".".join(loc) or "body"
            first = first or name
            parts.append(f"{name}: {error_message(dict(e))}")
        detail = _no_paths("; ".join(parts), request)
        return problem(422, detail, code="invalid_request", param=first, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_PARSE_ERROR:  # JSON that json.loads could not take
            why = _unparseable(await request.body())
            return problem(422, why, code="invalid_json", param="body", instance=request.url.path)
        code = {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            409: "conflict",
            410: "gone",
            413: "payload_too_large",
            503: "unavailable",
            507: "insufficient_storage",
        }.get(exc.status_code, "http_error")
        return problem(
            exc.status_code,
            str(exc.detail),
            code=code,
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(NegminerError)
    async def _negminer(request: Request, exc: NegminerError) -> JSONResponse:
        status, code = status_of(exc)
        line = exc.line if isinstance(exc, DataError) else None
        param = exc.param if exc.param is not None else (exc.field if isinstance(exc, DataError) else None)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, StoreUnavailable) else None
        detail = _no_paths(str(exc), request)
        return problem(status, detail, code=code, param=param, instance=request.url.path, line=line, headers=headers)

    @app.exception_handler(OSError)
    async def _os(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            logger.error("disk full on %s: %s", request.url.path, exc)
            return problem(
                507,
                "the server's disk is full; nothing of this request was kept. Free space and try again",
                code="insufficient_storage",
                instance=request.url.path,
            )
        logger.exception("unhandled error on %s", request.url.path)
        return problem(500, "internal error", code="internal_error", instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return problem(500, "internal error", code="internal_error", instance=request.url.path)
