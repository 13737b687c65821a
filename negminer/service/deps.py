"""FastAPI dependencies: settings, the index registry, and the API key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from negminer._settings import ServiceSettings
from negminer.jobs import JobStore
from negminer.service.guard import key_matches
from negminer.service.registry import IndexRegistry
from negminer.service.uploads import ModelUploads


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_registry(request: Request) -> IndexRegistry:
    return request.app.state.registry


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_uploads(request: Request) -> ModelUploads:
    return request.app.state.uploads


def require_api_key(request: Request, settings: Annotated[ServiceSettings, Depends(get_settings)]) -> None:
    """Bearer token, compared in constant time, when ``NEGMINER_API_KEY`` is set. The request guard checks it
    first, before any body is read; this dependency declares it in the OpenAPI document and holds for an app
    mounted without the guard."""
    if not key_matches(request.headers.get("authorization", ""), settings):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
RegistryDep = Annotated[IndexRegistry, Depends(get_registry)]
StoreDep = Annotated[JobStore, Depends(get_store)]
UploadsDep = Annotated[ModelUploads, Depends(get_uploads)]
