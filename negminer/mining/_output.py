"""Rows in sentence-transformers' output formats, and writing them as JSONL or Parquet."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from negminer._errors import ConfigError
from negminer._io import atomic_open, atomic_path
from negminer._vocab import OutputFormat, values
from negminer.mining._config import MiningConfig
from negminer.mining._report import MiningReport

__all__ = ["OUTPUT_FORMATS", "MiningResult", "to_columns", "write_rows"]

OUTPUT_FORMATS = values(OutputFormat)


@dataclass
class MiningResult:
    """Mined negatives per unique query, over the corpus de-duplicated by text.

    ``negatives[i]`` holds corpus rows (``-1`` where a query got fewer than ``num_negatives``) in descending score
    order, ``negative_scores[i]`` their scores (NaN where missing), ``positives[i]`` / ``positive_scores[i]`` the
    query's positives and their scores (teacher scores when a teacher was used), ``search_depth[i]`` how many
    candidates were retrieved for it (more than the default when deepening was needed).
    """

    queries: Sequence[str]
    query_ids: Sequence[str]
    doc_ids: Sequence[str]
    doc_texts: Sequence[str]
    positives: list[list[int]]
    positive_scores: list[np.ndarray]
    negatives: np.ndarray
    negative_scores: np.ndarray
    config: MiningConfig
    report: MiningReport
    search_depth: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    removed_scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.queries)

    def negatives_of(self, i: int) -> list[tuple[str, float]]:
        """(doc id, score) of query ``i``'s negatives."""
        return [(self.doc_ids[d], float(s)) for d, s in zip(self.negatives[i], self.negative_scores[i]) if d >= 0]

    def rows(
        self,
        output_format: str = "triplet",
        *,
        output_scores: bool = False,
        anchor_column: str = "anchor",
        positive_column: str = "positive",
    ) -> dict[str, list[Any]]:
        """Columns in sentence-transformers' output formats (``triplet``, ``n-tuple``, ``labeled-pair``,
        ``labeled-list``), with the same row order and rules: an n-tuple row needs a full set of negatives."""
        return to_columns(
            self,
            output_format,
            output_scores=output_scores,
            anchor_column=anchor_column,
            positive_column=positive_column,
        )

    def to_dataset(self, output_format: str = "triplet", **kw: Any) -> Any:
        """A ``datasets.Dataset`` that sentence-transformers' trainer takes as is."""
        from datasets import Dataset

        return Dataset.from_dict(self.rows(output_format, **kw))

    def save(self, path: str, output_format: str = "triplet", **kw: Any) -> None:
        """Write rows to ``.jsonl`` or ``.parquet`` (by suffix), atomically."""
        write_rows(self.rows(output_format, **kw), path)


def to_columns(
    res: MiningResult, output_format: str, *, output_scores: bool, anchor_column: str, positive_column: str
) -> dict[str, list[Any]]:
    """Build columns like ``mine_hard_negatives`` does for the same format (row order included)."""
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}", param="output_format")
    texts = res.doc_texts
    num = res.config.num_negatives
    A, P = anchor_column, positive_column
    cols: dict[str, list[Any]]
    if output_format == "triplet":
        cols = {A: [], P: [], "negative": []}
        if output_scores:
            cols["scores"] = []
        for qi, q in enumerate(res.queries):
            for p, ps in zip(res.positives[qi], res.positive_scores[qi]):
                for n, ns in zip(res.negatives[qi], res.negative_scores[qi]):
                    if n < 0:
                        continue
                    cols[A].append(q)
                    cols[P].append(texts[p])
                    cols["negative"].append(texts[n])
                    if output_scores:
                        cols["scores"].append([float(ps), float(ns)])
    elif output_format == "n-tuple":
        cols = {A: [], P: [], **{f"negative_{i}": [] for i in range(1, num + 1)}}
        if output_scores:
            cols["scores"] = []
        for qi, q in enumerate(res.queries):
            if (res.negatives[qi] < 0).any():
                continue
            for p, ps in zip(res.positives[qi], res.positive_scores[qi]):
                cols[A].append(q)
                cols[P].append(texts[p])
                for i, n in enumerate(res.negatives[qi], start=1):
                    cols[f"negative_{i}"].append(texts[n])
                if output_scores:
                    cols["scores"].append([float(ps)] + [float(s) for s in res.negative_scores[qi]])
    elif output_format == "labeled-pair":
        label = "score" if output_scores else "label"
        cols = {A: [], P: [], label: []}
        for qi, q in enumerate(res.queries):
            for p, ps in zip(res.positives[qi], res.positive_scores[qi]):
                cols[A].append(q)
                cols[P].append(texts[p])
                cols[label].append(float(ps) if output_scores else 1)
            for n, ns in zip(res.negatives[qi], res.negative_scores[qi]):
                if n < 0:
                    continue
                cols[A].append(q)
                cols[P].append(texts[n])
                cols[label].append(float(ns) if output_scores else 0)
    else:  # labeled-list
        label = "scores" if output_scores else "labels"
        cols = {A: [], P: [], label: []}
        for qi, q in enumerate(res.queries):
            negs = [(n, s) for n, s in zip(res.negatives[qi], res.negative_scores[qi]) if n >= 0]
            if not negs:
                continue
            for p, ps in zip(res.positives[qi], res.positive_scores[qi]):
                cols[A].append(q)
                cols[P].append([texts[p]] + [texts[n] for n, _ in negs])
                cols[label].append(
                    [float(ps)] + [float(s) for _, s in negs] if output_scores else [1] + [0] * len(negs)
                )
    return cols


def write_rows(cols: dict[str, list[Any]], path: str | os.PathLike[str]) -> None:
    """Write columns to ``.jsonl`` (one object per row) or ``.parquet``, via a temporary file."""
    path = Path(path)
    names = list(cols)
    n = len(cols[names[0]]) if names else 0
    if path.suffix == ".jsonl":
        with atomic_open(path) as fh:
            for i in range(n):
                fh.write(json.dumps({k: cols[k][i] for k in names}, ensure_ascii=False))
                fh.write("\n")
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_path(path) as tmp:
            pq.write_table(pa.table(cols), tmp)
    else:
        raise ConfigError(f"{path}: output must end in .jsonl or .parquet")
