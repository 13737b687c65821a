"""The service's named, versioned indexes under one folder, served from memory and swapped atomically.

``root/<name>/`` holds the :class:`IndexStore` versions of one index (each with its documents' texts) and
``index.json`` (model, kind). Builds run in a background thread; until a build publishes its version the
current one keeps answering, and a search holds a reference to the version it started with, so a swap never
disturbs it. A restarted registry loads every index it finds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from negminer._errors import ConfigError, IndexFileError, NegminerError
from negminer._io import atomic_open
from negminer._vocab import IndexChoice, IndexStatus, OperationStatus, OperationType
from negminer.index import CorpusIndex, Encoder, IndexConfig, IndexStore, build_index, ray_encode
from negminer.service.schemas import NAME_PATTERN, IndexInfo, Operation

__all__ = [
    "IndexBusy",
    "IndexExists",
    "IndexNotFound",
    "IndexNotReady",
    "IndexRegistry",
    "IndexState",
    "Snapshot",
    "pinned_models",
]

logger = logging.getLogger("negminer")

NAME_RE = re.compile(NAME_PATTERN)

_OPERATION_FILE = "operation.json"  # the model a build / refresh in progress reads, for pinned_models()


def pinned_models(root: str | Path) -> dict[str, list[str]]:
    """Model folders that indexes under ``root`` depend on -> the index names: the models of every version kept on
    disk (adding documents to a version encodes with its model) and of operations in progress. Read from disk, so
    a worker process can ask before it deletes a checkpoint; such models must not be deleted."""
    out: dict[str, list[str]] = {}
    root = Path(root)
    if not root.is_dir():
        return out
    for d in sorted(p for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name)):
        models = IndexStore(d).models()
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            models.add(json.loads((d / _OPERATION_FILE).read_text(encoding="utf-8"))["model"])
        for m in models:
            out.setdefault(str(Path(m).resolve()) if Path(m).exists() else m, []).append(d.name)
    return out


class IndexNotFound(NegminerError, KeyError):
    """No index of that name (``name``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no index named {name!r}", param="name")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class IndexExists(NegminerError):
    """An index of that name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"index {name!r} already exists", param="name")
        self.name = name


class IndexBusy(NegminerError):
    """The index is building its next version; one operation at a time."""

    def __init__(self, name: str, operation: str) -> None:
        super().__init__(f"index {name!r} is busy ({operation})", param="name")
        self.name, self.operation = name, operation


class IndexNotReady(NegminerError):
    """The index has no version to serve yet (still building) or its build failed."""

    def __init__(self, name: str, status: str, error: str | None = None) -> None:
        super().__init__(f"index {name!r} is {status}" + (f": {error}" if error else ""), param="name")
        self.name, self.status = name, status


@dataclass
class IndexState:
    """What the registry knows of one index."""

    name: str
    model: str
    kind: str
    status: IndexStatus = IndexStatus.building
    current: CorpusIndex | None = None
    texts: Sequence[str] = field(default_factory=list)  # read from disk by row
    error: str | None = None
    build_seconds: float | None = None
    operation: Operation | None = None  # the build / refresh / documents update in progress or last done
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def info(self) -> IndexInfo:
        with self.lock:
            cur = self.current
            return IndexInfo(
                name=self.name,
                status=self.status,
                version=cur.version if cur else None,
                size=len(cur) if cur else 0,
                model=self.model,
                model_fingerprint=cur.fingerprint if cur else None,
                kind=IndexChoice(cur.index.kind if cur else self.kind),
                recall=(cur.index.recall or {}).get("recall") if cur else None,
                error=self.error,
                build_seconds=self.build_seconds,
                operation=self.operation.model_copy() if self.operation else None,
            )


@dataclass(frozen=True)
class Snapshot:
    """The current version of an index with its texts and model, taken together: what a search or mining run
    holds while a refresh swaps the next version in."""

    name: str
    index: CorpusIndex
    texts: Sequence[str]
    model: str

    @property
    def version(self) -> int | None:
        return self.index.version


class IndexRegistry:
    """Create, load, search and delete named indexes under ``root``.

    Args:
        root: folder of the indexes.
        encoder_factory: ``model -> Encoder`` (the service passes one that shares its cache and device).
        ray_address: encode the corpus of builds and refreshes on this Ray cluster (Ray Data, into the cache).
    """

    def __init__(
        self, root: str | Path, encoder_factory: Callable[[str], Encoder], *, ray_address: str | None = None
    ) -> None:
        self.root = Path(root)
        self.ray_address = ray_address
        self.root.mkdir(parents=True, exist_ok=True)
        self._encoder_factory = encoder_factory
        self._encoders: dict[str, Encoder] = {}
        self._states: dict[str, IndexState] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- loading ----------------------------------------------------------------------------------------------
    def load_all(self) -> None:
        """Load every index found under ``root`` (after a restart)."""
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name)):
            (d / _OPERATION_FILE).unlink(missing_ok=True)  # left by a process that died mid-operation
            meta_path = d / "index.json"
            if not meta_path.exists():
                continue
            state = IndexState(name=d.name, model="", kind=IndexChoice.auto)
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                state.model, state.kind = meta["model"], meta.get("kind", "auto")
                state.current = IndexStore(d).load(verify=False)  # checksums: `negminer index info` / a reload
                if state.current.texts is None:
                    raise IndexFileError(f"{d}: the current version holds no texts")
                state.texts = state.current.texts
                state.model = state.current.model  # the model that encoded this version
                state.status = IndexStatus.ready
            except (IndexFileError, OSError, ValueError, KeyError) as exc:  # reported, never fatal at start
                state.status, state.error = IndexStatus.failed, f"{type(exc).__name__}: {exc}"
            self._states[d.name] = state

    def encoder(self, model: str) -> Encoder:
        with self._lock:
            if model not in self._encoders:
                self._encoders[model] = self._encoder_factory(model)
            return self._encoders[model]

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        model: str,
        doc_ids: Sequence[str],
        texts: Sequence[str],
        *,
        kind: str = "auto",
        wait: bool = False,
    ) -> IndexState:
        """Start building index ``name`` in the background (``wait=True`` builds in this thread)."""
        if not NAME_RE.match(name):
            raise ConfigError(f"must match {NAME_RE.pattern}, got {name!r}", param="name")
        if len(doc_ids) != len(texts):
            raise ConfigError("ids and texts differ in length", param="documents")
        if len(set(doc_ids)) != len(doc_ids):
            raise ConfigError("duplicate ids", param="documents")
        with self._lock:
            if name in self._states:
                raise IndexExists(name)
            state = IndexState(name=name, model=model, kind=kind)
            self._states[name] = state
        self._rebuild(state, OperationType.build, model, doc_ids, texts, wait=wait)
        return state

    def add_documents(self, name: str, doc_ids: list[str], texts: list[str], *, wait: bool = False) -> IndexState:
        """Add or replace documents (by id) and publish the next version; only new texts are encoded."""
        if len(set(doc_ids)) != len(doc_ids):
            raise ConfigError("duplicate ids", param="documents")
        snap = self.snapshot(name)
        state, ids, all_texts = self.get(name), list(snap.index.doc_ids), list(snap.texts)  # documents: a copy
        pos = {d: i for i, d in enumerate(ids)}
        for d, t in zip(doc_ids, texts):
            if d in pos:
                all_texts[pos[d]] = t
            else:
                pos[d] = len(ids)
                ids.append(d)
                all_texts.append(t)
        self._rebuild(state, OperationType.documents, snap.model, ids, all_texts, wait=wait)
        return state

    def refresh(self, name: str, model: str, *, wait: bool = False) -> IndexState:
        """Re-encode the corpus with ``model`` (a newer checkpoint) into the next version, then swap it in."""
        snap, state = self.snapshot(name), self.get(name)  # texts stream from the current version's files
        self._rebuild(state, OperationType.refresh, model, snap.index.doc_ids, snap.texts, wait=wait)
        return state

    def _rebuild(
        self,
        state: IndexState,
        op: OperationType,
        model: str,
        doc_ids: Sequence[str],
        texts: Sequence[str],
        *,
        wait: bool,
    ) -> None:
        with state.lock:
            if state.operation and state.operation.status == OperationStatus.running:
                raise IndexBusy(state.name, state.operation.type)
            operation = Operation(type=op, model=model, started_at=int(time.time()), documents=len(doc_ids))
            state.operation = operation
        d = self.root / state.name
        d.mkdir(parents=True, exist_ok=True)

        def run() -> None:
            t0 = time.perf_counter()
            pin = d / _OPERATION_FILE
            try:
                with atomic_open(pin) as fh:
                    json.dump({"type": str(op), "model": model}, fh)

                began: dict[str, float] = {}

                def progress(stage: str, done: int, total: int) -> None:
                    elapsed = time.perf_counter() - began.setdefault(stage, time.perf_counter())
                    with state.lock:
                        operation.stage = stage
                        if stage == "encoding":
                            operation.encoded, operation.to_encode = done, total
                        operation.eta_seconds = round(elapsed * (total - done) / done, 1) if done else None

                if self.ray_address:
                    progress("encoding", 0, len(texts))
                    ray_encode(self.encoder(model), texts, address=self.ray_address)
                index = build_index(
                    self.encoder(model),
                    doc_ids,
                    texts,
                    config=IndexConfig(index=state.kind),
                    keep_texts=True,
                    progress=progress,
                )
                if not (d / "index.json").exists():
                    with atomic_open(d / "index.json") as fh:
                        json.dump({"name": state.name, "model": model, "kind": state.kind}, fh)
                progress("saving", 0, 1)
                store = IndexStore(d)
                version = store.publish(index)
                del index  # served from the saved files: texts read by row, vectors memory-mapped
                loaded = store.load(version, verify=False)
                with state.lock:  # the swap: readers holding the old version keep it
                    state.current, state.texts, state.model = loaded, loaded.texts or [], model
                    state.status, state.error = IndexStatus.ready, None
                    operation.status, operation.version = OperationStatus.succeeded, version
                    operation.stage, operation.eta_seconds = None, None
            except Exception as exc:  # noqa: BLE001 - a failed build is reported in the index status
                logger.exception("%s of index %s failed", op, state.name)
                with state.lock:
                    if state.current is None:
                        state.status = IndexStatus.failed
                    state.error = f"{type(exc).__name__}: {exc}"
                    operation.status, operation.error = OperationStatus.failed, state.error
            pin.unlink(missing_ok=True)
            seconds = round(time.perf_counter() - t0, 3)
            with state.lock:
                state.build_seconds = operation.seconds = seconds

        if wait:
            run()
        else:
            th = threading.Thread(target=run, name=f"{op}-{state.name}", daemon=True)
            self._threads.append(th)
            th.start()

    def get(self, name: str) -> IndexState:
        try:
            return self._states[name]
        except KeyError:
            raise IndexNotFound(name) from None

    def names(self) -> list[str]:
        return sorted(self._states)

    def delete(self, name: str) -> None:
        with self._lock:
            self.get(name)
            del self._states[name]
        shutil.rmtree(self.root / name, ignore_errors=True)

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for background builds (tests, shutdown)."""
        for th in list(self._threads):
            th.join(timeout)

    # -- queries -----------------------------------------------------------------------------------------------
    def snapshot(self, name: str) -> Snapshot:
        """The current version of ``name`` with its texts and model, taken together under the index's lock."""
        state = self.get(name)
        with state.lock:
            current, texts, model = state.current, state.texts, state.model
        if current is None:
            raise IndexNotReady(name, state.status, state.error)
        return Snapshot(name, current, texts, model)

    def search(
        self,
        name: str,
        queries: list[str] | None,
        top_k: int,
        vectors: np.ndarray | None = None,
    ) -> tuple[int | None, list[list[tuple[str, float, str]]]]:
        """(version that answered, per query [(id, score, text)]) from the current version of ``name``.

        Give query texts (encoded with the index's model) or query vectors."""
        snap = self.snapshot(name)
        current = snap.index
        if vectors is None:
            vecs = self.encoder(snap.model).encode(list(queries or []), kind="query", desc="queries")
        else:
            if vectors.ndim != 2 or vectors.shape[1] != current.index.dim:
                raise ConfigError(
                    f"expected rows of {current.index.dim} floats, got shape {tuple(vectors.shape)}", param="vectors"
                )
            vecs = vectors.astype(np.float32)
        scores, rows = current.search(vecs, top_k)
        out = []
        for sc, rw in zip(scores, rows):
            out.append(
                [(current.doc_ids[r], float(s), snap.texts[r]) for s, r in zip(sc, rw) if r >= 0 and np.isfinite(s)]
            )
        return current.version, out
