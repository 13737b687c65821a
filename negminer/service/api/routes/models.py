"""``/v1/models``: the models the service can use by name (its default, fine-tuned models, their checkpoints)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from negminer.service.deps import SettingsDep, StoreDep
from negminer.service.models import default_model

router = APIRouter(prefix="/v1/models", tags=["models"])


def _model(name: str, created: int, kind: str, job: str | None) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "negminer", "kind": kind, "job": job}


@router.get("")
def list_models(store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    data = [_model(default_model(settings)[0], 0, "default", None)]
    data += [_model(m["name"], m["created_at"], m["kind"], m["job_id"]) for m in store.list_models()]
    return {"object": "list", "data": data, "has_more": False}


@router.get("/{name}")
def get_model(name: str, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    if name == default_model(settings)[0]:
        return _model(name, 0, "default", None)
    m = store.get_model(name)
    if m is None:
        raise HTTPException(404, f"no model {name!r}")
    return _model(m["name"], m["created_at"], m["kind"], m["job_id"])
