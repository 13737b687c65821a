"""Retrieval evaluation: nDCG@10, Recall@100 and MRR@10 of a model on (queries, positives, corpus), exact search."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from negminer._data import RetrievalData
from negminer.index import Encoder, VectorIndex

__all__ = ["evaluate", "retrieval_metrics"]


def retrieval_metrics(rows: np.ndarray, positives: list[set[int]], *, per_query: bool = False) -> dict[str, Any]:
    """Binary-relevance metrics from ranked rows (n, >= 100; -1 = padding) and each query's positive rows.

    ``per_query`` adds ``"per_query": {metric: [value of each query]}``, what a paired comparison of two models
    (a bootstrap over queries) needs."""
    ndcg, recall, mrr = [], [], []
    for ranked, pos in zip(rows, positives):
        rel = np.array([r in pos for r in ranked[:100]], dtype=bool)
        gains = rel[:10] / np.log2(np.arange(2, 12))[: len(rel[:10])]
        ideal = (1.0 / np.log2(np.arange(2, 2 + min(len(pos), 10)))).sum()
        ndcg.append(float(gains.sum() / ideal) if ideal else 0.0)
        recall.append(float(rel.sum() / len(pos)) if pos else 0.0)
        first = np.flatnonzero(rel[:10])
        mrr.append(1.0 / (first[0] + 1) if len(first) else 0.0)
    n = max(1, len(positives))
    out: dict[str, Any] = {
        "ndcg@10": float(sum(ndcg) / n),
        "recall@100": float(sum(recall) / n),
        "mrr@10": float(sum(mrr) / n),
    }
    if per_query:
        out["per_query"] = {"ndcg@10": ndcg, "recall@100": recall, "mrr@10": mrr}
    return out


def evaluate(
    encoder: Encoder,
    data: RetrievalData,
    *,
    per_query: bool = False,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
) -> dict[str, Any]:
    """Encode the corpus (de-duplicated by text, through the encoder's cache) and the queries, search exactly,
    and score every query of ``data`` against its positives (``per_query``: each query's scores too).

    The prompts default to the model's own query and document prompts (``encode_query`` / ``encode_document``)."""
    _, texts, row_of = data.dedup_corpus()
    doc_vecs = encoder.encode(texts, kind="document", prompt=document_prompt, desc="evaluation corpus")
    q_vecs = encoder.encode(list(data.queries), kind="query", prompt=query_prompt, desc="evaluation queries")
    index = VectorIndex(doc_vecs.shape[1]).add(doc_vecs)
    _, rows = index.search(q_vecs, min(100, len(texts)))
    if rows.shape[1] < 100:
        rows = np.pad(rows, ((0, 0), (0, 100 - rows.shape[1])), constant_values=-1)
    out = retrieval_metrics(rows, [{row_of[d] for d in p} for p in data.positives], per_query=per_query)
    out["queries"] = len(data)
    return {k: (round(v, 5) if isinstance(v, float) and not math.isnan(v) else v) for k, v in out.items()}
