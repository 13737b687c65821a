"""A corpus index on disk: vectors + doc ids + model fingerprint + version, with checksums; and versioned stores.

Layout of one saved index (a folder)::

    meta.json      format, version, backend, kind, dim, size, model, model fingerprint, recall measured at build,
                   why this index structure, sha256 of every file
    vectors.faiss  the FAISS index (absent for the NumPy backend, which searches vectors.npy)
    vectors.npy    the unit vectors, row order (memory-mapped when loaded: re-scoring, mining, refresh)
    ids.json       document ids, row order
    texts.jsonl    the documents' texts, row order, with texts.offsets.npy (read by row when needed; when the
                   index keeps texts)

A save writes into a temporary folder beside the target and renames it into place, so a reader never sees a
half-written index. :class:`IndexStore` keeps numbered versions (``v000001``...) and a ``CURRENT`` pointer that
is replaced atomically: building the next version never touches the files, or the loaded objects, of the current.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from negminer._errors import ConfigError, IndexFileError
from negminer._io import atomic_dir, atomic_open, load_npy, sha256_file, write_json
from negminer._vocab import INDEX_NAME_PATTERN, OperationStatus
from negminer.index._encoder import Encoder
from negminer.index._plan import IndexConfig
from negminer.index._texts import DiskTexts, write_texts
from negminer.index._vector_index import Backend, Device, VectorIndex

__all__ = ["OPERATION_FILE", "CorpusIndex", "IndexStore", "build_index", "pinned_models"]

OPERATION_FILE = "operation.json"  # in a named index's folder (the service's registry): its running or last operation
_NAME_RE = re.compile(INDEX_NAME_PATTERN)

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
    texts: Sequence[str] | None = None  # the documents' texts, saved with the version when given (read lazily)
    vectors: np.ndarray | None = None  # unit vectors in row order (a memory map once saved or loaded)
    _workdir: Any = field(default=None, repr=False, compare=False)  # keeps a temporary vectors file alive

    def __post_init__(self) -> None:
        if len(self.doc_ids) != self.index.ntotal:
            raise ConfigError(f"{len(self.doc_ids)} doc ids for {self.index.ntotal} vectors")
        if self.texts is not None and len(self.texts) != len(self.doc_ids):
            raise ConfigError(f"{len(self.texts)} texts for {len(self.doc_ids)} doc ids")
        if self.vectors is None and self.index.backend == "numpy":
            self.vectors = self.index._vectors
        if self.vectors is not None and self.vectors.shape != (len(self.doc_ids), self.index.dim):
            raise ConfigError(f"vectors of shape {tuple(self.vectors.shape)} for {len(self.doc_ids)} doc ids")

    def __len__(self) -> int:
        return len(self.doc_ids)

    def close(self) -> None:
        """Remove the temporary vectors file a fresh :func:`build_index` wrote (a saved or loaded index has none)
        now, instead of whenever the garbage collector finds it: it is a whole copy of the corpus's vectors. The
        index is not used afterwards; save or publish it first."""
        work, self._workdir = self._workdir, None
        if work is not None:
            self.vectors = self.index._refine = None  # the memory maps of the file go with it
            if self.index.backend == "numpy":
                self.index._vectors = None
            work.cleanup()

    def __enter__(self) -> CorpusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def vector_index(self) -> VectorIndex:
        """The search structure over the vectors (FAISS or NumPy); the same object as ``index``, by a name that
        does not repeat "index"."""
        return self.index

    @property
    def dim(self) -> int:
        """Dimensions of the vectors."""
        return self.index.dim

    def row_of(self, doc_id: str) -> int | None:
        """The row of a document id (a lookup table built on first use), or None."""
        rows = self.__dict__.get("_rows")
        if rows is None:
            rows = self.__dict__["_rows"] = {d: i for i, d in enumerate(self.doc_ids)}
        return rows.get(doc_id)

    def search(self, query_vectors: np.ndarray, k: int, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, rows); see :meth:`VectorIndex.search`. Map rows to ids with ``doc_ids``."""
        return self.index.search(query_vectors, k, **kw)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to folder ``path`` atomically (temporary folder, then an atomic swap with an existing folder)."""
        path = Path(path)
        with atomic_dir(path) as tmp:
            names = ["ids.json"]
            if self.index.backend == "numpy":
                self.index.write(tmp / "vectors.npy")
            else:
                self.index.write(tmp / "vectors.faiss")
                names.append("vectors.faiss")
                _save_rows(self.vectors, tmp / "vectors.npy")
            if (tmp / "vectors.npy").exists():
                names.append("vectors.npy")
            with atomic_open(tmp / "ids.json") as fh:
                json.dump(list(self.doc_ids), fh)
            if self.texts is not None:
                write_texts(tmp / "texts.jsonl", self.texts)
                names += ["texts.jsonl", "texts.offsets.npy"]
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
                    "pq_m": self.index.pq_m,
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
        if meta["backend"] == "faiss" and meta["kind"] != "ivfpq":
            opts = {k: v for k, v in opts.items() if k != "pq_m"}
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
        index.recall, index.plan = meta.get("recall"), meta.get("plan")
        vectors = None
        if "vectors.npy" in meta.get("files", {}):
            try:
                vectors = load_npy(path / "vectors.npy", mmap=True)
            except (OSError, ValueError) as exc:
                raise IndexFileError(f"{path / 'vectors.npy'}: unreadable ({exc})") from exc
            if vectors.shape != (len(doc_ids), index.dim):
                raise IndexFileError(f"{path / 'vectors.npy'}: shape {vectors.shape}, expected {len(doc_ids)} rows")
            if index.kind == "ivfpq":
                index.attach_vectors(vectors)
        texts: Sequence[str] | None = None
        files = meta.get("files", {})
        if "texts.jsonl" in files:
            texts = DiskTexts(path / "texts.jsonl")
        if texts is not None and len(texts) != len(doc_ids):
            raise IndexFileError(f"{path}: {len(texts)} texts for {len(doc_ids)} ids")
        return cls(
            index,
            doc_ids,
            meta["model_fingerprint"],
            meta["model"],
            meta.get("version"),
            meta.get("extra", {}),
            texts,
            vectors,
        )


def _save_rows(vectors: np.ndarray | None, dest: Path) -> None:
    """Write row vectors to ``dest`` (.npy): a memory-mapped .npy is copied as a file, never read into memory."""
    if vectors is None:
        return
    source = getattr(vectors, "filename", None)
    if isinstance(vectors, np.memmap) and source and Path(source).suffix == ".npy" and vectors.flags.c_contiguous:
        shutil.copyfile(source, dest)
        return
    with open(dest, "wb") as fh:
        np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))


def build_index(
    encoder: Encoder,
    doc_ids: Sequence[str],
    texts: Sequence[str],
    *,
    config: IndexConfig | None = None,
    backend: Backend = "auto",
    device: Device = "auto",
    prompt: str | None = None,
    prompt_name: str | None = None,
    keep_texts: bool = False,
    work_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> CorpusIndex:
    """Encode ``texts`` (through the encoder's cache) and index them with the structure ``config`` plans for
    their number (tuned to its recall target); ``keep_texts`` saves the texts too; ``progress(stage, done, total)``
    follows the stages: ``encoding`` (texts) and ``indexing`` (vectors added). The vectors go block by block to a
    memory-mapped file in ``work_dir`` (default: a temporary folder that lives until the returned index's
    :meth:`CorpusIndex.close`, or until it is garbage-collected), so no full in-memory copy is made."""
    if len(doc_ids) != len(texts):
        raise ConfigError(f"{len(doc_ids)} doc ids for {len(texts)} texts")
    if len(set(doc_ids)) != len(doc_ids):
        raise ConfigError("doc ids must be unique")
    if work_dir is None:
        work = encoder.scratch_dir("negminer-vectors-")
        work_dir = work.name
    else:
        work = None
    try:
        vectors = encoder.encode_to(
            texts,
            Path(work_dir) / "vectors.npy",
            kind="document",
            prompt=prompt,
            prompt_name=prompt_name,
            desc="corpus",
            progress=None if progress is None else (lambda d, t: progress("encoding", d, t)),
        )
        index = VectorIndex.for_vectors(
            vectors,
            config,
            backend=backend,
            device=device,
            progress=None if progress is None else (lambda d, t: progress("indexing", d, t)),
        )
        return CorpusIndex(
            index,
            list(doc_ids),
            encoder.fingerprint,
            encoder.name,
            texts=texts if keep_texts else None,
            vectors=vectors,
            _workdir=work,
        )
    except BaseException:
        if work is not None:
            work.cleanup()
        raise


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


def pinned_models(root: str | Path) -> dict[str, list[str]]:
    """Model folders that indexes under ``root`` depend on -> the index names: the models of every version kept on
    disk (adding documents to a version encodes with its model) and of operations in progress. Read from disk, so
    a worker process can ask before it deletes a checkpoint; such models must not be deleted."""
    out: dict[str, list[str]] = {}
    root = Path(root)
    if not root.is_dir():
        return out
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _NAME_RE.match(p.name)):
        models = IndexStore(d).models()
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads((d / OPERATION_FILE).read_text(encoding="utf-8"))
            if record.get("status", OperationStatus.running) == OperationStatus.running:
                models.add(record["model"])
        for m in models:
            out.setdefault(str(Path(m).resolve()) if Path(m).exists() else m, []).append(d.name)
    return out
