"""``/v1/models/uploads``: models sent by clients (a trainer's checkpoint to refresh an index with, a worker's
fine-tuned model), content-addressed; see :mod:`negminer.service.uploads`."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from negminer.client.schemas import ModelUpload
from negminer.service.deps import SettingsDep, StoreDep, UploadsDep
from negminer.service.errors import problem_responses
from negminer.service.model_names import resolve_model

router = APIRouter(prefix="/v1/models/uploads", tags=["models"], responses=problem_responses(400, 404, 413, 422))

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@router.post(
    "",
    status_code=201,
    response_model=ModelUpload,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the model's files as one uncompressed tar",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_model(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    uploads: UploadsDep,
    sha256: Annotated[str, Query(description="sha256 of the archive's bytes, checked before anything is published")],
    base: Annotated[str | None, Query(description="an adapter's base: a model name the service knows")] = None,
) -> ModelUpload:
    """Upload a model folder (or LoRA adapter) as an uncompressed tar, streamed to disk in bounded memory. It is
    published under its content id only when the whole archive arrived with this sha256 and every entry is a file
    or folder inside it; the same files uploaded again give the same id. ``negminer.client`` does all this."""
    if not _SHA256.match(sha256):
        raise HTTPException(422, "sha256: 64 hex digits expected")
    base_folder = resolve_model(base, settings, store, param="base") if base is not None else None
    archive = uploads.incoming()
    try:
        digest = hashlib.sha256()
        size = 0
        try:
            with open(archive, "wb") as fh:  # noqa: ASYNC230 - one chunk at a time, bounded by the guard's cap
                async for chunk in request.stream():
                    size += len(chunk)
                    digest.update(chunk)
                    fh.write(chunk)
        except ClientDisconnect:
            raise HTTPException(400, "the upload was cut short; nothing was published") from None
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) != size:
            raise HTTPException(400, f"the upload was cut short ({size} of {declared} bytes); nothing was published")
        return await run_in_threadpool(
            uploads.publish, archive, sha256=sha256, received=digest.hexdigest(), base=base, base_folder=base_folder
        )
    finally:
        archive.unlink(missing_ok=True)


@router.get("/{uid}", response_model=ModelUpload)
def get_upload(uid: str, uploads: UploadsDep) -> ModelUpload:
    """A published upload (404 when the service does not have it: upload it)."""
    return uploads.get(uid)
