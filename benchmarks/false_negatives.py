"""False-negative benchmark: how many mined negatives are really (hidden) positives, per filter.

On the demo data (Python standard library), every query with two or more positives keeps half of them as labels
and has the other half *hidden*: still in the corpus, unlabeled, exactly like the unlabeled positives of real
data. We then mine and measure, per filter:

* contamination: the share of mined negatives that are hidden positives (lower is better);
* hardness: the mean score of the mined negatives (higher = harder);
* full: the share of queries that got a full set of ``num_negatives``.

Two cases: ``natural`` (functions sharing a docstring line) and ``harsh`` (a module's docstring line as the
query, all public functions of the module as positives: the many-positives regime).

    python benchmarks/false_negatives.py [--num-negatives 5] [--cache-dir runs/cache]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table  # noqa: E402

from negminer import Encoder, RetrievalData, build_demo, mine  # noqa: E402

SETTINGS: list[tuple[str, dict]] = [
    ("none", {}),
    ("absolute 0.05", {"absolute_margin": 0.05}),
    ("relative 0.05 (NV-Retriever)", {"relative_margin": 0.05}),
    ("relative 0.10", {"relative_margin": 0.10}),
    ("relative 0.05 + deepen", {"relative_margin": 0.05, "deepen": True}),
    ("relative 0.10 + deepen", {"relative_margin": 0.10, "deepen": True}),
    ("adaptive 0.5", {"adaptive_margin": 0.5}),
    ("adaptive 1.0 (CLI default)", {"adaptive_margin": 1.0}),
    ("adaptive 1.5", {"adaptive_margin": 1.5}),
    ("adaptive 2.0", {"adaptive_margin": 2.0}),
]


def hide_half(data: RetrievalData) -> tuple[RetrievalData, list[set[int]]]:
    """Queries with >= 2 positives; every second positive (by corpus order) becomes hidden."""
    keep = [i for i, p in enumerate(data.positives) if len(p) >= 2]
    sub = data.subset(keep)
    hidden = []
    for pos in sub.positives:
        pos.sort()
        hidden.append(set(pos[1::2]))
        pos[:] = pos[0::2]
    return sub, hidden


def evaluate(data: RetrievalData, hidden: list[set[int]], encoder: Encoder, num_negatives: int) -> list[list]:
    rows = []
    for name, opts in SETTINGS:
        t0 = time.perf_counter()
        res = mine(data, encoder, num_negatives=num_negatives, show_progress=False, **opts)
        # map de-duplicated rows back to corpus indices by text
        text_to_docs: dict[str, set[int]] = {}
        for i, t in enumerate(data.corpus_texts):
            text_to_docs.setdefault(t, set()).add(i)
        mined = contaminated = 0
        for q in range(len(res)):
            for n in res.negatives[q]:
                if n < 0:
                    continue
                mined += 1
                contaminated += bool(text_to_docs[res.doc_texts[n]] & hidden[q])
        r = res.report
        rows.append(
            [
                name,
                round(contaminated / max(mined, 1), 4),
                contaminated,
                mined,
                r.negative_scores.get("mean", float("nan")),
                round(r.queries_full / r.queries, 4),
                r.queries_deepened,
                round(time.perf_counter() - t0, 2),
            ]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-negatives", type=int, default=5)
    ap.add_argument("--cache-dir", default="runs/cache")
    ap.add_argument("--model", default=None, help="default: bundled all-MiniLM-L6-v2")
    ap.add_argument("--json", default="runs/bench/false_negatives.json")
    args = ap.parse_args()
    encoder = Encoder(args.model, cache_dir=args.cache_dir, batch_size=64)
    header = [
        "filter",
        "contamination",
        "hidden mined",
        "negatives",
        "hardness (mean neg score)",
        "full",
        "deepened",
        "seconds",
    ]
    out = {"machine": machine(), "num_negatives": args.num_negatives, "cases": {}}
    print(f"# False-negative benchmark ({machine()})\n")
    for case, harsh in (("natural", False), ("harsh", True)):
        full = build_demo(None, harsh=harsh)
        data, hidden = hide_half(full)
        n_hidden = sum(len(h) for h in hidden)
        print(
            f"## {case}: {len(data)} queries with >= 2 positives, {data.num_pairs} labeled + {n_hidden} hidden "
            f"positives, corpus {len(data.corpus_texts)} documents, num_negatives={args.num_negatives}\n"
        )
        rows = evaluate(data, hidden, encoder, args.num_negatives)
        print(markdown_table(header, rows) + "\n", flush=True)
        out["cases"][case] = {"queries": len(data), "hidden": n_hidden, "header": header, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
