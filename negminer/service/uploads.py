"""Uploaded models, content-addressed, under ``DATA_DIR/uploads``.

An upload arrives as one tar archive (:mod:`negminer.client.uploads` writes it) with the sha256 the client computed.
It is received into ``uploads/.incoming/`` in bounded memory, checked (the sha256; every entry a regular file or
folder under a relative path without ``..``; the count and unpacked size under the caps; a model in it: a
sentence-transformers or transformers folder, or a LoRA adapter with a base the service knows), unpacked into a
temporary folder and published by two renames: the folder to ``uploads/<hex>``, then its record
``uploads/<hex>.json``, which is what makes it exist. Its id is computed here from the unpacked files, the same way
the client computes it, so the same files always get the same id: a re-upload publishes nothing new, and a partial
upload (cut short, a bad checksum, a refused entry) never has a record.

An adapter's ``adapter_config.json`` names its base by the client's path; the published copy names the base's
folder on this server instead (the id is of the files as sent, with the base's name).

Uploads nothing uses (no index version, operation in progress, registered model or adapter built on them) are
deleted by :meth:`ModelUploads.collect` once ``upload_grace_seconds`` have passed since they were last named.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from negminer._errors import ConfigError
from negminer._io import fsync_dir, write_json
from negminer._settings import ServiceSettings
from negminer.client import ArchiveError
from negminer.client.schemas import ModelUpload
from negminer.client.uploads import (
    ADAPTER_CONFIG,
    UPLOAD_PREFIX,
    folder_manifest,
    is_upload_id,
    unpack_model,
    upload_id,
)
from negminer.index._internal import is_model_folder
from negminer.service.exceptions import ChecksumMismatch, UnsafeArchive, UploadNotFound, UploadTooLarge

__all__ = ["ModelUploads", "uploads_of"]

logger = logging.getLogger("negminer")

_INCOMING = ".incoming"


class ModelUploads:
    """The uploaded models under ``root``; ``max_bytes`` caps an archive and what it unpacks to, ``max_files``
    its entries."""

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int, max_files: int) -> None:
        self.root = Path(root)
        self.max_bytes, self.max_files = max_bytes, max_files

    # -- names ----------------------------------------------------------------------------------------------------
    def _record(self, uid: str) -> Path:
        return self.root / f"{uid.removeprefix(UPLOAD_PREFIX)}.json"

    def folder(self, uid: str) -> Path:
        """The published folder of upload ``uid`` (:class:`UploadNotFound` when there is none)."""
        if not is_upload_id(uid) or not self._record(uid).is_file():
            raise UploadNotFound(uid)
        return self.root / uid.removeprefix(UPLOAD_PREFIX)

    def id_of(self, path: str | os.PathLike[str]) -> str | None:
        """The upload id of a published folder path, or None when ``path`` is not one."""
        p = Path(path)
        uid = UPLOAD_PREFIX + p.name
        return uid if p.parent == self.root and is_upload_id(uid) and self._record(uid).is_file() else None

    def get(self, uid: str) -> ModelUpload:
        self.folder(uid)
        try:
            return ModelUpload.model_validate_json(self._record(uid).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UploadNotFound(uid) from None

    def touch(self, uid: str) -> None:
        """Note that ``uid`` was just named: :meth:`collect` keeps it for the grace period from now."""
        with contextlib.suppress(OSError):
            os.utime(self._record(uid))

    # -- receiving ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Remove what uploads cut short by a stop left behind, and folders that never got their record."""
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.root / _INCOMING, ignore_errors=True)
        for d in self.root.iterdir():
            if d.is_dir() and d.name != _INCOMING and not (self.root / f"{d.name}.json").is_file():
                shutil.rmtree(d, ignore_errors=True)

    def incoming(self) -> Path:
        """A fresh path for an archive being received."""
        folder = self.root / _INCOMING
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{secrets.token_hex(8)}.tar"

    def publish(
        self, archive: Path, *, sha256: str, received: str, base: str | None = None, base_folder: str | None = None
    ) -> ModelUpload:
        """Check and unpack ``archive`` (received with sha256 ``received``; the client said ``sha256``) and publish
        it; ``base``/``base_folder``: the name and folder of the model an adapter applies to."""
        if received != sha256.lower():
            raise ChecksumMismatch(sha256, received)
        tmp = self.root / _INCOMING / f"{archive.stem}.d"
        try:
            try:
                unpack_model(archive, tmp, max_bytes=self.max_bytes, max_files=self.max_files)
            except ArchiveError as exc:
                raise UploadTooLarge(str(exc)) if exc.too_large else UnsafeArchive(str(exc)) from None
            if not is_model_folder(tmp):
                raise ConfigError(
                    "the archive holds no model (no modules.json, config.json or adapter_config.json at its top)",
                    param="file",
                )
            manifest = folder_manifest(tmp)
            adapter = (tmp / ADAPTER_CONFIG).is_file()
            if adapter and base_folder is None:
                raise ConfigError("a LoRA adapter needs base: a model name the service knows", param="base")
            if not adapter and base is not None:
                raise ConfigError("base is for LoRA adapters; the archive is a whole model", param="base")
            uid = upload_id(manifest, base if adapter else None)
            if adapter:
                _rebase(tmp / ADAPTER_CONFIG, str(base_folder))
            record = ModelUpload(
                id=uid,
                created=int(time.time()),
                bytes=sum(f[1] for f in manifest),
                files=len(manifest),
                base=base if adapter else None,
            )
            dest = self.root / uid.removeprefix(UPLOAD_PREFIX)
            if self._record(uid).is_file():  # the same files again: nothing new to publish
                self.touch(uid)
                return self.get(uid)
            if dest.exists():  # a folder whose record was never written
                shutil.rmtree(dest)
            os.replace(tmp, dest)
            write_json(self._record(uid), record.model_dump(mode="json"))
            fsync_dir(self.root)
            logger.info("model upload %s published (%d files, %d bytes)", uid, record.files, record.bytes)
            return record
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- collecting -----------------------------------------------------------------------------------------------
    def records(self) -> list[ModelUpload]:
        out = []
        for p in sorted(self.root.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                out.append(ModelUpload.model_validate_json(p.read_text(encoding="utf-8")))
        return out

    def collect(self, in_use: Iterable[str], grace_seconds: float) -> list[str]:
        """Delete the uploads that nothing in ``in_use`` (folder paths or upload ids) names, directly or as an
        adapter's base, and that were last named more than ``grace_seconds`` ago. Returns their ids."""
        used = set()
        for name in in_use:
            uid = name if is_upload_id(name) else self.id_of(name)
            if uid:
                used.add(uid)
        records = {r.id: r for r in self.records()}
        for uid in list(used):  # an adapter keeps its base
            base = records[uid].base if uid in records else None
            while base and is_upload_id(base) and base not in used:
                used.add(base)
                base = records[base].base if base in records else None
        now, gone = time.time(), []
        for uid in records:
            if uid in used:
                continue
            try:
                if now - self._record(uid).stat().st_mtime < grace_seconds:
                    continue
                self._record(uid).unlink()  # unpublished first: nothing can name it from here on
            except OSError:
                continue
            shutil.rmtree(self.root / uid.removeprefix(UPLOAD_PREFIX), ignore_errors=True)
            gone.append(uid)
            logger.info("model upload %s deleted: nothing used it for %g s", uid, grace_seconds)
        return gone


def uploads_of(settings: ServiceSettings) -> ModelUploads:
    """The uploads of the service configured by ``settings`` (``DATA_DIR/uploads``)."""
    return ModelUploads(
        Path(settings.data_dir).resolve() / "uploads",
        max_bytes=settings.max_model_bytes,
        max_files=settings.max_model_files,
    )


def _rebase(config: Path, base_folder: str) -> None:
    """Point an adapter's ``base_model_name_or_path`` at the base's folder on this server."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{ADAPTER_CONFIG}: unreadable ({exc})", param="file") from None
    data["base_model_name_or_path"] = base_folder
    write_json(config, data)
