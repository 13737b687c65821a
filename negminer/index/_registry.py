"""Named, versioned indexes under one folder, served from memory and swapped atomically.

``root/<name>/`` holds the :class:`IndexStore` versions of one index and its corpus (``corpus.jsonl``, written
to a temporary name and renamed). Builds run in a background thread; until a build publishes its version the
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
    build_started: float | None = None
    build_seconds: float | None = None
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
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            state = IndexState(name=d.name, model=meta["model"], kind=meta.get("kind", "flat"))
            try:
                state.current = IndexStore(d).load()
                state.texts = [json.loads(line)["text"] for line in (d / "corpus.jsonl").read_text(
                    encoding="utf-8").splitlines() if line.strip()]
                state.status = "ready"
            except (IndexFileError, OSError, ValueError) as exc:
                state.status, state.error = "failed", str(exc)
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
            state = IndexState(name=name, model=model, kind=kind, build_started=time.time())
            self._states[name] = state
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        with atomic_open(d / "corpus.jsonl") as fh:
            for i, t in zip(doc_ids, texts):
                fh.write(json.dumps({"_id": i, "text": t}, ensure_ascii=False) + "\n")

        def run() -> None:
            t0 = time.perf_counter()
            try:
                index = build_index(self.encoder(model), doc_ids, texts, kind=kind)
                IndexStore(d).publish(index)
                with atomic_open(d / "index.json") as fh:
                    json.dump({"name": name, "model": model, "kind": kind}, fh)
                with state.lock:
                    state.current, state.texts = index, list(texts)
                    state.status, state.error = "ready", None
            except Exception as exc:  # noqa: BLE001 - a failed build is reported in the index status
                logger.exception("building index %s failed", name)
                state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
            state.build_seconds = round(time.perf_counter() - t0, 3)

        if wait:
            run()
        else:
            th = threading.Thread(target=run, name=f"build-{name}", daemon=True)
            self._threads.append(th)
            th.start()
        return state

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
    def search(self, name: str, queries: list[str], top_k: int) -> tuple[int | None, list[list[dict[str, Any]]]]:
        """(version that answered, per query [{id, score, text}]) from the current version of ``name``."""
        state = self.get(name)
        with state.lock:
            current, texts = state.current, state.texts
        if current is None:
            raise IndexFileError(f"index {name!r} is {state.status}" + (f": {state.error}" if state.error else ""))
        vecs = self.encoder(state.model).encode(queries, kind="query", desc="queries")
        scores, rows = current.search(vecs, top_k)
        out = []
        for sc, rw in zip(scores, rows):
            out.append([{"id": current.doc_ids[r], "score": float(s), "text": texts[r]}
                        for s, r in zip(sc, rw) if r >= 0 and np.isfinite(s)])
        return current.version, out
