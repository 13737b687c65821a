"""``/v1/models``: the models the service can use by name (its default, fine-tuned models, their checkpoints)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import Response, StreamingResponse

from negminer._vocab import TERMINAL_JOB_STATUSES as TERMINAL
from negminer._vocab import ModelKind
from negminer.client.schemas import Deleted, ListPage, Model
from negminer.client.uploads import (
    UPLOAD_PREFIX,
    folder_manifest,
    is_upload_id,
    iter_model_tar,
    model_tar_size,
    upload_id,
)
from negminer.index._internal import pinned_models
from negminer.service.deps import SettingsDep, StoreDep
from negminer.service.errors import problem_responses
from negminer.service.model_names import default_model, resolve_model
from negminer.service.uploads import uploads_of

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problem_responses(404, 422))


@router.get("", response_model=ListPage[Model])
def list_models(store: StoreDep, settings: SettingsDep) -> ListPage[Model]:
    data = [Model(id=default_model(settings)[0], created=0, kind=ModelKind.default)]
    return ListPage[Model](data=data + [Model.model_validate(m.as_dict()) for m in store.list_models()])


@router.delete("/{name}", response_model=Deleted, responses=problem_responses(403, 409))
def delete_model(name: str, store: StoreDep, settings: SettingsDep) -> Deleted:
    """Delete a fine-tuned model or checkpoint and its files (``client.models.delete(name)``). Refused (409) while
    an index depends on it (built or refreshed with it) and, for a checkpoint, while its job has not ended (the
    job may resume from it); the service's default model cannot be deleted (403)."""
    if name == default_model(settings)[0]:
        raise HTTPException(403, f"{name!r} is the service's default model; it cannot be deleted")
    m = store.get_model(name)
    if m is None:
        raise HTTPException(404, f"no model {name!r}")
    data_dir = Path(settings.data_dir).resolve()
    uploads = uploads_of(settings)  # a model a worker uploaded: its files go with the sweep once nothing uses them
    stored = str(m.path)
    path = uploads.root / stored.removeprefix(UPLOAD_PREFIX) if is_upload_id(stored) else Path(stored).resolve()
    users = pinned_models(data_dir / "indexes").get(str(path))
    if users:
        raise HTTPException(409, f"model {name!r} is used by index {', '.join(users)}; delete or refresh it first")
    job = store.get_job(m.job_id) if m.job_id else None
    if m.kind == ModelKind.checkpoint and job is not None and job.status not in TERMINAL:
        raise HTTPException(
            409,
            f"checkpoint {name!r} belongs to job {job.id}, which may resume from it; "
            "cancel the job or wait for it to end",
        )
    store.delete_model(name)
    if path.is_relative_to(data_dir / "models"):  # only what the service made itself
        shutil.rmtree(path, ignore_errors=True)
    if m.kind == ModelKind.checkpoint and job is not None:  # the trainer's copy, kept by keep_trainer_state
        step = path.name.removeprefix("checkpoint-step-")
        shutil.rmtree(data_dir / "jobs" / job.id / "checkpoints" / f"checkpoint-{step}", ignore_errors=True)
    return Deleted(id=name, object="model")


@router.get(
    "/{name:path}/content",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the model's files as an uncompressed tar (what POST /v1/models/uploads takes)",
            "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "the files are the ones If-None-Match names (their content id)"},
    },
)
def model_content(
    name: str,
    store: StoreDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header(description="the content id of a copy the caller has")] = None,
) -> Response:
    """A model's files, as a tar: how a worker on its own disk gets the base model of its job. ``ETag`` (and
    ``X-Negminer-Upload-Id``) is the files' content id, as :mod:`negminer.client` computes it; a caller whose copy
    has that id sends it as ``If-None-Match`` and gets 304, with nothing packed or sent. The tar is packed as it is
    sent (its length announced), with no copy on the API's disk."""
    folder = resolve_model(name, settings, store, param="name")
    manifest = folder_manifest(folder)
    uid = upload_id(manifest)
    headers = {"ETag": f'"{uid}"', "X-Negminer-Upload-Id": uid}
    if if_none_match is not None and uid in {tag.strip().strip('"') for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return StreamingResponse(  # packed as it is sent: no copy of the model on disk
        iter_model_tar(folder, manifest),
        media_type="application/x-tar",
        headers={**headers, "Content-Length": str(model_tar_size(manifest))},
    )


@router.get("/{name}", response_model=Model)
def get_model(name: str, store: StoreDep, settings: SettingsDep) -> Model:
    if name == default_model(settings)[0]:
        return Model(id=name, created=0, kind=ModelKind.default)
    m = store.get_model(name)
    if m is None:
        raise HTTPException(404, f"no model {name!r}")
    return Model.model_validate(m.as_dict())
