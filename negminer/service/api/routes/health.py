"""Liveness and readiness (public, no API key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from negminer.client.schemas import Health, Readiness
from negminer.jobs import StoreUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "indexes still loading, or the job database unreachable"}},
)
def readyz(request: Request) -> JSONResponse:
    """200 once the indexes on disk are loaded and while the job database answers; 503 (with ``Retry-After``)
    otherwise, so a load balancer sends no work to an instance that cannot record it."""
    if not getattr(request.app.state, "ready", False):
        status = "loading"
    else:
        try:
            request.app.state.store.ping()
            status = "ready"
        except StoreUnavailable:
            status = "unavailable"
    code = 200 if status == "ready" else 503
    headers = None if code == 200 else {"Retry-After": "5"}
    return JSONResponse(Readiness(status=status).model_dump(), status_code=code, headers=headers)
