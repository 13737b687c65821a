"""Atomic writes: everything negminer writes goes to a temporary name first and is renamed when complete.

Files: :func:`atomic_path`, :func:`atomic_open`, :func:`write_json`. Folders (index versions, models,
checkpoints): :func:`atomic_dir`, written beside the target and renamed into place, so a reader never finds a
half-written folder. What must change under readers' feet uses versioned folders and a pointer file instead
(:class:`negminer.index.IndexStore`: ``v000001``... and ``CURRENT``).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import math
import mmap
import os
import re
import shutil
import struct
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp gives 0o600)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` (after fsync) only when the block succeeds."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=False)
        fh.write("\n")


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make the renames inside ``folder`` durable (POSIX: fsync the directory); a no-op where it cannot."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def replace_dir(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Move folder ``src`` onto ``dest``: ``dest`` is renamed away, ``src`` renamed in, the old one removed.

    Between the two renames ``dest`` is missing for an instant. No reader depends on that instant: indexes are never
    replaced in place (each version is a new folder and ``CURRENT`` is a file swapped atomically, see
    :class:`negminer.index.IndexStore`), and a model folder is written once per name (a resumed job may write a
    checkpoint of the same step again). So no platform-specific atomic exchange (``renameat2`` through ctypes) is
    needed."""
    src, dest = Path(src), Path(dest)
    if not dest.exists():
        os.replace(src, dest)
        return
    old = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.old"
    os.replace(dest, old)
    os.replace(src, dest)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block succeeds it replaces ``path`` (see
    :func:`replace_dir`), when it fails it is removed and ``path`` is left as it was: a reader never finds a
    half-written folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def release_pages(array: Any) -> None:
    """Let the kernel take back the pages of a read-only memory map that this process has touched (``madvise
    DONTNEED``): they stay in the page cache, so reading them again is cheap, but they no longer count in this
    process's resident memory. A no-op for arrays that are not memory maps. Streaming passes over a large vector
    file call it after each block, so their resident memory stays one block."""
    base = array
    while base is not None and not hasattr(base, "_mmap"):
        base = getattr(base, "base", None)
    mm = getattr(base, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and getattr(base, "mode", "r") == "r":
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(mmap.MADV_DONTNEED)


# What numpy writes as a .npy header: a dict literal with a plain dtype string, the order and the shape.
_NPY_HEADER = re.compile(
    r"\{'descr': '(?P<descr>[<>|=][a-zA-Z]\d*)', 'fortran_order': (?P<fortran>True|False), "
    r"'shape': \((?P<shape>(?:\d+, ?)*\d*)\), \}\s*"
)


def _npy_header(f: IO[bytes]) -> tuple[np.dtype[Any], tuple[int, ...], Literal["C", "F"]] | None:
    """(dtype, shape, order) of the .npy file open at its start, leaving ``f`` at its data; None where the header
    is not one that numpy writes for a plain array.

    numpy reads a .npy header with ``ast.literal_eval``, and CPython 3.11 keeps the AST builder's recursion count
    in one place for all threads: a thread that parses while another thread's parse is under way makes the other
    fail with ``SystemError: AST constructor recursion depth mismatch`` (cpython gh-106905). The service reads
    vectors, caches and offsets from many threads (builds, the encode batcher, searches), so it reads headers
    itself."""
    try:
        major, _ = np.lib.format.read_magic(f)
        (size,) = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))
        text = f.read(size).decode("utf-8" if major >= 3 else "latin1")
    except (ValueError, struct.error, UnicodeDecodeError):
        return None
    found = _NPY_HEADER.fullmatch(text)
    if found is None:
        return None
    shape = tuple(int(n) for n in found["shape"].replace(" ", "").split(",") if n)
    return np.dtype(found["descr"]), shape, "F" if found["fortran"] == "True" else "C"


def npy_shape(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """The shape in a .npy file's header (reads the header only)."""
    with open(path, "rb") as f:
        header = _npy_header(f)
    return header[1] if header is not None else tuple(np.load(path, mmap_mode="r").shape)


def load_npy(path: str | os.PathLike[str], *, mmap: bool = False) -> np.ndarray:
    """``np.load(path, mmap_mode="r" if mmap else None)`` without ``ast`` for the .npy files negminer writes (see
    :func:`_npy_header`); a header it does not recognise (a structured dtype, say) goes to ``np.load``."""
    with open(path, "rb") as f:
        header = _npy_header(f)
        if header is None:
            return np.load(path, mmap_mode="r" if mmap else None)
        dtype, shape, order = header
        if mmap:
            return np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order=order)
        count = math.prod(shape)
        data = np.fromfile(f, dtype=dtype, count=count)
    if data.size != count:
        raise ValueError(f"{path}: the file holds {data.size} of the {count} values its header announces")
    return data.reshape(shape, order=order)


_OWNER = ".owner"  # in a scratch folder: locked (flock) by the process using it, released when it dies


class ScratchDir(tempfile.TemporaryDirectory[str]):
    """A temporary folder for large files (vectors) that a later :func:`scratch_dir` removes if its process died
    without cleaning it (kill -9, OOM): the process holds an exclusive ``flock`` on ``.owner`` inside it, which
    the kernel releases with the process."""

    def __init__(self, prefix: str, dir: Path) -> None:
        super().__init__(prefix=prefix, dir=dir)
        locking = Path(self.name) / f"{_OWNER}.tmp"  # locked, then named: no sweep sees an unlocked .owner
        self._owner = open(locking, "wb")  # noqa: SIM115 - held while the folder lives
        fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locking.rename(Path(self.name) / _OWNER)

    def cleanup(self) -> None:
        self._owner.close()
        super().cleanup()


SCRATCH_PREFIXES = ("negminer-vectors-", "negminer-mine-")  # an index build's vectors; a large mining's


def remove_dead_scratch(
    folder: str | os.PathLike[str], prefixes: tuple[str, ...] = SCRATCH_PREFIXES, *, unowned_after: float = 3600.0
) -> list[Path]:
    """Remove the scratch folders (``prefix...``) in ``folder`` whose process is gone: their ``.owner`` lock is
    free, or they have none (a process killed between creating and locking it) and were last changed over
    ``unowned_after`` seconds ago. Never a live process's. Returns what it removed."""
    removed: list[Path] = []
    for old in (p for prefix in prefixes for p in Path(folder).glob(f"{glob.escape(prefix)}*")):
        with contextlib.suppress(OSError):
            if old.is_symlink() or not old.is_dir():
                continue
            owner = old / _OWNER
            if not owner.exists():
                if time.time() - old.stat().st_mtime > unowned_after:
                    shutil.rmtree(old, ignore_errors=True)
                    removed.append(old)
                continue
            with open(owner, "rb") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process's
                shutil.rmtree(old, ignore_errors=True)
                removed.append(old)
    return removed


def scratch_dir(prefix: str, dir: str | os.PathLike[str] | None = None) -> ScratchDir:
    """A :class:`ScratchDir` named ``prefix...`` in ``dir`` (default: the system's temporary folder), after
    removing the folders of that prefix there that dead processes left (:func:`remove_dead_scratch`)."""
    folder = Path(dir) if dir is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    remove_dead_scratch(folder, (prefix,))
    return ScratchDir(prefix, folder)
