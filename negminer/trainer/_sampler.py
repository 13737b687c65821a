"""A batch sampler that puts the positives of one query in the same batch (``group_positives``).

With rows drawn at random, a batch almost never holds two positives of one query, so the decoupled softmax (which
only changes how a query's *other* positives are treated) trains exactly like InfoNCE. Grouping the rows by query
makes those positives meet: each epoch every query's rows are shuffled and cut into groups of at most
``max(2, batch_size // 4)``, the groups are shuffled, and the resulting stream is cut into batches of
``batch_size``. Every row is still seen once per epoch, so the number of steps (the budget) is the same as with
sentence-transformers' default sampler.

Why the cap: a batch filled by one query's positives has few other queries to take negatives from, and InfoNCE
then pushes those positives against each other (uncapped groups cost both losses many nDCG@10 points on the
many-positives demo: docs/benchmarks.md, "Fine-tuning quality").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

__all__ = ["QueryGroupBatchSampler"]


class QueryGroupBatchSampler(DefaultBatchSampler):
    """Batches of ``batch_size`` rows in which a query's rows come in groups of up to ``max(2, batch_size // 4)``
    consecutive rows; ``queries[i]`` is row ``i``'s query."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        queries: Sequence[int],
    ) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        if len(queries) != len(dataset):
            raise ValueError(f"queries has {len(queries)} entries, the dataset {len(dataset)} rows")
        groups: dict[int, list[int]] = {}
        for row, q in enumerate(queries):
            groups.setdefault(int(q), []).append(row)
        self.groups = list(groups.values())
        self.rows = len(queries)
        self.group_size = max(2, batch_size // 4)

    def order(self) -> list[int]:
        """This epoch's row order: each query's rows shuffled and cut into groups of at most ``group_size``
        consecutive rows, the groups shuffled."""
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        pieces: list[list[int]] = []
        for rows in self.groups:
            mixed = [rows[i] for i in torch.randperm(len(rows), generator=gen).tolist()]
            pieces += [mixed[i : i + self.group_size] for i in range(0, len(mixed), self.group_size)]
        return [r for i in torch.randperm(len(pieces), generator=gen).tolist() for r in pieces[i]]

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self) -> int:
        if self.drop_last:
            return self.rows // self.batch_size
        return (self.rows + self.batch_size - 1) // self.batch_size
