"""Liveness and readiness (public, no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """503 until the indexes on disk are loaded."""
    ready = getattr(request.app.state, "ready", False)
    return JSONResponse({"status": "ready" if ready else "loading"}, status_code=200 if ready else 503)
