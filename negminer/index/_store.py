"""A corpus index on disk: vectors + doc ids + model fingerprint + version, with checksums; and versioned stores.

Layout of one saved index (a folder)::

    meta.json      format, version, backend, kind, dim, size, model, model fingerprint, sha256 of every file
    vectors.faiss  (or vectors.npy for the NumPy backend)
    ids.json       document ids, row order
    texts.json     the documents' texts, row order (when the index keeps them)

A save writes into a temporary folder beside the target and renames it into place, so a reader never sees a
half-written index. :class:`IndexStore` keeps numbered versions (``v000001``...) and a ``CURRENT`` pointer that
is replaced atomically: building the next version never touches the files, or the loaded objects, of the current.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from negminer._errors import ConfigError, IndexFileError
from negminer._io import atomic_dir, atomic_open, sha256_file, write_json
from negminer.index._encoder import Encoder
from negminer.index._vector_index import Device, VectorIndex

__all__ = ["CorpusIndex", "IndexStore", "build_index"]

FORMAT = "negminer-index/1"


@dataclass
class CorpusIndex:
    """A :class:`VectorIndex` over a corpus, with the document ids of its rows and the model that made it."""

    index: VectorIndex
    doc_ids: list[str]
    fingerprint: str
    model: str
    version: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    texts: list[str] | None = None  # the documents' texts, saved with the version when given

    def __post_init__(self) -> None:
        if len(self.doc_ids) != self.index.ntotal:
            raise ConfigError(f"{len(self.doc_ids)} doc ids for {self.index.ntotal} vectors")
        if self.texts is not None and len(self.texts) != len(self.doc_ids):
            raise ConfigError(f"{len(self.texts)} texts for {len(self.doc_ids)} doc ids")

    def __len__(self) -> int:
        return len(self.doc_ids)

    def search(self, query_vectors: np.ndarray, k: int, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, rows); see :meth:`VectorIndex.search`. Map rows to ids with ``doc_ids``."""
        return self.index.search(query_vectors, k, **kw)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to folder ``path`` atomically (temporary folder, then an atomic swap with an existing folder)."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            vec_name = "vectors.npy" if self.index.backend == "numpy" else "vectors.faiss"
            self.index.write(tmp / vec_name)
            with atomic_open(tmp / "ids.json") as fh:
                json.dump(self.doc_ids, fh)
            names = [vec_name, "ids.json"]
            if self.texts is not None:
                with atomic_open(tmp / "texts.json") as fh:
                    json.dump(self.texts, fh, ensure_ascii=False)
                names.append("texts.json")
            files = {name: sha256_file(tmp / name) for name in names}
            meta = {
                "format": FORMAT,
                "version": self.version,
                "created_at": int(time.time()),
                "model": self.model,
                "model_fingerprint": self.fingerprint,
                **{k: v for k, v in self.index.describe().items() if k != "device"},
                "options": {
                    "nlist": self.index.nlist,
                    "nprobe": self.index.nprobe,
                    "hnsw_m": self.index.hnsw_m,
                    "ef_search": self.index.ef_search,
                },
                "files": files,
                "extra": self.meta,
            }
            write_json(tmp / "meta.json", meta)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expect_fingerprint: str | None = None,
        device: Device = "auto",
        verify: bool = True,
    ) -> CorpusIndex:
        """Load a saved index; refuse a corrupted one (checksums) or one built by another model."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.exists():
            raise IndexFileError(f"{path}: not a negminer index (no meta.json)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IndexFileError(f"{meta_path}: corrupted ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else None
            raise IndexFileError(f"{meta_path}: unknown format {fmt!r}, expected {FORMAT!r}")
        if expect_fingerprint is not None and meta.get("model_fingerprint") != expect_fingerprint:
            raise IndexFileError(
                f"{path}: built with model {meta.get('model')!r} "
                f"(fingerprint {str(meta.get('model_fingerprint'))[:12]}), expected fingerprint "
                f"{expect_fingerprint[:12]}: re-encode the corpus with this model"
            )
        for name, digest in meta.get("files", {}).items():
            f = path / name
            if not f.exists():
                raise IndexFileError(f"{f}: missing")
            if verify and sha256_file(f) != digest:
                raise IndexFileError(f"{f}: checksum mismatch (file corrupted or modified)")
        vec_name = "vectors.npy" if meta["backend"] == "numpy" else "vectors.faiss"
        opts = meta.get("options", {})
        index = VectorIndex.read(
            path / vec_name,
            backend=meta["backend"],
            kind=meta["kind"],
            dim=int(meta["dim"]),
            device=device,
            **({k: v for k, v in opts.items() if v is not None} if meta["backend"] == "faiss" else {}),
        )
        try:
            doc_ids = json.loads((path / "ids.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise IndexFileError(f"{path / 'ids.json'}: unreadable ({exc})") from exc
        if len(doc_ids) != index.ntotal:
            raise IndexFileError(f"{path}: {len(doc_ids)} ids for {index.ntotal} vectors")
        texts = None
        if "texts.json" in meta.get("files", {}):
            texts = json.loads((path / "texts.json").read_text(encoding="utf-8"))
            if len(texts) != len(doc_ids):
                raise IndexFileError(f"{path}: {len(texts)} texts for {len(doc_ids)} ids")
        return cls(
            index, doc_ids, meta["model_fingerprint"], meta["model"], meta.get("version"), meta.get("extra", {}), texts
        )


def build_index(
    encoder: Encoder,
    doc_ids: list[str],
    texts: list[str],
    *,
    kind: str = "flat",
    backend: str = "auto",
    device: Device = "auto",
    prompt: str | None = None,
    prompt_name: str | None = None,
    keep_texts: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> CorpusIndex:
    """Encode ``texts`` (through the encoder's cache) and index them; ``keep_texts`` saves the texts too;
    ``progress(done, total)`` follows the encoding."""
    if len(doc_ids) != len(texts):
        raise ConfigError(f"{len(doc_ids)} doc ids for {len(texts)} texts")
    if len(set(doc_ids)) != len(doc_ids):
        raise ConfigError("doc ids must be unique")
    vectors = encoder.encode(
        texts, kind="document", prompt=prompt, prompt_name=prompt_name, desc="corpus", progress=progress
    )
    index = VectorIndex(vectors.shape[1], kind=kind, backend=backend, device=device, **options)  # type: ignore[arg-type]
    index.add(vectors)
    return CorpusIndex(
        index, list(doc_ids), encoder.fingerprint, encoder.name, texts=list(texts) if keep_texts else None
    )


_VERSION_RE = re.compile(r"^v(\d{6})$")


class IndexStore:
    """Numbered versions of one index under ``root`` and a ``CURRENT`` pointer swapped atomically.

    Readers call :meth:`load` (the current version, or a given one); a writer calls :meth:`publish`, which writes
    the next version completely and only then moves ``CURRENT``. Loaded indexes are plain in-memory objects, so
    publishing never disturbs a reader that already holds one.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def versions(self) -> list[int]:
        """Complete versions on disk, oldest first."""
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.iterdir():
            m = _VERSION_RE.match(p.name)
            if m and (p / "meta.json").exists():
                out.append(int(m.group(1)))
        return sorted(out)

    def current_version(self) -> int | None:
        """The version ``CURRENT`` points at, or None before the first publish."""
        pointer = self.root / "CURRENT"
        if not pointer.exists():
            return None
        text = pointer.read_text(encoding="utf-8").strip()
        m = _VERSION_RE.match(text)
        if not m:
            raise IndexFileError(f"{pointer}: corrupted pointer {text!r}")
        return int(m.group(1))

    def path(self, version: int) -> Path:
        return self.root / f"v{version:06d}"

    def models(self) -> set[str]:
        """The models that encoded the versions on disk (read from their ``meta.json`` only)."""
        out = set()
        for v in self.versions():
            try:
                model = json.loads((self.path(v) / "meta.json").read_text(encoding="utf-8")).get("model")
            except (OSError, ValueError):
                continue
            if isinstance(model, str):
                out.add(model)
        return out

    def publish(self, index: CorpusIndex, *, keep: int = 3) -> int:
        """Save ``index`` as the next version, point ``CURRENT`` at it, and prune to the newest ``keep``."""
        versions = self.versions()
        version = (versions[-1] if versions else 0) + 1
        index.version = version
        index.save(self.path(version))
        with atomic_open(self.root / "CURRENT") as fh:
            fh.write(f"v{version:06d}\n")
        if keep > 0:
            for old in self.versions()[:-keep]:
                shutil.rmtree(self.path(old), ignore_errors=True)
        return version

    def load(self, version: int | None = None, **kw: Any) -> CorpusIndex:
        """Load a version (default: the current one)."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise IndexFileError(f"{self.root}: no index published yet")
        path = self.path(version)
        if not path.exists():
            raise IndexFileError(f"{path}: version {version} not found (have {self.versions()})")
        loaded = CorpusIndex.load(path, **kw)
        loaded.version = version
        return loaded
