"""FastAPI dependencies: settings, the index registry, and the API key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from negminer.service.config import ServiceSettings
from negminer.service.registry import IndexRegistry
from negminer.service.store import JobStore


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_registry(request: Request) -> IndexRegistry:
    return request.app.state.registry


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def require_api_key(request: Request, settings: Annotated[ServiceSettings, Depends(get_settings)]) -> None:
    """Bearer token, compared in constant time, when ``NEGMINER_API_KEY`` is set."""
    if settings.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    expected = settings.api_key.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
RegistryDep = Annotated[IndexRegistry, Depends(get_registry)]
StoreDep = Annotated[JobStore, Depends(get_store)]
