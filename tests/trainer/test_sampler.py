"""The batch sampler of ``group_positives``: a query's rows in one batch, every row once an epoch, same length."""

from __future__ import annotations

from pathlib import Path

import pytest

from negminer import build_demo
from negminer.trainer import TrainConfig, train
from negminer.trainer._sampler import QueryGroupBatchSampler

QUERIES = [0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 4, 5, 6, 6]  # row -> query


def _sampler(batch_size: int = 4, drop_last: bool = False, seed: int = 0) -> QueryGroupBatchSampler:
    return QueryGroupBatchSampler(list(range(len(QUERIES))), batch_size, drop_last, seed=seed, queries=QUERIES)


def test_every_row_once_and_query_rows_consecutive() -> None:
    s = _sampler()
    batches = list(s)
    order = [r for b in batches for r in b]
    assert sorted(order) == list(range(len(QUERIES)))
    assert len(batches) == len(s) == 4 and all(len(b) == 4 for b in batches[:-1])
    seen = [QUERIES[r] for r in order]
    runs = [[q] for q in seen[:1]]
    for prev, q in zip(seen, seen[1:]):
        if q == prev:
            runs[-1].append(q)
        else:
            runs.append([q])
    # groups of at most max(2, 4 // 4) = 2 rows: query 4's four rows come as two pairs, the others whole
    assert sorted(len(r) for r in runs if r[0] == 4) in ([2, 2], [4])
    assert all(len(r) <= 4 for r in runs) and len(runs) <= 9


def test_seeded_per_epoch_and_drop_last() -> None:
    a, b = _sampler(seed=3), _sampler(seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first  # a new order each epoch
    short = _sampler(drop_last=True)
    assert len(short) == 3 and all(len(x) == 4 for x in short)


def test_grouping_brings_positives_together_unlike_random_batches() -> None:
    # 60 queries with 2 positives each, batch 8: grouped, nearly every batch holds a query twice
    queries = [q for q in range(60) for _ in range(2)]
    s = QueryGroupBatchSampler(list(range(120)), 8, False, queries=queries)
    together = sum(len({queries[r] for r in b}) < len(b) for b in s)
    assert together == len(s)


@pytest.mark.slow
def test_training_with_group_positives(tiny_model: Path, tmp_path: Path) -> None:
    data = build_demo(120, harsh=True)
    cfg = TrainConfig(
        output_dir=str(tmp_path / "run"),
        model=str(tiny_model),
        loss="decoupled",
        group_positives=True,
        batch_size=4,
        max_steps=3,
        num_negatives=1,
        cache_dir=str(tmp_path / "cache"),
        device="cpu",
        show_progress=False,
    )
    res = train(data, cfg)
    assert res.steps == 3 and Path(res.model_path, "config.json").exists()
    assert TrainConfig.model_validate_json(cfg.model_dump_json()).group_positives
