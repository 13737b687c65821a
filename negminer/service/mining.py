"""Mining against an index of the service: the queries of a ``/mine`` request, the index's current version (a
snapshot that a refresh never disturbs), the library's :func:`negminer.mining.mine`."""

from __future__ import annotations

from typing import Any

from negminer import RetrievalData
from negminer._errors import ConfigError
from negminer.mining import MiningConfig, MiningResult, mine
from negminer.service.config import ServiceSettings
from negminer.service.models import bad_param
from negminer.service.registry import IndexRegistry, Snapshot
from negminer.service.schemas import MineQuery, MineRequest, MineResponse, MineResult, Negative

__all__ = ["check_mining_limits", "mine_index", "mine_snapshot"]


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
            raise bad_param(f"{where}.{name}", f"at most {cap}" + (f" on this service ({env})" if env else ""))


def mine_snapshot(
    snapshot: Snapshot, registry: IndexRegistry, queries: list[MineQuery], options: dict[str, Any]
) -> MiningResult:
    """Mine negatives for ``queries`` from the snapshot's corpus with the index's model.

    A query's positives are document ids of the index or extra texts (added to the candidates as positives)."""
    ids, corpus = list(snapshot.index.doc_ids), list(snapshot.texts)
    row = {d: i for i, d in enumerate(ids)}
    positives = []
    for qi, q in enumerate(queries):
        rows = []
        for d in q.positive_ids:
            if d not in row:
                raise ConfigError(f"unknown document id {d!r}", param=f"queries[{qi}].positive_ids")
            rows.append(row[d])
        for t in q.positives:
            ids.append(f"positive:{qi}:{len(rows)}")
            corpus.append(t)
            rows.append(len(ids) - 1)
        if not rows:
            raise ConfigError("needs positive_ids or positives", param=f"queries[{qi}]")
        positives.append(rows)
    data = RetrievalData(
        ids,
        corpus,
        [f"q{i}" for i in range(len(queries))],
        [q.query for q in queries],
        positives,
        source=f"index:{snapshot.name}",
    )
    return mine(data, registry.encoder(snapshot.model), show_progress=False, **options)


def mine_index(registry: IndexRegistry, name: str, body: MineRequest) -> MineResponse:
    """``POST /v1/indexes/{name}/mine``: negatives per query, the filter report, the version that answered."""
    snapshot = registry.snapshot(name)
    res = mine_snapshot(snapshot, registry, body.queries, body.options.model_dump(exclude_unset=True))
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
