"""``/v1/models``: the models the service can use by name (its default, fine-tuned models, their checkpoints)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from negminer._vocab import ModelKind
from negminer.service.deps import SettingsDep, StoreDep
from negminer.service.errors import problem_responses
from negminer.service.models import default_model
from negminer.service.schemas import ListPage, Model

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problem_responses(404, 422))


@router.get("", response_model=ListPage[Model])
def list_models(store: StoreDep, settings: SettingsDep) -> ListPage[Model]:
    data = [Model(id=default_model(settings)[0], created=0, kind=ModelKind.default)]
    return ListPage[Model](data=data + [Model.model_validate(m) for m in store.list_models()])


@router.get("/{name}", response_model=Model)
def get_model(name: str, store: StoreDep, settings: SettingsDep) -> Model:
    if name == default_model(settings)[0]:
        return Model(id=name, created=0, kind=ModelKind.default)
    m = store.get_model(name)
    if m is None:
        raise HTTPException(404, f"no model {name!r}")
    return Model.model_validate(m)
