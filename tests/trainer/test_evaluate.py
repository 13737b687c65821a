from __future__ import annotations

import math

import numpy as np
import pytest

from negminer.trainer import retrieval_metrics


def _pad(rows: list[list[int]]) -> np.ndarray:
    return np.array([r + [-1] * (100 - len(r)) for r in rows])


def test_metrics_hand_computed() -> None:
    rows = _pad([[5, 1, 2], [7, 8, 9], [3, 4]])
    pos = [{1, 2}, {42}, {3}]
    m = retrieval_metrics(rows, pos)
    # query 0: hits at ranks 2 and 3 -> DCG = 1/log2(3) + 1/log2(4); IDCG = 1 + 1/log2(3)
    ndcg0 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg0 + 0 + 1) / 3)
    assert m["recall@100"] == pytest.approx((1 + 0 + 1) / 3)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 0 + 1) / 3)


def test_hit_beyond_10_counts_for_recall_only() -> None:
    rows = _pad([list(range(100, 111)) + [7]])
    m = retrieval_metrics(rows, [{7}])
    assert m["ndcg@10"] == 0 and m["mrr@10"] == 0 and m["recall@100"] == 1


def test_per_query_values_average_to_the_means() -> None:
    rows = _pad([[5, 1, 2], [7, 8, 9], [3, 4]])
    m = retrieval_metrics(rows, [{1, 2}, {42}, {3}], per_query=True)
    for key in ("ndcg@10", "recall@100", "mrr@10"):
        assert len(m["per_query"][key]) == 3
        assert np.mean(m["per_query"][key]) == pytest.approx(m[key])
    assert m["per_query"]["mrr@10"] == [0.5, 0.0, 1.0]
    assert "per_query" not in retrieval_metrics(rows, [{1, 2}, {42}, {3}])
