"""Index operations (build, documents update, refresh) and the fence that keeps writers in their incarnation.

An operation is accepted when its record is on disk (:func:`negminer.service.records.write_operation`), then runs
in a background thread: it encodes, checks the vectors are finite, publishes the next :class:`IndexStore` version
and swaps it in. Writers are fenced: an operation publishes only into the incarnation (:class:`IndexState`) it
started for and only while that incarnation is live, checked under the incarnation's ``publish_lock``, which
deleting it takes too; a search holds a reference to the version it started with, so a swap never disturbs it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from negminer._errors import NonFiniteError
from negminer._faults import fault_point
from negminer._vocab import IndexChoice, IndexStatus, OperationStatus, OperationType
from negminer.client.schemas import IndexInfo, Operation, OperationError
from negminer.index import CorpusIndex, Encoder, IndexConfig, IndexStore, build_index, ray_encode
from negminer.service.exceptions import IndexBusy, IndexNotFound
from negminer.service.records import write_operation

__all__ = ["IndexState", "start_operation"]

logger = logging.getLogger("negminer")


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


def start_operation(
    state: IndexState,
    folder: Path,
    op: OperationType,
    model: str,
    doc_ids: Sequence[str],
    texts: Sequence[str],
    *,
    encoder: Callable[[str], Encoder],
    ray_address: str | None = None,
    wait: bool = False,
) -> threading.Thread | None:
    """Accept operation ``op`` on ``state`` (index folder ``folder``): its record is on disk when this returns.
    It then runs in a new thread (returned), or in this one with ``wait``. One operation at a time
    (:class:`IndexBusy`)."""
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
            write_operation(folder, state.uid, operation)  # durable before the request is answered
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

            if ray_address:
                progress("encoding", 0, len(texts))
                ray_encode(encoder(model), texts, address=ray_address)
            index = build_index(
                encoder(model),
                doc_ids,
                texts,
                config=IndexConfig(index=state.kind),
                keep_texts=True,
                progress=progress,
            )
            with index:  # its scratch vectors go on every path, published or not
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
                    store = IndexStore(folder)
                    version = store.publish(index)
                    fault_point("index.published", op)
                    index.close()  # served from the saved files: texts read by row, vectors memory-mapped
                    loaded = store.load(version, verify=False)
                    with state.lock:  # the swap: readers holding the old version keep it
                        state.current, state.texts, state.model = loaded, loaded.texts or [], model
                        state.status, state.error = IndexStatus.ready, None
                        operation.status, operation.version = OperationStatus.succeeded, version
                        operation.stage, operation.eta_seconds = None, None
                        operation.seconds = state.build_seconds = round(time.perf_counter() - t0, 3)
                    write_operation(folder, state.uid, operation)
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
                        write_operation(folder, state.uid, operation)

    if wait:
        run()
        return None
    th = threading.Thread(target=run, name=f"{op}-{state.name}", daemon=True)
    th.start()
    return th


def _all_finite(vectors: np.ndarray, block: int = 65536) -> bool:
    """Whether every value is finite, block by block (the vectors may be a memory map larger than memory)."""
    return all(bool(np.isfinite(vectors[i : i + block]).all()) for i in range(0, len(vectors), block))
