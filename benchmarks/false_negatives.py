"""False-negative benchmark: how clean and how hard each filter's negatives are, against an oracle.

On the demo data (Python standard library), every query with two or more positives keeps half of them as labels
and has the other half *hidden*: still in the corpus, unlabeled, exactly like the unlabeled positives of real
data. We then mine and measure, per filter:

* contamination: the share of mined negatives that are hidden positives (lower is better);
* full: the share of queries that got a full set of ``num_negatives``;
* hardness: the mean score of the mined negatives (higher = harder), and its ratio to the **oracle**'s: a miner
  that knows every positive (hidden ones masked, nothing else removed), whose negatives are the hardest clean
  negatives there are;
* oracle overlap: the share of the oracle's negatives the filter also mined.

Three cases: ``natural`` (functions sharing a docstring line), ``harsh`` (a module's docstring line as the
query, all public functions of the module as positives: the many-positives regime) and ``nfcorpus`` (NFCorpus dev
queries, median 18 positives, from ``../shared/data/nfcorpus``; skipped with a message when absent: real data the
defaults were not tuned on). A setting *meets the targets* when, in every case, >= 99% of the queries are full,
contamination is <= 2% and hardness is >= 0.8x the oracle's. The frontier (contamination vs hardness ratio, one
point per setting) is written as a PNG.

    python benchmarks/false_negatives.py [--num-negatives 5] [--cache-dir runs/cache]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table  # noqa: E402

from negminer import Encoder, RetrievalData, build_demo, load_beir, mine  # noqa: E402
from negminer.mining import RECOMMENDED_FILTER, TRAINING_FILTER  # noqa: E402

SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("none", {"filter": "none"}),  # named: a mine() without options applies the recommended filter
    ("absolute 0.05", {"absolute_margin": 0.05}),
    ("relative 0.05 (NV-Retriever)", {"relative_margin": 0.05}),
    ("relative 0.05 + deepen", {"relative_margin": 0.05, "deepen": True}),
    ("relative 0.10 + deepen", {"relative_margin": 0.10, "deepen": True}),
    ("adaptive 0.5", {"adaptive_margin": 0.5}),
    ("adaptive 1.0", {"adaptive_margin": 1.0}),
    ("adaptive 2.0", {"adaptive_margin": 2.0}),
    ("neighbourhood 1.0", {"positive_neighbourhood": 1.0}),
    ("neighbourhood 1.5", {"positive_neighbourhood": 1.5}),
    ("neighbourhood 2.0", {"positive_neighbourhood": 2.0}),
    ("neighbourhood 2.5", {"positive_neighbourhood": 2.5}),
    ("neighbourhood 3.0", {"positive_neighbourhood": 3.0}),
    ("neighbourhood 1.5, window 50", {"positive_neighbourhood": 1.5, "neighbourhood_window": 50}),
    ("neighbourhood 1.5, window 200", {"positive_neighbourhood": 1.5, "neighbourhood_window": 200}),
    ("siblings 0.05", {"positive_siblings": 0.05}),
    ("siblings 0.1", {"positive_siblings": 0.1}),
    ("siblings 0.2", {"positive_siblings": 0.2}),
    ("neighbourhood 1.25", {"positive_neighbourhood": 1.25}),
    ("neighbourhood 1.0 + siblings 0.1", {"positive_neighbourhood": 1.0, "positive_siblings": 0.1}),
    ("neighbourhood 1.25 + siblings 0.1 (mining default)", RECOMMENDED_FILTER),
    ("neighbourhood 1.5 + siblings 0.1", {"positive_neighbourhood": 1.5, "positive_siblings": 0.1}),
    ("neighbourhood 1.5 + siblings 0.2", {"positive_neighbourhood": 1.5, "positive_siblings": 0.2}),
    ("neighbourhood 1.5 + adaptive 1.0 (training default)", TRAINING_FILTER),
    ("neighbourhood 1.5 + adaptive 2.0", {"positive_neighbourhood": 1.5, "adaptive_margin": 2.0}),
    ("neighbourhood 1.5 + relative 0.05", {"positive_neighbourhood": 1.5, "relative_margin": 0.05}),
    ("neighbourhood 1.5 + max_score 0.8", {"positive_neighbourhood": 1.5, "max_score": 0.8}),
]
TARGETS = {"full": 0.99, "contamination": 0.02, "hardness ratio": 0.8}
HEADER = [
    "filter",
    "contamination",
    "hidden mined",
    "negatives",
    "full",
    "hardness (mean neg score)",
    "hardness / oracle",
    "oracle overlap",
    "deepened",
    "seconds",
]


def hide_half(data: RetrievalData) -> tuple[RetrievalData, list[set[int]]]:
    """Queries with >= 2 positives; half of each one's positives (floor) hidden, chosen by a hash of the ids."""
    keep = [i for i, p in enumerate(data.positives) if len(p) >= 2]
    visible, hidden = data.subset(keep).hide_positives(0.5)
    return visible, [set(h) for h in hidden]


def cases(nfcorpus: str, split: str) -> list[tuple[str, Callable[[], RetrievalData]]]:
    """The data sets: the two demo variants, and NFCorpus when its folder is there (a message says when not)."""
    out: list[tuple[str, Callable[[], RetrievalData]]] = [
        ("natural", lambda: build_demo(None)),
        ("harsh", lambda: build_demo(None, harsh=True)),
    ]
    if Path(nfcorpus).is_dir():
        out.append(("nfcorpus", lambda: load_beir(nfcorpus, split)))
    else:
        print(f"skipping the nfcorpus case: no folder {nfcorpus}\n")
    return out


def with_hidden(data: RetrievalData, hidden: list[set[int]]) -> RetrievalData:
    """The same queries with every positive known: what the oracle mines with."""
    return RetrievalData(
        data.corpus_ids,
        data.corpus_texts,
        data.query_ids,
        data.queries,
        [sorted(set(p) | h) for p, h in zip(data.positives, hidden)],
        source=data.source,
    )


def mined_texts(res: Any) -> list[set[str]]:
    return [{res.doc_texts[n] for n in res.negatives[q] if n >= 0} for q in range(len(res))]


def evaluate(
    data: RetrievalData, hidden: list[set[int]], encoder: Encoder, num_negatives: int
) -> tuple[list[list[Any]], dict[str, Any]]:
    """One row per setting (the oracle first) and the oracle's figures."""
    hidden_texts = [{data.corpus_texts[d] for d in h} for h in hidden]
    with_all = with_hidden(data, hidden)
    mine(with_all, encoder, num_negatives=num_negatives, filter="none", show_progress=False)  # encodes: untimed
    t0 = time.perf_counter()
    oracle = mine(with_all, encoder, num_negatives=num_negatives, filter="none", show_progress=False)
    oracle_secs = time.perf_counter() - t0
    oracle_sets = mined_texts(oracle)
    oracle_hardness = oracle.report.negative_scores["mean"]
    rows = []
    for name, opts in [("oracle (every positive known, no filter)", None), *SETTINGS]:
        t0 = time.perf_counter()
        res = oracle if opts is None else mine(data, encoder, num_negatives=num_negatives, show_progress=False, **opts)
        secs = oracle_secs if opts is None else time.perf_counter() - t0
        sets = mined_texts(res)
        mined = sum(len(s) for s in sets)
        contaminated = sum(len(s & h) for s, h in zip(sets, hidden_texts))
        found = sum(len(s & o) for s, o in zip(sets, oracle_sets))
        r = res.report
        hardness = r.negative_scores.get("mean", float("nan"))
        rows.append(
            [
                name,
                round(contaminated / max(mined, 1), 4),
                contaminated,
                mined,
                round(r.queries_full / r.queries, 4),
                hardness,
                round(hardness / oracle_hardness, 3),
                round(found / max(sum(len(o) for o in oracle_sets), 1), 3),
                r.queries_deepened,
                round(secs, 2),
            ]
        )
    return rows, {"hardness": oracle_hardness, "negatives": sum(len(o) for o in oracle_sets)}


def meets(row: list[Any]) -> bool:
    _, cont, _, _, full, _, ratio, *_ = row
    return full >= TARGETS["full"] and cont <= TARGETS["contamination"] and ratio >= TARGETS["hardness ratio"]


def plot_frontier(cases: dict[str, list[list[Any]]], path: Path) -> None:
    """Contamination vs hardness ratio, one point per setting and case; the target region shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cases), figsize=(6.5 * len(cases), 5), dpi=110)
    for ax, (case, rows) in zip(axes, cases.items()):
        ax.axvspan(0, TARGETS["contamination"], ymin=0, ymax=1, color="tab:green", alpha=0.06)
        ax.axhline(TARGETS["hardness ratio"], color="tab:green", lw=0.8, ls="--")
        ax.axvline(TARGETS["contamination"], color="tab:green", lw=0.8, ls="--")
        for row in rows:
            name, cont, ratio, full = row[0], row[1], row[6], row[4]
            family = name.split()[0]
            marker = {"oracle": "*", "none": "x", "neighbourhood": "o", "adaptive": "s"}.get(family, "^")
            ax.scatter(cont, ratio, marker=marker, s=60 if full >= TARGETS["full"] else 25, alpha=0.8)
            ax.annotate(name.split(" (")[0], (cont, ratio), fontsize=6, xytext=(3, 2), textcoords="offset points")
        ax.set_xlabel("contamination (share of negatives that are hidden positives)")
        ax.set_ylabel("hardness / oracle's")
        ax.set_title(f"{case}: small markers = some queries short")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-negatives", type=int, default=5)
    ap.add_argument("--cache-dir", default="runs/cache")
    ap.add_argument("--model", default=None, help="default: bundled all-MiniLM-L6-v2")
    ap.add_argument("--max-seq-length", type=int, default=None, help="tokens per text (default: the model's)")
    ap.add_argument(
        "--nfcorpus", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nfcorpus")
    )
    ap.add_argument("--nfcorpus-split", default="dev", help="qrels split of the nfcorpus case")
    ap.add_argument("--json", default="runs/bench/false_negatives.json")
    ap.add_argument("--plot", default="benchmarks/false_negatives.png")
    args = ap.parse_args()
    encoder = Encoder(
        args.model, cache_dir=args.cache_dir, batch_size=64, show_progress=False, max_seq_length=args.max_seq_length
    )
    out: dict[str, Any] = {"machine": machine(), "num_negatives": args.num_negatives, "cases": {}}
    print(f"# False-negative benchmark ({machine()})\n")
    tables = {}
    for case, load in cases(args.nfcorpus, args.nfcorpus_split):
        data, hidden = hide_half(load())
        n_hidden = sum(len(h) for h in hidden)
        print(
            f"## {case}: {len(data)} queries with >= 2 positives, {data.num_pairs} labeled + {n_hidden} hidden "
            f"positives, corpus {len(data.corpus_texts)} documents, num_negatives={args.num_negatives}\n"
        )
        rows, oracle = evaluate(data, hidden, encoder, args.num_negatives)
        tables[case] = rows
        print(markdown_table(HEADER, rows) + "\n", flush=True)
        out["cases"][case] = {"queries": len(data), "hidden": n_hidden, "oracle": oracle, "rows": rows}
    both = [
        [name, *(("yes" if meets(tables[c][i]) else "no") for c in tables)]
        for i, (name, *_) in enumerate(tables["natural"])
    ]
    print("## Targets (>= 99% full, contamination <= 2%, hardness >= 0.8x the oracle's)\n")
    print(markdown_table(["filter", *(f"meets, {c}" for c in tables)], both[1:]) + "\n")
    print(f"recommended filter (negminer mine): {RECOMMENDED_FILTER}; the trainer's: {TRAINING_FILTER}")
    plot_frontier(tables, Path(args.plot))
    print(f"frontier plot: {args.plot}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
