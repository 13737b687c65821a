"""Texts kept on disk and read by row: a JSON-lines file of strings and an offsets array (``texts.jsonl`` +
``texts.offsets.npy``). A million-document index keeps only 8 bytes a document in memory; mining and search read
the texts of the rows they return."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from negminer._errors import IndexFileError
from negminer._io import atomic_path, load_npy

__all__ = ["DiskTexts", "write_texts"]


def write_texts(path: str | os.PathLike[str], texts: Iterable[str]) -> Path:
    """Write ``texts`` as ``path`` (one JSON string a line) and ``<path stem>.offsets.npy`` (start of each line,
    plus the end), each atomically; returns the offsets file."""
    path = Path(path)
    offsets = [0]
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        for t in texts:
            line = (json.dumps(t, ensure_ascii=False) + "\n").encode("utf-8")
            fh.write(line)
            offsets.append(offsets[-1] + len(line))
    off_path = path.with_name(path.name.split(".")[0] + ".offsets.npy")
    with atomic_path(off_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(offsets, dtype=np.int64))
    return off_path


class DiskTexts(Sequence[str]):
    """A read-only sequence of the texts :func:`write_texts` wrote, read from disk on access (thread-safe:
    positional reads on one descriptor)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        off_path = self.path.with_name(self.path.name.split(".")[0] + ".offsets.npy")
        try:
            self._offsets = load_npy(off_path, mmap=True)
            self._fd = os.open(self.path, os.O_RDONLY)
        except (OSError, ValueError) as exc:
            raise IndexFileError(f"{self.path}: unreadable texts ({exc})") from exc
        if self._offsets.ndim != 1 or len(self._offsets) < 1:
            raise IndexFileError(f"{off_path}: not an offsets array")
        size = os.fstat(self._fd).st_size
        if int(self._offsets[-1]) != size:
            raise IndexFileError(f"{self.path}: {size} bytes, offsets say {int(self._offsets[-1])}")

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def _read(self, i: int) -> str:
        start, stop = int(self._offsets[i]), int(self._offsets[i + 1])
        raw = os.pread(self._fd, stop - start, start)
        try:
            text = json.loads(raw)
        except ValueError as exc:
            raise IndexFileError(f"{self.path}: line {i + 1} is corrupted ({exc})") from exc
        if not isinstance(text, str):
            raise IndexFileError(f"{self.path}: line {i + 1} is not a string")
        return text

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self._read(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"text row {i} out of range (0..{n - 1})")
        return self._read(j)

    def __iter__(self) -> Iterator[str]:
        """Stream in file order (one sequential read, not a read per row)."""
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)
