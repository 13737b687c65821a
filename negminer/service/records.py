"""The on-disk records of the service's named indexes, typed, and how a restart reads them back.

``root/<name>/index.json`` (:class:`IndexMeta`: model, kind, labels, lease, and the incarnation's ``uid``) and
``root/<name>/operation.json`` (:class:`OperationRecord`: the running or last operation) are written durably
(fsync, rename, fsync the folder) before the request that asked for them is answered. An operation found
``running`` at start-up was interrupted: it is recorded ``succeeded`` when the version ``CURRENT`` points at names
it as its writer (only the record was cut short), else ``failed`` with ``error.code = "interrupted"``. A deleted
index is moved to ``root/.trash/`` atomically (its tombstone), which start-up empties.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from pathlib import Path

from pydantic import BaseModel, Field

from negminer._errors import IndexFileError
from negminer._io import fsync_dir, write_json
from negminer._vocab import OperationStatus
from negminer.client.schemas import Operation, OperationError
from negminer.index import IndexStore
from negminer.index._internal import OPERATION_FILE

__all__ = [
    "META_FILE",
    "OPERATION_FILE",
    "TRASH",
    "IndexMeta",
    "OperationRecord",
    "load_operation",
    "published_by",
    "read_meta",
    "remove_leftovers",
    "to_trash",
    "write_meta",
    "write_operation",
]

logger = logging.getLogger("negminer")

META_FILE = "index.json"
TRASH = ".trash"  # deleted incarnations, until their files are gone (emptied at start-up)


class IndexMeta(BaseModel):
    """``index.json``: what an index is, written once when it is created."""

    name: str
    model: str
    kind: str = "auto"
    uid: str = Field(description="this incarnation of the name: an operation publishes only into its own")
    labels: dict[str, str] = Field(default_factory=dict)
    expires_after: int | None = None


class OperationRecord(Operation):
    """``operation.json``: the running or last operation, with the incarnation it works for."""

    uid: str


def _write(path: Path, record: BaseModel) -> None:
    """Write a small JSON record durably: fsync the file, rename it into place, fsync the folder."""
    write_json(path, record.model_dump(mode="json"))
    fsync_dir(path.parent)


def write_meta(folder: Path, meta: IndexMeta) -> None:
    _write(folder / META_FILE, meta)


def read_meta(folder: Path) -> IndexMeta:
    """The index's ``index.json`` (``OSError``/``ValueError`` when it is missing or unreadable)."""
    return IndexMeta.model_validate_json((folder / META_FILE).read_text(encoding="utf-8"))


def write_operation(folder: Path, uid: str, operation: Operation) -> None:
    _write(folder / OPERATION_FILE, OperationRecord(**operation.model_dump(), uid=uid))


def load_operation(folder: Path, name: str, uid: str) -> Operation | None:
    """The operation record in ``folder``; one still ``running`` was interrupted and is recorded as such."""
    path = folder / OPERATION_FILE
    try:
        record = OperationRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("index %s: unreadable %s (%s)", name, OPERATION_FILE, exc)
        return None
    operation = Operation.model_validate(record.model_dump(exclude={"uid"}))
    if operation.status == OperationStatus.running:
        published = published_by(folder, operation.id)
        operation.stage, operation.eta_seconds = None, None
        if published is not None:  # the version is served; only the record of it was cut short
            operation.status, operation.version = OperationStatus.succeeded, published
            logger.warning(
                "index %s: the %s %s published version %d before the service stopped; recorded as succeeded",
                name,
                operation.type,
                operation.id,
                published,
            )
        else:
            operation.status = OperationStatus.failed
            operation.error = OperationError(
                code="interrupted",
                message=f"the service stopped while this {operation.type} ran (killed or restarted); "
                "nothing of it was published: send it again",
            )
            logger.warning("index %s: the %s %s was interrupted", name, operation.type, operation.id)
        write_operation(folder, uid, operation)
    return operation


def published_by(folder: Path, operation_id: str | None) -> int | None:
    """The version ``CURRENT`` points at if operation ``operation_id`` published it (each version's ``meta.json``
    names the operation that wrote it), else None."""
    store = IndexStore(folder)
    try:
        version = store.current_version()
        if version is None or operation_id is None:
            return None
        meta = json.loads((store.path(version) / "meta.json").read_text(encoding="utf-8"))
    except (IndexFileError, OSError, ValueError):
        return None
    extra = meta.get("extra") if isinstance(meta, dict) else None
    return version if isinstance(extra, dict) and extra.get("operation") == operation_id else None


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary files of atomic writes cut short (``.<name>.<hex>.tmp`` / ``.old``)."""
    for leftover in folder.glob(".*"):
        if leftover.name.endswith((".tmp", ".old")):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()


def to_trash(root: Path, folder: Path) -> None:
    """Move ``folder`` out of the namespace atomically (the tombstone), then remove its files."""
    trash = root / TRASH
    trash.mkdir(exist_ok=True)
    grave = trash / f"{folder.name}.{secrets.token_hex(6)}"
    os.replace(folder, grave)
    fsync_dir(root)
    shutil.rmtree(grave, ignore_errors=True)
