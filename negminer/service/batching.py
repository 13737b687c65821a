"""Dynamic batching of the texts that concurrent requests ask to encode, as Text Embeddings Inference does.

Each search or embedding request with new texts used to take the model for itself, one forward pass per request,
so 16 clients each sending a new query were served one after another. An :class:`EncodeBatcher` queues the
requests' texts; one thread takes every queued request that asks for the same kind of encoding (query or
document, prompt, normalization, truncation side) up to ``max_texts`` texts, encodes them in one call, and hands
each request its rows. Nothing waits on purpose: a request that finds the model idle is encoded at once, and the
requests that arrive while a batch is encoding form the next batch, so batches grow with the load and latency
does not grow at low load. Large requests (``max_texts`` texts or more) are encoded as they are.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from negminer.index import Encoder

__all__ = ["EncodeBatcher"]


@dataclass
class _Pending:
    texts: list[str]
    key: Hashable
    options: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class EncodeBatcher:
    """Encode small requests of one model together (see the module's docstring); thread-safe."""

    def __init__(self, encoder: Encoder, *, max_texts: int = 256) -> None:
        self.encoder = encoder
        self.max_texts = max_texts
        self._queue: list[_Pending] = []
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self.batches = 0  # encode calls made, and requests served by them (metrics, tests)
        self.requests = 0

    def encode(self, texts: list[str], **options: Any) -> np.ndarray:
        """What ``Encoder.encode(texts, **options)`` returns, encoded together with other requests' texts."""
        if len(texts) >= self.max_texts or not texts:
            return self.encoder.encode(texts, **options)
        options.pop("desc", None)
        pending = _Pending(list(texts), tuple(sorted(options.items())), options)
        with self._cv:
            self._queue.append(pending)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="encode-batcher", daemon=True)
                self._thread.start()
            self._cv.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _take(self) -> list[_Pending]:
        """The oldest request and every queued one of the same kind that fits in ``max_texts``."""
        with self._cv:
            while not self._queue:
                self._cv.wait()
            first = self._queue[0]
            batch: list[_Pending] = []
            rest: list[_Pending] = []
            size = 0
            for p in self._queue:
                if p.key == first.key and (not batch or size + len(p.texts) <= self.max_texts):
                    batch.append(p)
                    size += len(p.texts)
                else:
                    rest.append(p)
            self._queue = rest
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                texts = [t for p in batch for t in p.texts]
                vectors = self.encoder.encode(texts, desc="requests", **batch[0].options)
                start = 0
                for p in batch:
                    p.result = vectors[start : start + len(p.texts)]
                    start += len(p.texts)
                self.batches += 1
                self.requests += len(batch)
            except BaseException as exc:  # noqa: BLE001 - every waiting request gets the error
                for p in batch:
                    p.error = exc
            finally:
                for p in batch:
                    p.done.set()
