"""On-disk embedding cache.

Vectors are stored per *namespace* (one model weights fingerprint + prompt + max sequence length + precision) as
chunks: ``<namespace>/<chunk>.keys.npy`` (16-byte BLAKE2b hashes of the texts, sorted) beside ``<chunk>.vecs.npy``
(float32 rows in the same order). A chunk becomes visible only when its keys file is renamed into place, so a
crash mid-write leaves no half chunk behind. Re-encoding a corpus with an unchanged model reads every vector back;
a changed document is a new text hash and is the only one encoded again; a fine-tuned checkpoint has other
weights, hence another namespace, and never sees the base model's vectors.

What it holds, and for how long:

- In memory, only the keys: 16 bytes a cached text (a sorted array per chunk, searched by bisection). Vector files
  are opened (memory-mapped) for the rows a lookup reads and closed when it returns, so a long-running server
  holds no descriptor or memory map for the cache between calls, however many texts it has seen.
- On disk, chunks are compacted as in a log-structured merge tree: a chunk's level is ``log4`` of its rows, and
  four chunks of one level are merged into one of the next (duplicates dropped). A server that encodes one new
  query per request therefore keeps O(log n) chunks, not one per request, and each row is rewritten O(log n)
  times. Chunks of :data:`MERGE_MAX_ROWS` rows or more (large corpus blocks) are left as they are.

Several processes may share a namespace: one that finds a chunk gone (another compacted it) reads the folder
again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from negminer._io import atomic_path, load_npy, npy_shape, write_json

__all__ = ["EmbeddingCache", "text_key"]

KEY_BYTES = 16
FANOUT = 4  # chunks of one level merged into one of the next
MERGE_MAX_ROWS = 1 << 18  # chunks at least this large are never rewritten
_MERGE_BLOCK = 1 << 14  # rows copied at a time while merging (bounded memory)


def text_key(text: str) -> bytes:
    """16-byte BLAKE2b digest of a text: the cache key of one row."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


def _level(rows: int) -> int:
    return int(math.log(max(rows, 1), FANOUT))


@dataclass
class _Chunk:
    name: str
    keys: np.ndarray  # (n,) "S16", sorted
    order: np.ndarray | None  # rows of the vectors file in key order (chunks written before keys were sorted)

    def __len__(self) -> int:
        return len(self.keys)


class _ChunkGone(Exception):
    """A chunk's files were removed by another process (it compacted them): read the folder again."""


class EmbeddingCache:
    """Vectors of texts for one namespace, read from and appended to ``root/<namespace>``. Thread-safe."""

    def __init__(self, root: str | os.PathLike[str], namespace: dict[str, object]) -> None:
        self.namespace = namespace
        digest = hashlib.sha256(json.dumps(namespace, sort_keys=True).encode()).hexdigest()[:32]
        self.dir = Path(root) / digest
        self._chunks: list[_Chunk] | None = None
        self._lock = threading.RLock()

    # -- the folder -------------------------------------------------------------------------------------------
    def _keys_path(self, name: str) -> Path:
        return self.dir / f"{name}.keys.npy"

    def _vecs_path(self, name: str) -> Path:
        return self.dir / f"{name}.vecs.npy"

    def _load(self) -> list[_Chunk]:
        if self._chunks is not None:
            return self._chunks
        chunks: list[_Chunk] = []
        if self.dir.is_dir():
            for keys_file in sorted(self.dir.glob("*.keys.npy")):
                name = keys_file.name[: -len(".keys.npy")]
                try:
                    raw = load_npy(keys_file)
                    shape = npy_shape(self._vecs_path(name))
                except (OSError, ValueError):
                    continue  # an unreadable chunk is a cache miss, never an error
                if raw.ndim != 2 or raw.shape[1] != KEY_BYTES or len(shape) != 2 or shape[0] != raw.shape[0]:
                    continue
                keys = np.ascontiguousarray(raw).view(f"S{KEY_BYTES}").reshape(-1)
                order = None
                if len(keys) > 1 and not bool((keys[1:] >= keys[:-1]).all()):
                    order = np.argsort(keys, kind="stable")
                    keys = keys[order]
                chunks.append(_Chunk(name, keys, order))
        self._chunks = chunks
        return chunks

    def _reload(self) -> list[_Chunk]:
        self._chunks = None
        return self._load()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(c) for c in self._load())

    @property
    def chunk_count(self) -> int:
        """Chunks on disk (each a keys and a vectors file)."""
        with self._lock:
            return len(self._load())

    # -- reading ----------------------------------------------------------------------------------------------
    @staticmethod
    def _as_keys(keys: Sequence[bytes]) -> np.ndarray:
        return np.array(list(keys), dtype=f"S{KEY_BYTES}") if len(keys) else np.empty(0, dtype=f"S{KEY_BYTES}")

    @staticmethod
    def _find(chunk: _Chunk, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of ``wanted`` in the chunk, their rows in its vectors file)."""
        if not len(chunk):
            return np.zeros(len(wanted), dtype=bool), np.empty(0, dtype=np.int64)
        pos = np.searchsorted(chunk.keys, wanted).clip(max=len(chunk) - 1)
        hit = chunk.keys[pos] == wanted
        rows = pos[hit]
        return hit, (chunk.order[rows] if chunk.order is not None else rows)

    def contains(self, keys: Sequence[bytes]) -> np.ndarray:
        """Which of ``keys`` the cache holds (reads no vectors)."""
        wanted = self._as_keys(keys)
        found = np.zeros(len(wanted), dtype=bool)
        with self._lock:
            for chunk in self._load():
                found |= self._find(chunk, wanted)[0]
        return found

    def lookup(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (found mask, vectors of the found keys in order) for ``keys``."""
        with self._lock:
            try:
                return self._lookup(self._as_keys(keys))
            except _ChunkGone:
                self._reload()
                try:
                    return self._lookup(self._as_keys(keys))
                except _ChunkGone:
                    return np.zeros(len(keys), dtype=bool), None

    def _lookup(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        found = np.zeros(len(wanted), dtype=bool)
        parts: list[tuple[np.ndarray, _Chunk, np.ndarray]] = []
        for chunk in self._load():
            todo = np.flatnonzero(~found)
            if not len(todo):
                break
            hit, rows = self._find(chunk, wanted[todo])
            if hit.any():
                found[todo[hit]] = True
                parts.append((todo[hit], chunk, rows))
        if not parts:
            return found, None
        out: np.ndarray | None = None
        where = np.cumsum(found) - 1  # position of each found key among the found ones
        for dst, chunk, rows in parts:
            vecs = self._read_rows(chunk, rows)
            if out is None:
                out = np.empty((int(found.sum()), vecs.shape[1]), dtype=np.float32)
            out[where[dst]] = vecs
        return found, out

    def _read_rows(self, chunk: _Chunk, rows: np.ndarray) -> np.ndarray:
        """``rows`` of a chunk's vectors, read through a memory map that is closed before returning."""
        try:
            mapped = load_npy(self._vecs_path(chunk.name), mmap=True)
        except FileNotFoundError:
            raise _ChunkGone from None
        try:
            order = np.argsort(rows, kind="stable")  # sequential reads
            vecs = np.empty((len(rows), mapped.shape[1]), dtype=np.float32)
            vecs[order] = mapped[rows[order]]
            return vecs
        finally:
            mm = getattr(mapped, "_mmap", None)
            del mapped
            if mm is not None:
                mm.close()

    # -- writing ----------------------------------------------------------------------------------------------
    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Add a chunk of (key, vector) rows atomically, then compact the chunks of its level if it completes one."""
        if len(keys) == 0:
            return
        if len(keys) != len(vectors):
            raise ValueError("keys and vectors differ in length")
        arr = self._as_keys(keys)
        order = np.argsort(arr, kind="stable")
        with self._lock:
            chunks = self._load()
            self.dir.mkdir(parents=True, exist_ok=True)
            meta = self.dir / "namespace.json"
            if not meta.exists():
                write_json(meta, self.namespace)
            vecs = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[order])
            chunks.append(self._write(arr[order], vecs))
            self._compact()

    def _write(self, keys: np.ndarray, vectors: np.ndarray | None, *, sources: list[_Chunk] | None = None) -> _Chunk:
        """Write a chunk: ``vectors`` given, or gathered block by block from ``sources`` (keys their merge)."""
        name = uuid.uuid4().hex
        with atomic_path(self._vecs_path(name)) as tmp:
            if vectors is not None:
                with open(tmp, "wb") as fh:
                    np.save(fh, vectors)
            else:
                assert sources is not None
                self._merge_into(tmp, keys, sources)
        with atomic_path(self._keys_path(name)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, keys.view(np.uint8).reshape(len(keys), KEY_BYTES))
        return _Chunk(name, keys, None)

    def _merge_into(self, path: Path, keys: np.ndarray, sources: list[_Chunk]) -> None:
        """Write the rows of ``keys`` (sorted), gathered from ``sources``, to ``path`` block by block with plain
        writes: memory stays one block, and no merged file is mapped (a mapped output would hold every written
        page in the process's resident memory until it is unmapped)."""
        dim = npy_shape(self._vecs_path(sources[0].name))[1]
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh,
                {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                    "fortran_order": False,
                    "shape": (len(keys), dim),
                },
            )
            for start in range(0, len(keys), _MERGE_BLOCK):
                block = keys[start : start + _MERGE_BLOCK]
                got = np.zeros(len(block), dtype=bool)
                out = np.empty((len(block), dim), dtype=np.float32)
                for chunk in sources:
                    todo = np.flatnonzero(~got)
                    if not len(todo):
                        break
                    hit, rows = self._find(chunk, block[todo])
                    if hit.any():
                        out[todo[hit]] = self._read_rows(chunk, rows)
                        got[todo[hit]] = True
                if not got.all():
                    raise _ChunkGone
                fh.write(out.tobytes())

    def _compact(self) -> None:
        """Merge ``FANOUT`` chunks of one level into one of the next while a level is full."""
        while True:
            chunks = self._load()
            levels: dict[int, list[_Chunk]] = {}
            for chunk in chunks:
                if len(chunk) < MERGE_MAX_ROWS:
                    levels.setdefault(_level(len(chunk)), []).append(chunk)
            full = next((group for _, group in sorted(levels.items()) if len(group) >= FANOUT), None)
            if full is None:
                return
            merged_keys = np.unique(np.concatenate([c.keys for c in full]))
            try:
                merged = self._write(merged_keys, None, sources=full)
            except _ChunkGone:  # another process compacted these first
                self._reload()
                continue
            for chunk in full:  # the merged chunk is in place: the sources go
                for path in (self._keys_path(chunk.name), self._vecs_path(chunk.name)):
                    path.unlink(missing_ok=True)
            self._chunks = [c for c in chunks if all(c is not f for f in full)] + [merged]
