"""Model folders sent to the service over HTTP, content-addressed.

A folder's **manifest** is its regular files (relative POSIX paths, sizes, sha256s, sorted); its **upload id** is
``sha256:`` + the sha256 of the manifest (and, for a LoRA adapter, of the name of the base model it applies to). The
client computes the id before sending anything and asks ``GET /v1/models/uploads/{id}``: a model the service holds
already costs one request. Otherwise the files go as one uncompressed tar (deterministic: sorted entries, zero
mtimes and owners) in a ``POST /v1/models/uploads?sha256=<the archive's sha256>``, streamed from a temporary file;
the service checks the archive's sha256 and every entry, recomputes the id from what it unpacked and publishes the
folder under it atomically (see :mod:`negminer.service.uploads`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from negminer._errors import ConfigError
from negminer._io import sha256_file
from negminer.client._errors import ArchiveError, ServiceError
from negminer.client.schemas import ModelUpload

__all__ = [
    "ADAPTER_CONFIG",
    "UPLOAD_PREFIX",
    "Transfer",
    "adapter_base",
    "folder_manifest",
    "is_upload_id",
    "iter_model_tar",
    "model_tar_size",
    "pack_model",
    "unpack_model",
    "upload_id",
    "upload_model",
]

UPLOAD_PREFIX = "sha256:"
ADAPTER_CONFIG = "adapter_config.json"  # a LoRA adapter (peft): it names the base model it applies to
_CHUNK = 1 << 20


def is_upload_id(name: str) -> bool:
    """Whether ``name`` reads as an upload id (``sha256:`` and 64 hex digits)."""
    digest = name.removeprefix(UPLOAD_PREFIX)
    return name.startswith(UPLOAD_PREFIX) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def folder_manifest(
    folder: str | os.PathLike[str], exclude: frozenset[str] = frozenset()
) -> list[tuple[str, int, str]]:
    """``(relative path, bytes, sha256)`` of every file under ``folder``, sorted by path. Links to files are read
    as the files they point to (a Hugging Face cache snapshot is made of them); hidden names (temporary files of
    writes in progress) and the top-level names in ``exclude`` are left out."""
    root = Path(folder)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if name.startswith(".") or not path.is_file() or (Path(dirpath) == root and name in exclude):
                continue
            out.append((path.relative_to(root).as_posix(), path.stat().st_size, sha256_file(path)))
    return sorted(out)


def upload_id(manifest: list[tuple[str, int, str]], base: str | None = None) -> str:
    """The content id of a folder with ``manifest`` (an adapter: applied to ``base``)."""
    canonical = json.dumps({"files": [list(f) for f in manifest], "base": base}, separators=(",", ":"))
    return UPLOAD_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


def adapter_base(folder: str | os.PathLike[str]) -> str | None:
    """The base model a LoRA adapter folder names (``adapter_config.json``), or None for a whole model."""
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        return None
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})", param="model") from None
    return str(base) if base else None


def _tar_header(rel: str, size: int) -> bytes:
    info = tarfile.TarInfo(rel)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def model_tar_size(manifest: list[tuple[str, int, str]]) -> int:
    """The length of the tar :func:`iter_model_tar` gives for ``manifest`` (a download's ``Content-Length``)."""
    blocks = sum(len(_tar_header(rel, size)) + size + (-size % tarfile.BLOCKSIZE) for rel, size, _ in manifest)
    return blocks + 2 * tarfile.BLOCKSIZE


def iter_model_tar(
    folder: str | os.PathLike[str], manifest: list[tuple[str, int, str]], chunk: int = 1 << 20
) -> Iterator[bytes]:
    """The files of ``manifest`` as an uncompressed, deterministic tar, in pieces of at most ``chunk`` bytes of
    file: streamed as it is read, with no copy on disk. A file whose size changed since the manifest was made ends
    it with an :class:`ArchiveError` (a sender then breaks its answer off: its length is announced)."""
    for rel, size, _ in manifest:
        yield _tar_header(rel, size)
        with open(Path(folder) / rel, "rb") as fh:
            left = size
            while left:
                data = fh.read(min(chunk, left))
                if not data:
                    raise ArchiveError(f"{rel} is shorter than when it was listed: it changed while it was sent")
                left -= len(data)
                yield data
            if fh.read(1):
                raise ArchiveError(f"{rel} is longer than when it was listed: it changed while it was sent")
        if size % tarfile.BLOCKSIZE:
            yield bytes(-size % tarfile.BLOCKSIZE)
    yield bytes(2 * tarfile.BLOCKSIZE)  # the end of the archive


def pack_model(folder: str | os.PathLike[str], manifest: list[tuple[str, int, str]], dest: Path) -> str:
    """Write :func:`iter_model_tar` to ``dest``; returns its sha256 (hashed as it is written: one read)."""
    digest = hashlib.sha256()
    with open(dest, "wb") as out:
        for piece in iter_model_tar(folder, manifest):
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


def unpack_model(archive: Path, dest: Path, *, max_bytes: int, max_files: int) -> None:
    """Unpack model ``archive`` into the new folder ``dest``, after checking every entry: a regular file or folder
    under a relative path without ``..``, at most ``max_files`` entries and ``max_bytes`` in all. Anything else is
    an :class:`ArchiveError` naming the entry, and nothing is written."""
    try:
        with tarfile.open(archive, "r:") as tar:
            members, total = [], 0
            for m in tar:
                path = PurePosixPath(m.name)
                if not m.name or path.is_absolute() or ".." in path.parts or "\\" in m.name:
                    raise ArchiveError(f"entry {m.name!r}: an absolute path or one with '..'")
                if not (m.isreg() or m.isdir()):
                    kind = "a symlink" if m.issym() else "a hard link" if m.islnk() else "not a regular file"
                    raise ArchiveError(f"entry {m.name!r} is {kind}; only files and folders are taken")
                members.append(m)
                total += m.size
                if len(members) > max_files:
                    raise ArchiveError(f"more than {max_files} entries", too_large=True)
                if total > max_bytes:
                    raise ArchiveError(f"the files are over {max_bytes} bytes", too_large=True)
            dest.mkdir(parents=True)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the library's own check besides ours
                tar.extractall(dest, members=members, filter="data")
            else:  # every entry was checked above: a file or folder under dest
                tar.extractall(dest, members=members)  # noqa: S202
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"not a complete tar archive ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class Transfer:
    """One model made available to the service: its upload id, the bytes sent (0 when the service had it), the
    seconds it took (manifest, archive and request)."""

    id: str
    bytes_sent: int
    seconds: float
    reused: bool


def upload_model(
    client: httpx.Client,
    folder: str | os.PathLike[str],
    *,
    base: str | None = None,
    what: str = "model",
    exclude: frozenset[str] = frozenset(),
) -> Transfer:
    """Make model ``folder`` available to the service behind ``client`` and return its upload id (see the module
    docstring). ``base``: for an adapter, a model name the service knows; ``exclude``: top-level files left out
    (a trainer checkpoint's optimizer state). Raises
    :class:`negminer.client.ServiceError` when the service refuses it."""
    t0 = time.perf_counter()
    manifest = folder_manifest(folder, exclude)
    if not manifest:
        raise ConfigError(f"{folder}: no files to upload", param=what)
    uid = upload_id(manifest, base)
    try:
        r = client.get(f"/v1/models/uploads/{uid}")
    except httpx.HTTPError as exc:
        raise ServiceError(f"asking {client.base_url} for {what}: {type(exc).__name__}: {exc}") from None
    if r.status_code == 200:
        return Transfer(uid, 0, round(time.perf_counter() - t0, 3), True)
    with tempfile.TemporaryDirectory(prefix="negminer-upload-") as tmp:
        archive = Path(tmp) / "model.tar"
        digest = pack_model(folder, manifest, archive)
        size = archive.stat().st_size

        def chunks() -> Iterator[bytes]:
            with open(archive, "rb") as fh:
                while block := fh.read(_CHUNK):
                    yield block

        params: dict[str, Any] = {"sha256": digest, **({"base": base} if base else {})}
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            r = client.post("/v1/models/uploads", params=params, content=chunks(), headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceError(f"uploading {what} to {client.base_url}: {type(exc).__name__}: {exc}") from None
    if r.status_code >= 400:
        raise ServiceError.from_answer(r, f"service: uploading {what}")
    answer = ModelUpload.model_validate(r.json())
    if answer.id != uid:  # the service unpacked something else than was packed here
        raise ServiceError(f"service: uploaded {what} as {answer.id}, expected {uid}", status=r.status_code)
    return Transfer(uid, size, round(time.perf_counter() - t0, 3), False)
