"""On-disk embedding cache.

Vectors are stored per *namespace* (one model weights fingerprint + prompt + max sequence length + precision) as
append-only chunks: ``<namespace>/<chunk>.keys.npy`` (16-byte BLAKE2b hashes of the texts) beside
``<chunk>.vecs.npy`` (float32 rows). A chunk becomes visible only when its keys file is renamed into place, so a
crash mid-write leaves no half chunk behind. Re-encoding a corpus with an unchanged model reads every vector back;
a changed document is a new text hash and is the only one encoded again; a fine-tuned checkpoint has other
weights, hence another namespace, and never sees the base model's vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from negminer._io import atomic_path, write_json

__all__ = ["EmbeddingCache", "text_key"]

KEY_BYTES = 16


def text_key(text: str) -> bytes:
    """16-byte BLAKE2b digest of a text: the cache key of one row."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_BYTES).digest()


class EmbeddingCache:
    """Vectors of texts for one namespace, read from and appended to ``root/<namespace>``."""

    def __init__(self, root: str | os.PathLike[str], namespace: dict[str, object]) -> None:
        self.namespace = namespace
        digest = hashlib.sha256(json.dumps(namespace, sort_keys=True).encode()).hexdigest()[:32]
        self.dir = Path(root) / digest
        self._index: dict[bytes, tuple[int, int]] | None = None
        self._chunks: list[np.ndarray] = []

    def _load(self) -> dict[bytes, tuple[int, int]]:
        if self._index is not None:
            return self._index
        index: dict[bytes, tuple[int, int]] = {}
        self._chunks = []
        if self.dir.is_dir():
            for keys_file in sorted(self.dir.glob("*.keys.npy")):
                vec_file = keys_file.with_name(keys_file.name.replace(".keys.npy", ".vecs.npy"))
                try:
                    keys = np.load(keys_file)
                    vecs = np.load(vec_file, mmap_mode="r")
                except (OSError, ValueError):
                    continue  # an unreadable chunk is a cache miss, never an error
                if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or vecs.shape[0] != keys.shape[0]:
                    continue
                c = len(self._chunks)
                self._chunks.append(vecs)
                for row, k in enumerate(keys):
                    index[k.tobytes()] = (c, row)
        self._index = index
        return index

    def __len__(self) -> int:
        return len(self._load())

    def contains(self, keys: Sequence[bytes]) -> np.ndarray:
        """Which of ``keys`` the cache holds (reads no vectors)."""
        index = self._load()
        return np.fromiter((k in index for k in keys), dtype=bool, count=len(keys))

    def lookup(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (found mask, vectors of the found keys in order) for ``keys``."""
        index = self._load()
        hits = [index.get(k) for k in keys]
        found = np.array([h is not None for h in hits], dtype=bool)
        if not found.any():
            return found, None
        rows = [h for h in hits if h is not None]
        dim = self._chunks[rows[0][0]].shape[1]
        out = np.empty((len(rows), dim), dtype=np.float32)
        # Gather chunk by chunk so memory-mapped reads stay sequential-ish.
        by_chunk: dict[int, list[tuple[int, int]]] = {}
        for i, (c, r) in enumerate(rows):
            by_chunk.setdefault(c, []).append((i, r))
        for c, pairs in by_chunk.items():
            dst = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
            src = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
            order = np.argsort(src)
            out[dst[order]] = self._chunks[c][src[order]]
        return found, out

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Append a chunk of (key, vector) rows, atomically."""
        if len(keys) == 0:
            return
        if len(keys) != len(vectors):
            raise ValueError("keys and vectors differ in length")
        index = self._load()
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "namespace.json"
        if not meta.exists():
            write_json(meta, self.namespace)
        name = uuid.uuid4().hex
        keys_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        vec_path = self.dir / f"{name}.vecs.npy"
        with atomic_path(vec_path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))
        with atomic_path(self.dir / f"{name}.keys.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, keys_arr)
        c = len(self._chunks)
        self._chunks.append(np.load(vec_path, mmap_mode="r"))
        for row, k in enumerate(keys):
            index[k] = (c, row)
