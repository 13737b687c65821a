"""``/v1/files``: upload (validated on the way in), list, inspect, delete training and validation files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse

from negminer import DataError, load_data
from negminer._data import PairsSummary, scan_pairs, split_buckets
from negminer._vocab import new_id
from negminer.client.schemas import Deleted, FileObject, ListPage
from negminer.jobs import FileRow
from negminer.service.api.params import bad_param, list_page
from negminer.service.deps import SettingsDep, StoreDep
from negminer.service.errors import problem_responses

router = APIRouter(prefix="/v1/files", tags=["files"], responses=problem_responses(404, 409, 413, 422))

FORMATS = {".jsonl": "pairs-jsonl", ".json": "pairs-jsonl", ".parquet": "parquet", ".csv": "csv"}


def file_object(row: FileRow) -> FileObject:
    return FileObject.model_validate({**row.as_dict(), **row.info})


@router.post("", response_model=FileObject)
def upload_file(
    file: UploadFile, settings: SettingsDep, store: StoreDep, purpose: Annotated[str, Form()] = "fine-tune"
) -> FileObject:
    """Upload training or validation data: pairs JSONL (``query``/``anchor`` with ``positive`` or
    ``positives``), or Parquet / CSV with ``anchor`` and ``positive`` columns. The whole file is checked before it
    is kept; a bad one is refused with its line and field."""
    if purpose != "fine-tune":
        raise bad_param("purpose", "must be 'fine-tune' (the only purpose negminer takes uploads for)")
    filename = Path(file.filename or "").name
    ext = Path(filename).suffix.lower()
    if ext not in FORMATS:
        raise bad_param("file", f"{filename or 'the file'}: unsupported type (use {', '.join(FORMATS)})")
    folder = Path(settings.data_dir) / "files"
    folder.mkdir(parents=True, exist_ok=True)
    file_id = new_id("file")
    tmp, dest = folder / f".{file_id}.upload{ext}", folder / f"{file_id}{ext}"
    digest, size = hashlib.sha256(), 0
    try:
        with open(tmp, "wb") as fh:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise HTTPException(413, f"file: larger than {settings.max_upload_bytes} bytes")
                digest.update(chunk)
                fh.write(chunk)
        if size == 0:
            raise bad_param("file", f"{filename}: empty file")
        try:
            if FORMATS[ext] == "pairs-jsonl":  # line by line: memory grows by bytes a line, not with the text
                summary = scan_pairs(tmp, max_line_bytes=settings.max_line_bytes)
            else:
                data = load_data(tmp)
                summary = PairsSummary(len(data), data.num_pairs, len(data.corpus_texts), split_buckets(data.queries))
        except DataError as exc:  # name the uploaded file, not our temporary copy
            raise DataError(exc.message, file=filename, line=exc.line, field=exc.field) from None
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    info = {
        "format": FORMATS[ext],
        "queries": summary.queries,
        "pairs": summary.pairs,
        "documents": summary.documents,
        "split_buckets": list(summary.split_buckets),  # for create_job's check of the validation split
    }
    return file_object(
        store.add_file(
            id=file_id,
            filename=filename,
            purpose=purpose,
            nbytes=size,
            path=str(dest),
            sha256=digest.hexdigest(),
            info=info,
        )
    )


@router.get("", response_model=ListPage[FileObject])
def list_files(
    store: StoreDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    order: Annotated[Literal["desc", "asc"], Query(description="by creation: desc (newest first) or asc")] = "desc",
    purpose: Annotated[Literal["fine-tune", "fine-tune-results"] | None, Query()] = None,
) -> ListPage[FileObject]:
    """Files (uploads and the jobs' results), one page; the next page starts ``after`` the last id of this one."""
    return list_page(
        lambda: store.list_files(after, limit, purpose=purpose, descending=order == "desc"),
        file_object,
        f"file {after!r}",
    )


@router.get("/{file_id}", response_model=FileObject)
def get_file(file_id: str, store: StoreDep) -> FileObject:
    row = store.get_file(file_id)
    if row is None:
        raise HTTPException(404, f"no file {file_id!r}")
    return file_object(row)


@router.get(
    "/{file_id}/content",
    response_class=FileResponse,
    responses={
        200: {
            "description": "the file's bytes as uploaded (or written by a job)",
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def file_content(file_id: str, store: StoreDep) -> FileResponse:
    """The file's bytes (``client.files.content(id)``)."""
    row = store.get_file(file_id)
    if row is None:
        raise HTTPException(404, f"no file {file_id!r}")
    if not Path(row.path).is_file():
        raise HTTPException(410, f"the bytes of file {file_id!r} are gone from the data dir")
    return FileResponse(row.path, media_type="application/octet-stream", filename=row.filename)


@router.delete("/{file_id}", response_model=Deleted)
def delete_file(file_id: str, store: StoreDep) -> Deleted:
    row = store.get_file(file_id)
    if row is None:
        raise HTTPException(404, f"no file {file_id!r}")
    store.delete_file(file_id)  # FileInUse (409) while an unfinished job reads it, checked in the same transaction
    Path(row.path).unlink(missing_ok=True)
    return Deleted(id=file_id, object="file")
