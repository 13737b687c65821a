"""Serving the service's named, versioned indexes: create, load, search, delete, leases.

``root/<name>/`` holds the :class:`IndexStore` versions of one index (each with its documents' texts) and its
records (:mod:`negminer.service.records`); operations that build its versions run fenced in background threads
(:mod:`negminer.service.operations`). Until an operation publishes its version the current one keeps answering, and
a search holds a reference to the version it started with (:class:`Snapshot`), so a swap never disturbs it.
``delete`` cancels the running operation and moves the folder, atomically, to ``root/.trash/`` (a tombstone that
start-up empties), so neither the old operation nor a restart can bring a deleted index back or write into a new
index of the same name. An index may hold a lease (``expires_after``): each call naming it renews it, and
:meth:`IndexRegistry.sweep_expired` deletes those whose user is gone.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from negminer._errors import ConfigError, IndexFileError
from negminer._vocab import IndexChoice, IndexStatus, OperationType
from negminer.client.schemas import NAME_PATTERN, OperationError
from negminer.index import CorpusIndex, Encoder, IndexStore
from negminer.service.batching import EncodeBatcher
from negminer.service.exceptions import (
    IndexDeleting,
    IndexExists,
    IndexNotFound,
    IndexNotReady,
    LeaseExpired,
)
from negminer.service.operations import IndexState, start_operation
from negminer.service.records import (
    META_FILE,
    TRASH,
    IndexMeta,
    load_operation,
    read_meta,
    remove_leftovers,
    to_trash,
    write_meta,
)

__all__ = ["IndexRegistry", "IndexState", "Snapshot"]

logger = logging.getLogger("negminer")

NAME_RE = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Snapshot:
    """The current version of an index with its texts and model, taken together: what a search or mining run
    holds while a refresh swaps the next version in."""

    name: str
    corpus: CorpusIndex  # the version's vectors and ids (its search structure is corpus.vector_index)
    texts: Sequence[str]
    model: str

    @property
    def version(self) -> int | None:
        return self.corpus.version


class IndexRegistry:
    """Create, load, search and delete named indexes under ``root``.

    Args:
        root: folder of the indexes.
        encoder_factory: ``model -> Encoder`` (the service passes one that shares its cache and device).
        ray_address: encode the corpus of builds and refreshes on this Ray cluster (Ray Data, into the cache).
        batch_texts: texts of concurrent requests encoded together (:class:`EncodeBatcher`); 0: each alone.
    """

    def __init__(
        self,
        root: str | Path,
        encoder_factory: Callable[[str], Encoder],
        *,
        ray_address: str | None = None,
        batch_texts: int = 256,
    ) -> None:
        self.batch_texts = batch_texts
        self.root = Path(root)
        self.ray_address = ray_address
        self.root.mkdir(parents=True, exist_ok=True)
        self._encoder_factory = encoder_factory
        self._encoders: dict[str, Encoder] = {}
        self._batchers: dict[str, EncodeBatcher] = {}
        self._states: dict[str, IndexState] = {}
        self._deleting: set[str] = set()  # names whose folder is being moved to the trash
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- records on disk ----------------------------------------------------------------------------------------
    def _folder(self, state: IndexState) -> Path:
        return self.root / state.name

    def _write_meta(self, state: IndexState) -> None:
        meta = IndexMeta(
            name=state.name,
            model=state.model,
            kind=state.kind,
            uid=state.uid,
            labels=state.labels,
            expires_after=state.expires_after,
        )
        write_meta(self._folder(state), meta)

    # -- loading ----------------------------------------------------------------------------------------------
    def load_all(self) -> None:
        """Load every index found under ``root`` (after a restart): empty the tombstones, remove temporary files
        of writes that never finished, and mark operations that were running when the process died as
        ``failed: interrupted``."""
        shutil.rmtree(self.root / TRASH, ignore_errors=True)
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name)):
            remove_leftovers(d)
            if not (d / META_FILE).exists():  # created by a request that was never answered: nothing was accepted
                to_trash(self.root, d)
                continue
            state = IndexState(name=d.name, model="", kind=IndexChoice.auto)
            try:
                meta = read_meta(d)
            except (OSError, ValueError) as exc:
                state.status = IndexStatus.failed
                state.error = OperationError(code="index_file_error", message=f"{META_FILE}: {exc}")
                self._states[d.name] = state
                continue
            state.model, state.kind, state.uid = meta.model, meta.kind, meta.uid
            state.labels, state.expires_after = dict(meta.labels), meta.expires_after
            state.renew(time.time())  # a restart gives a whole lease: the user could not call meanwhile
            state.operation = load_operation(d, state.name, state.uid)
            try:
                if IndexStore(d).current_version() is not None:
                    state.current = IndexStore(d).load(verify=False)  # checksums: `negminer index info` / a reload
                    if state.current.texts is None:
                        raise IndexFileError(f"{d.name}: the current version holds no texts")
                    state.texts = state.current.texts
                    state.model = state.current.model  # the model that encoded this version
                    state.status = IndexStatus.ready
                else:
                    state.status = IndexStatus.failed
                    op = state.operation
                    state.error = (op.error if op and op.error else None) or OperationError(
                        code="interrupted", message="no version was published"
                    )
            except (IndexFileError, OSError, ValueError, KeyError) as exc:  # reported, never fatal at start
                state.status = IndexStatus.failed
                state.error = OperationError(code="index_file_error", message=f"{type(exc).__name__}: {exc}")
            self._states[d.name] = state

    def encoder(self, model: str) -> Encoder:
        with self._lock:
            if model not in self._encoders:
                self._encoders[model] = self._encoder_factory(model)
            return self._encoders[model]

    def encode(self, model: str, texts: list[str], **options: Any) -> np.ndarray:
        """Encode a request's texts with ``model``, batched with other requests' (:class:`EncodeBatcher`)."""
        encoder = self.encoder(model)
        if not self.batch_texts:
            return encoder.encode(texts, **options)
        with self._lock:
            batcher = self._batchers.get(model)
            if batcher is None or batcher.encoder is not encoder:
                batcher = self._batchers[model] = EncodeBatcher(encoder, max_texts=self.batch_texts)
        return batcher.encode(texts, **options)

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
        labels: Mapping[str, str] | None = None,
        expires_after: int | None = None,
    ) -> IndexState:
        """Start building index ``name`` in the background (``wait=True`` builds in this thread). The index and its
        build are on disk when this returns. ``labels``: the caller's tags; ``expires_after``: its lease in seconds
        (any call naming the index renews it; :meth:`sweep_expired` deletes it once it has run out)."""
        if not NAME_RE.match(name):
            raise ConfigError(f"must match {NAME_RE.pattern}, got {name!r}", param="name")
        if len(doc_ids) != len(texts):
            raise ConfigError("ids and texts differ in length", param="documents")
        if len(set(doc_ids)) != len(doc_ids):
            raise ConfigError("duplicate ids", param="documents")
        with self._lock:
            if name in self._states:
                raise IndexExists(name)
            if name in self._deleting:
                raise IndexDeleting(name)
            state = IndexState(
                name=name, model=model, kind=kind, labels=dict(labels or {}), expires_after=expires_after
            )
            state.renew(time.time())
            self._states[name] = state
        try:
            d = self._folder(state)
            if d.exists():  # a folder no live index owns (never accepted): not ours to keep
                to_trash(self.root, d)
            d.mkdir(parents=True)
            self._write_meta(state)
            self._rebuild(state, OperationType.build, model, doc_ids, texts, wait=wait)
        except BaseException:
            with self._lock:
                if self._states.get(name) is state:
                    del self._states[name]
            shutil.rmtree(self._folder(state), ignore_errors=True)  # not accepted: nothing of it stays
            raise
        return state

    def add_documents(self, name: str, doc_ids: list[str], texts: list[str], *, wait: bool = False) -> IndexState:
        """Add or replace documents (by id) and publish the next version; only new texts are encoded."""
        if len(set(doc_ids)) != len(doc_ids):
            raise ConfigError("duplicate ids", param="documents")
        snap = self.snapshot(name)
        state, ids, all_texts = self.get(name), list(snap.corpus.doc_ids), list(snap.texts)  # documents: a copy
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
        self._rebuild(state, OperationType.refresh, model, snap.corpus.doc_ids, snap.texts, wait=wait)
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
        th = start_operation(
            state,
            self._folder(state),
            op,
            model,
            doc_ids,
            texts,
            encoder=self.encoder,
            ray_address=self.ray_address,
            wait=wait,
        )
        if th is not None:
            self._threads.append(th)

    def get(self, name: str, *, renew: bool = True) -> IndexState:
        """The state of ``name``; a call naming an index renews its lease (``renew``). One whose lease ran out is
        deleted now (:class:`LeaseExpired`, 410), though the sweep had not come to it yet."""
        try:
            state = self._states[name]
        except KeyError:
            raise IndexNotFound(name) from None
        if renew:
            now = time.time()
            if state.expired(now):
                self._expire(name, state)
                raise LeaseExpired(name)
            state.renew(now)
        return state

    def names(self) -> list[str]:
        return sorted(self._states)

    def delete(self, name: str) -> None:
        """Delete ``name``: cancel its running operation, and move its folder to the trash before answering (the
        name is refused as :class:`IndexDeleting` meanwhile), so nothing of this incarnation comes back."""
        with self._lock:
            state = self.get(name, renew=False)
            del self._states[name]
            self._deleting.add(name)
        try:
            state.deleted.set()
            with state.publish_lock:  # waits for a publish in progress; none can start after
                folder = self._folder(state)
                if folder.exists():
                    to_trash(self.root, folder)
        finally:
            with self._lock:
                self._deleting.discard(name)

    def sweep_expired(self) -> list[str]:
        """Delete the indexes whose lease ran out (no call named them for ``expires_after`` seconds: their user
        is gone). Returns their names."""
        now = time.time()
        gone = [n for n, st in list(self._states.items()) if st.expired(now)]
        for name in gone:
            self._expire(name, self._states.get(name))
        return gone

    def _expire(self, name: str, state: IndexState | None) -> None:
        with contextlib.suppress(IndexNotFound):
            if state is not None and self._states.get(name) is state:
                self.delete(name)
                logger.info("deleted index %s: its lease of %s s ran out", name, state.expires_after)

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
        current = snap.corpus
        if vectors is None:
            vecs = self.encode(snap.model, list(queries or []), kind="query", desc="queries")
        else:
            if vectors.ndim != 2 or vectors.shape[1] != current.dim:
                raise ConfigError(
                    f"expected rows of {current.dim} floats, got shape {tuple(vectors.shape)}", param="vectors"
                )
            vecs = vectors.astype(np.float32)
        scores, rows = current.search(vecs, top_k)
        out = []
        for sc, rw in zip(scores, rows):
            out.append(
                [(current.doc_ids[r], float(s), snap.texts[r]) for s, r in zip(sc, rw) if r >= 0 and np.isfinite(s)]
            )
        return current.version, out
