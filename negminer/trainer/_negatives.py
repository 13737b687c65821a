"""Where the trainer gets its hard negatives: an interface, and the in-process implementation.

The trainer calls :meth:`NegativeSource.refresh` with a new checkpoint and keeps training; at every step it calls
:meth:`NegativeSource.poll`, which returns a :class:`NegativesUpdate` once new negatives are ready. The in-process
:class:`LocalNegativeSource` mines inside ``refresh`` (so the trainer waits for it); :class:`HttpNegativeSource`
asks the index service to refresh and returns at once, and the service builds the next index version in the
background: the trainer never stops for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from negminer._data import RetrievalData
from negminer._errors import NegminerError
from negminer.index._encoder import Encoder
from negminer.mining._config import MiningConfig
from negminer.mining._miner import MiningResult, mine

__all__ = ["NegativeSource", "NegativesUpdate", "LocalNegativeSource", "HttpNegativeSource"]


@dataclass
class NegativesUpdate:
    """New negatives: per training query, rows of the training corpus de-duplicated by text (first-seen order),
    or, when ``texts`` is given, rows of ``texts`` (negatives from a corpus larger than the training data's)."""

    version: int
    negatives: list[list[int]]
    report: dict[str, Any] = field(default_factory=dict)
    texts: list[str] | None = None

    @classmethod
    def from_result(cls, version: int, result: MiningResult) -> NegativesUpdate:
        return cls(version, [[int(n) for n in row if n >= 0] for row in result.negatives], result.report.to_dict())


@runtime_checkable
class NegativeSource(Protocol):
    """Hard negatives for the training queries, re-mined from newer checkpoints."""

    def refresh(self, checkpoint: str) -> None:
        """Start mining negatives with ``checkpoint`` (a model folder). May return before they are ready."""
        ...

    def poll(self) -> NegativesUpdate | None:
        """The newest finished negatives not yet returned, or None."""
        ...


class LocalNegativeSource:
    """Mines in this process, through the embedding cache (an unchanged model costs nothing)."""

    def __init__(self, data: RetrievalData, config: MiningConfig, *, cache_dir: str | os.PathLike[str] | None = None,
                 device: str = "auto", batch_size: int = 64, max_seq_length: int | None = None,
                 show_progress: bool = True) -> None:
        self.data = data
        self.config = config
        self.cache_dir = cache_dir
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.show_progress = show_progress
        self.version = 0
        self._ready: NegativesUpdate | None = None
        self.last_encoder: Encoder | None = None

    def encoder(self, checkpoint: str) -> Encoder:
        return Encoder(checkpoint, device=self.device, batch_size=self.batch_size, cache_dir=self.cache_dir,
                       max_seq_length=self.max_seq_length, show_progress=self.show_progress)

    def refresh(self, checkpoint: str) -> None:
        self.last_encoder = self.encoder(checkpoint)
        result = mine(self.data, self.last_encoder, config=self.config, show_progress=self.show_progress)
        self.version += 1
        self._ready = NegativesUpdate.from_result(self.version, result)

    def poll(self) -> NegativesUpdate | None:
        ready, self._ready = self._ready, None
        return ready


class HttpNegativeSource:
    """The index service as the trainer's negative source (``negminer train --index-url``).

    The first ``refresh`` creates index ``index`` from the training corpus (document ids are row numbers of the
    corpus de-duplicated by text), or, with ``from_index``, as a copy of that index's documents (so negatives
    come from its whole corpus and the original is never served by a half-trained checkpoint). Later ones ask the
    service to re-encode ``index`` with the new checkpoint, which must lie inside the service's data dir. ``poll``
    returns None while the service works, then mines the training queries against the new version. Nothing here
    blocks on the service's encoding. ``close()`` deletes the index when ``delete_on_close``.
    """

    def __init__(self, url: str, index: str, data: RetrievalData, config: MiningConfig, *,
                 api_key: str | None = None, timeout: float = 600.0, batch: int = 256,
                 from_index: str | None = None, delete_on_close: bool = False) -> None:
        import httpx

        _, self.texts, doc_of = data.dedup_corpus()
        self.queries = list(data.queries)
        self.positive_ids = [[str(r) for r in sorted({doc_of[d] for d in pos})] for pos in data.positives]
        self.index = index
        self.from_index = from_index
        self.delete_on_close = delete_on_close
        self.positive_texts = [[self.texts[int(r)] for r in p] for p in self.positive_ids]
        self.options = config.model_dump(exclude_defaults=True) | {"num_negatives": config.num_negatives}
        self.batch = batch
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self._pending = False

    def _check(self, r: Any) -> Any:
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            raise NegminerError(f"index service: {r.request.method} {r.request.url.path} -> {r.status_code}: "
                                f"{detail}")
        return r.json()

    def refresh(self, checkpoint: str) -> None:
        r = self.client.get(f"/v1/indexes/{self.index}")
        if r.status_code == 404:
            body: dict[str, Any] = {"name": self.index, "model": checkpoint}
            if self.from_index:
                body["from_index"] = self.from_index
            else:
                body["documents"] = [{"id": str(i), "text": t} for i, t in enumerate(self.texts)]
            self._check(self.client.post("/v1/indexes", json=body))
        else:
            self._check(r)
            self._check(self.client.post(f"/v1/indexes/{self.index}/refresh", json={"model": checkpoint}))
        self._pending = True

    def poll(self) -> NegativesUpdate | None:
        if not self._pending:
            return None
        info = self._check(self.client.get(f"/v1/indexes/{self.index}"))
        op = info.get("operation") or {}
        if op.get("status") == "running":
            return None
        if op.get("status") == "failed":
            self._pending = False
            raise NegminerError(f"index service: {op.get('type')} of {self.index!r} failed: {op.get('error')}")
        self._pending = False
        negatives: list[list[int]] = []
        report: dict[str, Any] = {"queries_short": 0}
        version = info["version"]
        row_of: dict[str, int] = {}  # with from_index: negative text -> its row in the update's texts
        for start in range(0, len(self.queries), self.batch):
            chunk = slice(start, start + self.batch)
            if self.from_index:  # positives by text: the copied corpus has its own ids
                qs = [{"query": q, "positives": p} for q, p in zip(self.queries[chunk], self.positive_texts[chunk])]
            else:
                qs = [{"query": q, "positive_ids": p} for q, p in zip(self.queries[chunk], self.positive_ids[chunk])]
            body = self._check(self.client.post(f"/v1/indexes/{self.index}/mine", json={
                "queries": qs, "options": self.options, "return_text": bool(self.from_index)}))
            version = body["version"]
            for res in body["results"]:
                if self.from_index:
                    negatives.append([row_of.setdefault(n["text"], len(row_of)) for n in res["negatives"]])
                else:
                    negatives.append([int(n["id"]) for n in res["negatives"]])
            report["queries_short"] += body["report"]["queries_short"]
        return NegativesUpdate(version, negatives, report, texts=list(row_of) if self.from_index else None)

    def close(self) -> None:
        """Delete the index if this source owns it; close the HTTP client."""
        if self.delete_on_close:
            r = self.client.delete(f"/v1/indexes/{self.index}")
            if r.status_code not in (200, 404):
                self._check(r)
        self.client.close()
