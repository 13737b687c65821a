"""The service's named, versioned indexes under one folder, served from memory and swapped atomically.

``root/<name>/`` holds the :class:`IndexStore` versions of one index (each with its documents' texts),
``index.json`` (model, kind, and the incarnation's ``uid``) and ``operation.json``, the record of the running or
last operation. Both are written (fsync, then rename) before the request that asked for them is answered, so
accepted work is never lost silently: an operation found ``running`` at start-up was interrupted (the process was
killed) and is marked ``failed`` with ``error.code = "interrupted"``; the previous version keeps serving.

Operations run in a background thread; until one publishes its version the current one keeps answering, and a
search holds a reference to the version it started with, so a swap never disturbs it. Writers are fenced: an
operation publishes only into the incarnation it started for and only while that incarnation is live (checked
under the incarnation's publish lock, which ``delete`` takes too). ``delete`` cancels the running operation and
moves the folder, atomically, to ``root/.trash/`` (a tombstone that start-up empties), so neither the old
operation nor a restart can bring a deleted index back or write into a new index of the same name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from negminer._errors import ConfigError, IndexFileError, NonFiniteError
from negminer._faults import fault_point
from negminer._io import fsync_dir, write_json
from negminer._vocab import IndexChoice, IndexStatus, OperationStatus, OperationType
from negminer.client.schemas import NAME_PATTERN, IndexInfo, Operation, OperationError
from negminer.index import CorpusIndex, Encoder, IndexConfig, IndexStore, build_index, ray_encode
from negminer.index._internal import OPERATION_FILE
from negminer.service.batching import EncodeBatcher
from negminer.service.exceptions import (
    IndexBusy,
    IndexDeleting,
    IndexExists,
    IndexNotFound,
    IndexNotReady,
    LeaseExpired,
)

__all__ = ["IndexRegistry", "IndexState", "Snapshot"]

logger = logging.getLogger("negminer")

NAME_RE = re.compile(NAME_PATTERN)

_OPERATION_FILE = OPERATION_FILE  # the running or last operation (its model is pinned while it runs)
_META_FILE = "index.json"
_TRASH = ".trash"  # deleted incarnations, until their files are gone (emptied at start-up)


class _Cancelled(Exception):
    """The incarnation an operation works for was deleted: stop and write nothing."""


@dataclass
class IndexState:
    """What the registry knows of one index."""

    name: str
    model: str
    kind: str
    status: IndexStatus = IndexStatus.building
    current: CorpusIndex | None = None
    texts: Sequence[str] = field(default_factory=list)  # read from disk by row
    error: OperationError | None = None
    build_seconds: float | None = None
    operation: Operation | None = None  # the build / refresh / documents update in progress or last done
    uid: str = field(default_factory=lambda: secrets.token_hex(8))  # this incarnation of the name
    labels: dict[str, str] = field(default_factory=dict)
    expires_after: int | None = None  # the lease: deleted when no call names the index for this long
    expires_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    publish_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # the writers' fence
    deleted: threading.Event = field(default_factory=threading.Event, repr=False)

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
                kind=IndexChoice(cur.vector_index.kind if cur else self.kind),
                recall=(cur.vector_index.recall or {}).get("recall") if cur else None,
                error=self.error.model_copy() if self.error else None,
                build_seconds=self.build_seconds,
                operation=self.operation.model_copy(deep=True) if self.operation else None,
                labels=dict(self.labels),
                expires_after=self.expires_after,
                expires_at=int(self.expires_at) if self.expires_at is not None else None,
            )

    def renew(self, now: float) -> None:
        """A call named this index: its lease runs from now."""
        if self.expires_after is not None:
            self.expires_at = now + self.expires_after

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now > self.expires_at


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

    @staticmethod
    def _write_record(path: Path, record: Mapping[str, Any]) -> None:
        """Write a small JSON record durably: fsync the file, rename it into place, fsync the folder."""
        write_json(path, record)
        fsync_dir(path.parent)

    def _write_meta(self, state: IndexState) -> None:
        meta = {
            "name": state.name,
            "model": state.model,
            "kind": state.kind,
            "uid": state.uid,
            "labels": state.labels,
            "expires_after": state.expires_after,
        }
        self._write_record(self._folder(state) / _META_FILE, meta)

    def _write_operation(self, state: IndexState, operation: Operation) -> None:
        record = operation.model_dump(mode="json")
        self._write_record(self._folder(state) / _OPERATION_FILE, {**record, "uid": state.uid})

    # -- loading ----------------------------------------------------------------------------------------------
    def load_all(self) -> None:
        """Load every index found under ``root`` (after a restart): empty the tombstones, remove temporary files
        of writes that never finished, and mark operations that were running when the process died as
        ``failed: interrupted``."""
        shutil.rmtree(self.root / _TRASH, ignore_errors=True)
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name)):
            for leftover in d.glob(".*"):  # .<name>.<hex>.tmp / .old of atomic writes cut short
                if leftover.name.endswith((".tmp", ".old")):
                    shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
            meta_path = d / _META_FILE
            if not meta_path.exists():  # created by a request that was never answered: nothing was accepted
                self._to_trash(d)
                continue
            state = IndexState(name=d.name, model="", kind=IndexChoice.auto)
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                state.model, state.kind = meta["model"], meta.get("kind", "auto")
                state.uid = meta["uid"]
                state.labels, state.expires_after = dict(meta.get("labels") or {}), meta.get("expires_after")
                state.renew(time.time())  # a restart gives a whole lease: the user could not call meanwhile
            except (OSError, ValueError, KeyError, TypeError) as exc:
                state.status = IndexStatus.failed
                state.error = OperationError(code="index_file_error", message=f"{_META_FILE}: {exc}")
                self._states[d.name] = state
                continue
            state.operation = self._load_operation(state)
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

    def _load_operation(self, state: IndexState) -> Operation | None:
        """The operation record of ``state``; one still ``running`` was interrupted and is marked so on disk."""
        path = self._folder(state) / _OPERATION_FILE
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            record.pop("uid", None)
            operation = Operation.model_validate(record)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("index %s: unreadable %s (%s)", state.name, _OPERATION_FILE, exc)
            return None
        if operation.status == OperationStatus.running:
            published = self._published_by(state, operation.id)
            operation.stage, operation.eta_seconds = None, None
            if published is not None:  # the version is served; only the record of it was cut short
                operation.status, operation.version = OperationStatus.succeeded, published
                logger.warning(
                    "index %s: the %s %s published version %d before the service stopped; recorded as succeeded",
                    state.name,
                    operation.type,
                    operation.id,
                    published,
                )
            else:
                operation.status = OperationStatus.failed
                operation.error = OperationError(
                    code="interrupted",
                    message=f"the service stopped while this {operation.type} ran (killed or restarted); "
                    "nothing of it was published: send it again",
                )
                logger.warning("index %s: the %s %s was interrupted", state.name, operation.type, operation.id)
            self._write_operation(state, operation)
        return operation

    def _published_by(self, state: IndexState, operation_id: str | None) -> int | None:
        """The version ``CURRENT`` points at if operation ``operation_id`` published it (each version's
        ``meta.json`` names the operation that wrote it), else None."""
        store = IndexStore(self._folder(state))
        try:
            version = store.current_version()
            if version is None or operation_id is None:
                return None
            meta = json.loads((store.path(version) / "meta.json").read_text(encoding="utf-8"))
        except (IndexFileError, OSError, ValueError):
            return None
        extra = meta.get("extra") if isinstance(meta, dict) else None
        return version if isinstance(extra, dict) and extra.get("operation") == operation_id else None

    def _to_trash(self, folder: Path) -> None:
        """Move ``folder`` out of the namespace atomically (the tombstone), then remove its files."""
        trash = self.root / _TRASH
        trash.mkdir(exist_ok=True)
        grave = trash / f"{folder.name}.{secrets.token_hex(6)}"
        os.replace(folder, grave)
        fsync_dir(self.root)
        shutil.rmtree(grave, ignore_errors=True)

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
                self._to_trash(d)
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
        with state.lock:
            if state.operation and state.operation.status == OperationStatus.running:
                raise IndexBusy(state.name, state.operation.type)
            operation = Operation(
                id=f"op-{secrets.token_hex(6)}",
                type=op,
                model=model,
                started_at=int(time.time()),
                documents=len(doc_ids),
                stage="encoding",
                to_encode=len(texts),  # an upper bound until the embedding cache says how many are new
            )
            previous, state.operation = state.operation, operation
        try:
            with state.publish_lock:
                if state.deleted.is_set():
                    raise IndexNotFound(state.name)
                self._write_operation(state, operation)  # durable before the request is answered
        except BaseException:
            with state.lock:
                state.operation = previous
            raise

        def run() -> None:
            t0 = time.perf_counter()
            fault_point("index.accepted", op)
            try:
                began: dict[str, float] = {}

                def progress(stage: str, done: int, total: int) -> None:
                    if state.deleted.is_set():
                        raise _Cancelled
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
                if index.vectors is not None and not _all_finite(index.vectors):
                    raise NonFiniteError(
                        f"the model {model} embeds to NaN or infinite values; nothing was published",
                        code="non_finite_embeddings",
                    )
                fault_point("index.encoded", op)
                index.meta["operation"] = operation.id  # how a restart tells that this operation published
                progress("saving", 0, 1)
                with state.publish_lock:  # the fence: only into this incarnation, only while it lives
                    if state.deleted.is_set():
                        raise _Cancelled
                    store = IndexStore(self._folder(state))
                    version = store.publish(index)
                    fault_point("index.published", op)
                    del index  # served from the saved files: texts read by row, vectors memory-mapped
                    loaded = store.load(version, verify=False)
                    with state.lock:  # the swap: readers holding the old version keep it
                        state.current, state.texts, state.model = loaded, loaded.texts or [], model
                        state.status, state.error = IndexStatus.ready, None
                        operation.status, operation.version = OperationStatus.succeeded, version
                        operation.stage, operation.eta_seconds = None, None
                        operation.seconds = state.build_seconds = round(time.perf_counter() - t0, 3)
                    self._write_operation(state, operation)
                    fault_point("index.recorded", op)
            except _Cancelled:
                logger.info("%s of index %s stopped: the index was deleted", op, state.name)
                with state.lock:
                    operation.status, operation.stage = OperationStatus.failed, None
                    operation.error = OperationError(code="deleted", message="the index was deleted")
            except Exception as exc:  # noqa: BLE001 - a failed build is reported in the index status
                logger.exception("%s of index %s failed", op, state.name)
                code = exc.code if isinstance(exc, NonFiniteError) else "build_failed"
                error = OperationError(code=code, message=f"{type(exc).__name__}: {exc}")
                with state.publish_lock:
                    with state.lock:
                        if state.current is None:
                            state.status, state.error = IndexStatus.failed, error
                        operation.status, operation.error, operation.stage = OperationStatus.failed, error, None
                        operation.seconds = state.build_seconds = round(time.perf_counter() - t0, 3)
                    if not state.deleted.is_set():
                        with contextlib.suppress(OSError):
                            self._write_operation(state, operation)

        if wait:
            run()
        else:
            th = threading.Thread(target=run, name=f"{op}-{state.name}", daemon=True)
            self._threads.append(th)
            th.start()

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
                    self._to_trash(folder)
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


def _all_finite(vectors: np.ndarray, block: int = 65536) -> bool:
    """Whether every value is finite, block by block (the vectors may be a memory map larger than memory)."""
    return all(bool(np.isfinite(vectors[i : i + block]).all()) for i in range(0, len(vectors), block))
