"""Mining against an index of the service: the queries of a ``/mine`` request, the index's current version (a
snapshot that a refresh never disturbs: its persisted index and memory-mapped vectors, searched as they are), the
library's :func:`negminer.mining.mine_vectors`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from negminer._errors import ConfigError
from negminer._settings import ServiceSettings
from negminer.client.schemas import MineQuery, MineRequest, MineResponse, MineResult, Negative
from negminer.mining import MiningConfig, MiningResult, mine_vectors
from negminer.mining._internal import StackedRows
from negminer.service.registry import IndexRegistry, Snapshot

__all__ = ["check_mining_limits", "mine_index", "mine_snapshot"]


def _refuse(param: str, why: str) -> ConfigError:
    """A refusal naming the request field ``param`` (the service answers 422 invalid_request)."""
    return ConfigError(why, param=param)


def check_mining_limits(cfg: MiningConfig, settings: ServiceSettings, where: str) -> None:
    """Mining options within the service's limits (a request must not ask for a billion negatives per query);
    a 422 names the field (``where.field``) and the setting that bounds it."""
    limits = {
        "num_negatives": (settings.max_top_k, "NEGMINER_MAX_TOP_K"),
        "range_min": (settings.max_mine_depth, "NEGMINER_MAX_MINE_DEPTH"),
        "range_max": (settings.max_mine_depth, "NEGMINER_MAX_MINE_DEPTH"),
        "neighbourhood_window": (settings.max_mine_depth, "NEGMINER_MAX_MINE_DEPTH"),
        "adaptive_window": (settings.max_mine_depth, "NEGMINER_MAX_MINE_DEPTH"),
        "max_depth": (settings.max_mine_depth, "NEGMINER_MAX_MINE_DEPTH"),
        "batch_size": (4096, None),
        "chunk_size": (1 << 16, None),
    }
    for name, (cap, env) in limits.items():
        value = getattr(cfg, name)
        if value is not None and value > cap:
            raise _refuse(f"{where}.{name}", f"at most {cap}" + (f" on this service ({env})" if env else ""))


def _text_rows(snapshot: Snapshot, texts: list[str], vectors: np.ndarray) -> list[int | None]:
    """The row of each text in the snapshot's corpus, found by searching its own vector (a document whose text is
    the same has the same vector), or None: positives given as texts that the index already holds are masked."""
    if not texts:
        return []
    scores, rows = snapshot.corpus.search(vectors, min(4, len(snapshot.corpus)))
    out: list[int | None] = []
    for t, sc, rw in zip(texts, scores, rows):
        out.append(next((int(r) for s, r in zip(sc, rw) if r >= 0 and s > 0.999 and snapshot.texts[r] == t), None))
    return out


def mine_snapshot(
    snapshot: Snapshot, registry: IndexRegistry, queries: list[MineQuery], config: MiningConfig
) -> MiningResult:
    """Mine negatives for ``queries`` by searching the snapshot's persisted index (no rebuild per request) with the
    index's model. A query's positives are document ids of the index, or texts: a text the index holds is that
    document; another one is a positive outside the index (scored, never a candidate)."""
    cfg = config  # validated once, as the request's body was read
    current = snapshot.corpus
    encoder = registry.encoder(snapshot.model)
    encoder.check_prompt(cfg.query_prompt_name, "options.query_prompt_name")  # honoured or refused, never ignored
    encoder.check_prompt(cfg.corpus_prompt_name, "options.corpus_prompt_name")
    extra = [t for q in queries for t in q.positives]
    extra_vecs = (
        encoder.encode(extra, kind="document", prompt=cfg.corpus_prompt, prompt_name=cfg.corpus_prompt_name)
        if extra
        else np.zeros((0, current.dim), np.float32)
    )
    found = _text_rows(snapshot, extra, extra_vecs)
    outside: list[int] = []  # indices into ``extra`` of the positives outside the index (rows n, n + 1...)
    positives, k, n = [], 0, len(current)
    for qi, q in enumerate(queries):
        rows = []
        for d in q.positive_ids:
            r = current.row_of(d)
            if r is None:
                raise ConfigError(f"unknown document id {d!r}", param=f"queries[{qi}].positive_ids")
            rows.append(r)
        for _ in q.positives:
            r, k = found[k], k + 1
            if r is None:
                r = n + len(outside)
                outside.append(k - 1)
            rows.append(r)
        if not rows:
            raise ConfigError("needs positive_ids or positives", param=f"queries[{qi}]")
        positives.append(rows)
    base = current.vectors
    if base is None:  # a version saved before vectors were kept: its texts are in the embedding cache
        base = encoder.encode(list(snapshot.texts), kind="document", desc="corpus")
    q_vecs = encoder.encode(
        [q.query for q in queries], kind="query", prompt=cfg.query_prompt, prompt_name=cfg.query_prompt_name
    )
    return mine_vectors(
        q_vecs,
        StackedRows(base, extra_vecs[outside]),
        positives,
        config=cfg,
        index=current.vector_index,
        queries=[q.query for q in queries],
        doc_ids=_Concat(current.doc_ids, [f"positive:{i}" for i in outside]),
        doc_texts=_Concat(snapshot.texts, [extra[i] for i in outside]),
        show_progress=False,
    )


class _Concat(Sequence[str]):
    """Two sequences read as one (the index's ids or texts, then those of positives outside it)."""

    def __init__(self, a: Sequence[str], b: Sequence[str]) -> None:
        self.a, self.b = a, b

    def __len__(self) -> int:
        return len(self.a) + len(self.b)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.a[i] if i < len(self.a) else self.b[i - len(self.a)]


def mine_index(registry: IndexRegistry, name: str, body: MineRequest) -> MineResponse:
    """``POST /v1/indexes/{name}/mine``: negatives per query, the filter report, the version that answered."""
    snapshot = registry.snapshot(name)
    res = mine_snapshot(snapshot, registry, body.queries, body.options)
    results = []
    for i, q in enumerate(res.queries):
        rows = [int(r) for r in res.negatives[i] if r >= 0]
        negatives = [
            Negative(id=d, score=s, text=res.doc_texts[r] if body.return_text else None)
            for (d, s), r in zip(res.negatives_of(i), rows)
        ]
        results.append(
            MineResult(query=q, negatives=negatives, positive_scores=[float(x) for x in res.positive_scores[i]])
        )
    rows_out = res.rows(body.output_format, output_scores=body.output_scores) if body.output_format else None
    return MineResponse(
        index=name, version=snapshot.version, results=results, report=res.report.to_dict(), rows=rows_out
    )
