"""Liveness and readiness (public, no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from negminer.service.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health()


@router.get(
    "/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "indexes still loading"}}
)
def readyz(request: Request) -> JSONResponse:
    """503 until the indexes on disk are loaded."""
    ready = getattr(request.app.state, "ready", False)
    body = Readiness(status="ready" if ready else "loading")
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
