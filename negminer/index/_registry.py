"""Named, versioned indexes under one folder, served from memory and swapped atomically.

``root/<name>/`` holds the :class:`IndexStore` versions of one index (each with its documents' texts) and
``index.json`` (model, kind). Builds run in a background thread; until a build publishes its version the
current one keeps answering, and a search holds a reference to the version it started with, so a swap never
disturbs it. A restarted registry loads every index it finds.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from negminer._errors import ConfigError, IndexFileError, NegminerError
from negminer._io import atomic_open
from negminer.index._encoder import Encoder
from negminer.index._store import CorpusIndex, IndexStore, build_index

__all__ = ["IndexRegistry", "IndexNotFound", "IndexState"]

logger = logging.getLogger("negminer")

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class IndexNotFound(NegminerError, KeyError):
    """No index of that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "index not found"


@dataclass
class IndexState:
    """What the registry knows of one index."""

    name: str
    model: str
    kind: str
    status: str = "building"  # building | ready | failed
    current: CorpusIndex | None = None
    texts: list[str] = field(default_factory=list)
    error: str | None = None
    build_seconds: float | None = None
    operation: dict[str, Any] | None = None  # the build / refresh / documents update in progress or last done
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def info(self) -> dict[str, Any]:
        cur = self.current
        return {
            "name": self.name,
            "status": self.status,
            "version": cur.version if cur else None,
            "size": len(cur) if cur else 0,
            "model": self.model,
            "model_fingerprint": cur.fingerprint if cur else None,
            "kind": self.kind,
            "error": self.error,
            "build_seconds": self.build_seconds,
            "operation": self.operation,
        }


class IndexRegistry:
    """Create, load, search and delete named indexes under ``root``.

    Args:
        root: folder of the indexes.
        encoder_factory: ``model -> Encoder`` (the service passes one that shares its cache and device).
    """

    def __init__(self, root: str | Path, encoder_factory: Callable[[str], Encoder]) -> None:
        self.root = Path(root)
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
            meta_path = d / "index.json"
            if not meta_path.exists():
                continue
            state = IndexState(name=d.name, model="", kind="flat")
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                state.model, state.kind = meta["model"], meta.get("kind", "flat")
                state.current = IndexStore(d).load()
                if state.current.texts is None:
                    raise IndexFileError(f"{d}: the current version holds no texts")
                state.texts = state.current.texts
                state.model = state.current.model  # the model that encoded this version
                state.status = "ready"
            except (IndexFileError, OSError, ValueError, KeyError) as exc:  # reported, never fatal at start
                state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
            self._states[d.name] = state

    def encoder(self, model: str) -> Encoder:
        with self._lock:
            if model not in self._encoders:
                self._encoders[model] = self._encoder_factory(model)
            return self._encoders[model]

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def create(self, name: str, model: str, doc_ids: list[str], texts: list[str], *, kind: str = "flat",
               wait: bool = False) -> IndexState:
        """Start building index ``name`` in the background (``wait=True`` builds in this thread)."""
        if not NAME_RE.match(name):
            raise ConfigError(f"name: must match {NAME_RE.pattern}, got {name!r}")
        if len(doc_ids) != len(texts):
            raise ConfigError("documents: ids and texts differ in length")
        if len(set(doc_ids)) != len(doc_ids):
            raise ConfigError("documents: duplicate ids")
        with self._lock:
            if name in self._states:
                raise ConfigError(f"name: index {name!r} already exists")
            state = IndexState(name=name, model=model, kind=kind)
            self._states[name] = state
        self._rebuild(state, "build", model, list(doc_ids), list(texts), wait=wait)
        return state

    def add_documents(self, name: str, doc_ids: list[str], texts: list[str], *, wait: bool = False) -> IndexState:
        """Add or replace documents (by id) and publish the next version; only new texts are encoded."""
        state = self.get(name)
        if len(set(doc_ids)) != len(doc_ids):
            raise ConfigError("documents: duplicate ids")
        with state.lock:
            if state.current is None:
                raise IndexFileError(f"index {name!r} is {state.status}")
            ids, all_texts = list(state.current.doc_ids), list(state.texts)
        pos = {d: i for i, d in enumerate(ids)}
        for d, t in zip(doc_ids, texts):
            if d in pos:
                all_texts[pos[d]] = t
            else:
                pos[d] = len(ids)
                ids.append(d)
                all_texts.append(t)
        self._rebuild(state, "documents", state.model, ids, all_texts, wait=wait)
        return state

    def refresh(self, name: str, model: str, *, wait: bool = False) -> IndexState:
        """Re-encode the corpus with ``model`` (a newer checkpoint) into the next version, then swap it in."""
        state = self.get(name)
        with state.lock:
            if state.current is None:
                raise IndexFileError(f"index {name!r} is {state.status}")
            ids, texts = list(state.current.doc_ids), list(state.texts)
        self._rebuild(state, "refresh", model, ids, texts, wait=wait)
        return state

    def _rebuild(self, state: IndexState, op: str, model: str, doc_ids: list[str], texts: list[str], *,
                 wait: bool) -> None:
        with state.lock:
            if state.operation and state.operation["status"] == "running":
                raise ConfigError(f"name: index {state.name!r} is busy ({state.operation['type']})")
            state.operation = {"type": op, "model": model, "status": "running", "started_at": int(time.time()),
                               "documents": len(doc_ids), "to_encode": None, "encoded": 0, "seconds": None,
                               "error": None}
        d = self.root / state.name
        d.mkdir(parents=True, exist_ok=True)

        def run() -> None:
            t0 = time.perf_counter()
            try:
                def progress(done: int, total: int) -> None:
                    with state.lock:
                        if state.operation:
                            state.operation["encoded"] = done
                            state.operation["to_encode"] = total

                index = build_index(self.encoder(model), doc_ids, texts, kind=state.kind, keep_texts=True,
                                    progress=progress)
                if not (d / "index.json").exists():
                    with atomic_open(d / "index.json") as fh:
                        json.dump({"name": state.name, "model": model, "kind": state.kind}, fh)
                IndexStore(d).publish(index)
                with state.lock:  # the swap: readers holding the old version keep it
                    state.current, state.texts, state.model = index, list(texts), model
                    state.status, state.error = "ready", None
                    state.operation = {**(state.operation or {}), "status": "succeeded", "version": index.version}
            except Exception as exc:  # noqa: BLE001 - a failed build is reported in the index status
                logger.exception("%s of index %s failed", op, state.name)
                with state.lock:
                    if state.current is None:
                        state.status = "failed"
                    state.error = f"{type(exc).__name__}: {exc}"
                    state.operation = {**(state.operation or {}), "status": "failed", "error": state.error}
            seconds = round(time.perf_counter() - t0, 3)
            with state.lock:
                state.build_seconds = seconds
                if state.operation:
                    state.operation["seconds"] = seconds

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
            raise IndexNotFound(f"no index named {name!r}") from None

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
    def snapshot(self, name: str) -> tuple[IndexState, CorpusIndex, list[str], str]:
        """(state, current version, its texts, its model), taken together under the index's lock."""
        state = self.get(name)
        with state.lock:
            current, texts, model = state.current, state.texts, state.model
        if current is None:
            raise IndexFileError(f"index {name!r} is {state.status}" + (f": {state.error}" if state.error else ""))
        return state, current, texts, model

    def search(self, name: str, queries: list[str] | None, top_k: int, vectors: np.ndarray | None = None,
               ) -> tuple[int | None, list[list[dict[str, Any]]]]:
        """(version that answered, per query [{id, score, text}]) from the current version of ``name``.

        Give query texts (encoded with the index's model) or query vectors."""
        _, current, texts, model = self.snapshot(name)
        if vectors is None:
            vecs = self.encoder(model).encode(list(queries or []), kind="query", desc="queries")
        else:
            if vectors.ndim != 2 or vectors.shape[1] != current.index.dim:
                raise ConfigError(f"vectors: expected rows of {current.index.dim} floats, got shape "
                                  f"{tuple(vectors.shape)}")
            vecs = vectors.astype(np.float32)
        scores, rows = current.search(vecs, top_k)
        out = []
        for sc, rw in zip(scores, rows):
            out.append([{"id": current.doc_ids[r], "score": float(s), "text": texts[r]}
                        for s, r in zip(sc, rw) if r >= 0 and np.isfinite(s)])
        return current.version, out

    def mine(self, name: str, queries: list[str], positive_ids: list[list[str]], positive_texts: list[list[str]],
             options: dict[str, Any]) -> tuple[int | None, Any]:
        """Mine negatives for ``queries`` from the current version's corpus with the index's model.

        Positives are document ids of the index or extra texts (added to the candidates as positives)."""
        from negminer._data import RetrievalData
        from negminer.mining import mine

        _, current, texts, model = self.snapshot(name)
        ids, corpus = list(current.doc_ids), list(texts)
        row = {d: i for i, d in enumerate(ids)}
        positives = []
        for qi, (pids, ptexts) in enumerate(zip(positive_ids, positive_texts)):
            rows = []
            for d in pids:
                if d not in row:
                    raise ConfigError(f"queries[{qi}].positive_ids: unknown document id {d!r}")
                rows.append(row[d])
            for t in ptexts:
                ids.append(f"positive:{qi}:{len(rows)}")
                corpus.append(t)
                rows.append(len(ids) - 1)
            if not rows:
                raise ConfigError(f"queries[{qi}]: needs positive_ids or positives")
            positives.append(rows)
        data = RetrievalData(ids, corpus, [f"q{i}" for i in range(len(queries))], list(queries), positives,
                             source=f"index:{name}")
        result = mine(data, self.encoder(model), show_progress=False, **options)
        return current.version, result
