"""``/v1/indexes``: create (202, built in the background), list, inspect, delete, search."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from negminer.service.deps import RegistryDep, SettingsDep

router = APIRouter(prefix="/v1/indexes", tags=["indexes"])


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)


class CreateIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    model: str | None = Field(None, description="model folder or name; default: the service's model")
    documents: list[Document] = Field(min_length=1)
    kind: Literal["flat", "ivf", "hnsw"] = "flat"


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[str] = Field(min_length=1)
    top_k: int = Field(10, ge=1)
    return_text: bool = False


@router.post("", status_code=202)
def create_index(body: CreateIndex, registry: RegistryDep, settings: SettingsDep) -> dict[str, Any]:
    """Start building an index from inline documents; poll ``GET /v1/indexes/{name}`` for its status."""
    if len(body.documents) > settings.max_documents:
        raise HTTPException(413, f"documents: at most {settings.max_documents} per request")
    model = body.model or settings.model or _default_model()
    state = registry.create(body.name, model, [d.id for d in body.documents], [d.text for d in body.documents],
                            kind=body.kind)
    return state.info()


@router.get("")
def list_indexes(registry: RegistryDep) -> dict[str, Any]:
    return {"object": "list", "data": [registry.get(n).info() for n in registry.names()], "has_more": False}


@router.get("/{name}")
def get_index(name: str, registry: RegistryDep) -> dict[str, Any]:
    return registry.get(name).info()


@router.delete("/{name}")
def delete_index(name: str, registry: RegistryDep) -> dict[str, Any]:
    registry.delete(name)
    return {"name": name, "deleted": True}


@router.post("/{name}/search")
def search(name: str, body: SearchRequest, registry: RegistryDep, settings: SettingsDep) -> dict[str, Any]:
    """Top-k documents for each query text; the response names the index version that answered."""
    if len(body.queries) > settings.max_batch:
        raise _limit("queries", f"at most {settings.max_batch} queries per request")
    if body.top_k > settings.max_top_k:
        raise _limit("top_k", f"at most {settings.max_top_k}")
    version, results = registry.search(name, body.queries, body.top_k)
    if not body.return_text:
        results = [[{k: v for k, v in hit.items() if k != "text"} for hit in hits] for hits in results]
    return {"index": name, "version": version, "results": results}


def _limit(param: str, why: str) -> Exception:
    from fastapi.exceptions import RequestValidationError

    return RequestValidationError([{"loc": ("body", param), "msg": why, "type": "value_error"}])


def _default_model() -> str:
    from negminer.index import default_model_path

    return default_model_path()
