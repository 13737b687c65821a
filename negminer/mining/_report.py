"""The report of one mining run: what each filter removed, who was left short, score distributions, timings."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from negminer._io import atomic_path, write_json

__all__ = ["MiningReport"]


def _stats(x: np.ndarray) -> dict[str, float | int]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"count": 0}
    q = np.quantile(x, [0.25, 0.5, 0.75])
    return {
        "count": int(x.size),
        "mean": round(float(x.mean()), 4),
        "std": round(float(x.std()), 4),
        "min": round(float(x.min()), 4),
        "p25": round(float(q[0]), 4),
        "median": round(float(q[1]), 4),
        "p75": round(float(q[2]), 4),
        "max": round(float(x.max()), 4),
    }


@dataclass
class MiningReport:
    """Counts and distributions of a mining run; ``to_dict()`` is the JSON written beside the negatives."""

    queries: int
    pairs: int
    corpus_size: int
    corpus_rows: int
    max_positives: int
    num_negatives: int
    range_max: int
    search_depth: int
    queries_deepened: int
    mean_search_depth: float
    candidates: int
    positives_masked: int
    removed: dict[str, int]
    removed_share: dict[str, float]
    negatives: int
    queries_full: int
    queries_short: int
    queries_without_negatives: int
    queries_short_multi_positive: int
    queries_multi_positive: int
    positive_scores: dict[str, Any]
    negative_scores: dict[str, Any]
    timings: dict[str, float]
    encoder: dict[str, Any]
    index: dict[str, Any]
    teacher: str | None
    source: str
    filter: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    histograms: dict[str, Any] = field(default_factory=dict)
    _pos: np.ndarray | None = field(default=None, repr=False)
    _neg: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        *,
        cfg: Any,
        data_source: str,
        positives: list[list[int]],
        pos_scores: list[np.ndarray],
        negatives: np.ndarray,
        neg_scores: np.ndarray,
        removed: np.ndarray,
        rules: tuple[str, ...],
        masked: np.ndarray,
        candidates: np.ndarray,
        depth_used: np.ndarray,
        depth0: int,
        range_max: int,
        corpus_size: int,
        corpus_rows: int,
        timings: dict[str, float],
        encoder: dict[str, Any],
        index: dict[str, Any],
        teacher: str | None,
    ) -> MiningReport:
        got = (negatives >= 0).sum(axis=1)
        multi = np.array([len(p) > 1 for p in positives])
        short = got < cfg.num_negatives
        total_candidates = int(candidates.sum())
        removed_by_rule = {r: int(removed[:, i].sum()) for i, r in enumerate(rules) if getattr(cfg, r) is not None}
        pos_all = np.concatenate(pos_scores) if pos_scores else np.zeros(0, np.float32)
        neg_all = neg_scores[np.isfinite(neg_scores)]
        return cls(
            queries=len(positives),
            pairs=int(sum(len(p) for p in positives)),
            corpus_size=corpus_size,
            corpus_rows=corpus_rows,
            max_positives=max(len(p) for p in positives),
            num_negatives=cfg.num_negatives,
            range_max=range_max,
            search_depth=depth0,
            queries_deepened=int((depth_used > depth0).sum()),
            mean_search_depth=round(float(depth_used.mean()), 2),
            candidates=total_candidates,
            positives_masked=int(masked.sum()),
            removed=removed_by_rule,
            removed_share={
                r: round(v / total_candidates, 4) if total_candidates else 0.0 for r, v in removed_by_rule.items()
            },
            negatives=int(got.sum()),
            queries_full=int((~short).sum()),
            queries_short=int(short.sum()),
            queries_without_negatives=int((got == 0).sum()),
            queries_short_multi_positive=int((short & multi).sum()),
            queries_multi_positive=int(multi.sum()),
            positive_scores=_stats(pos_all),
            negative_scores=_stats(neg_all),
            timings={k: round(v, 3) for k, v in timings.items()},
            encoder=encoder,
            index=index,
            teacher=teacher,
            source=data_source,
            filter=cfg.describe_filter(),
            config=cfg.model_dump(),
            _pos=pos_all,
            _neg=neg_all,
        )

    def add_histograms(self, removed_scores: dict[str, np.ndarray] | None = None, bins: int = 40) -> None:
        """Score histograms as counts on shared bins: positives, mined negatives and the candidates each rule
        removed (``histograms``: ``edges``, ``counts`` by series, ``totals``: how many each series has in all;
        removed scores are kept up to a sample, so a rule's counts may sum to less than its total)."""
        series: dict[str, np.ndarray] = {}
        totals: dict[str, int] = {}
        for name, arr, total in (
            ("positives", self._pos, None),
            ("mined negatives", self._neg, None),
            *((f"removed by {r}", a, self.removed.get(r)) for r, a in (removed_scores or {}).items()),
        ):
            if arr is None:
                continue
            finite = arr[np.isfinite(arr)]
            series[name] = finite
            totals[name] = int(total if total is not None else finite.size)
        held = [a for a in series.values() if a.size]
        if not held:
            self.histograms = {}
            return
        lo, hi = min(float(a.min()) for a in held), max(float(a.max()) for a in held)
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-3, bins + 1)
        self.histograms = {
            "edges": [round(float(e), 4) for e in edges],
            "counts": {k: np.histogram(a, bins=edges)[0].tolist() for k, a in series.items()},
            "totals": totals,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (no arrays)."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def save_json(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"queries {self.queries:,} (pairs {self.pairs:,}, max positives {self.max_positives}); "
            f"corpus {self.corpus_size:,} unique texts",
            f"candidates {self.candidates:,} (search depth {self.search_depth}, range_max {self.range_max}; "
            f"{self.queries_deepened} queries searched deeper)",
        ]
        if self.filter:
            rules = ", ".join(f"{k}={v:g}" for k, v in self.filter["rules"].items()) or "no rule"
            why = "the default when no filter is named" if self.filter["chosen_by"] == "default" else "as asked"
            lines.append(f"filter: {self.filter['name']} ({rules}; {why})")
        for rule, n in self.removed.items():
            lines.append(f"  removed by {rule}: {n:,} ({self.removed_share[rule]:.2%})")
        lines.append(
            f"negatives {self.negatives:,}; queries with a full set {self.queries_full:,}, short {self.queries_short:,}"
            f" (none at all {self.queries_without_negatives:,}; multi-positive short "
            f"{self.queries_short_multi_positive}/{self.queries_multi_positive})"
        )
        ps, ns = self.positive_scores, self.negative_scores
        if ps.get("count") and ns.get("count"):
            lines.append(f"mean score: positives {ps['mean']:.4f}, negatives {ns['mean']:.4f}")
        t = self.timings
        lines.append("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()))
        lines.append(f"encoder: {self.encoder['encoded']:,} texts encoded, {self.encoder['cached']:,} from cache")
        return "\n".join(lines)

    def save_plot(self, path: str | os.PathLike[str], removed_scores: dict[str, np.ndarray] | None = None) -> None:
        """PNG of the score histograms, as counts: positives, mined negatives and each rule's removed candidates
        on shared bins, so a rule that removed many candidates shows as many (its legend gives its total)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not self.histograms:  # mine() fills them; a report built otherwise gets them here
            self.add_histograms(removed_scores)
        fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
        h = self.histograms
        if h:
            edges = np.asarray(h["edges"])
            for name, counts in h["counts"].items():
                shown, total = int(sum(counts)), h["totals"][name]
                label = f"{name} ({total:,})" if shown == total else f"{name} ({total:,}; {shown:,} drawn)"
                ax.stairs(counts, edges, fill=True, alpha=0.45, label=label)
            ax.legend(fontsize=8)
        ax.set_xlabel("score (cosine to the query)")
        ax.set_ylabel("count")
        ax.set_title(f"Score distributions ({self.queries:,} queries; filter: {self.filter.get('name', '?')})")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)

    def __str__(self) -> str:  # pragma: no cover - convenience
        return json.dumps(self.to_dict(), indent=2)
