"""Training where labels are incomplete: hidden positives, in-batch negatives as the bar, paired intervals.

On a BEIR folder with two qrels splits (default: ``../shared/data/nfcorpus``, train and dev), a fixed set of
training queries with >= ``--min-positives`` positives has ``--hide`` of each query's positives *hidden*: they
stay in the corpus but are never labels, exactly like the unlabeled positives of real data. Every row fine-tunes
all-MiniLM-L6-v2 on the same queries with the same budget and seeds, then scores the eval split with its full
labels (nDCG@10, Recall@100, MRR@10 against the whole corpus). The split depends on ``--split-seed`` only,
never on the training seed.

Rows: zero-shot; in-batch negatives only; naive top-k (no filter); sentence-transformers' recipe
(``mine_hard_negatives(relative_margin=0.05)`` + MNRL in its own trainer); negminer's mining default; negminer's
training default mined once and refreshed; labels known (naive top-k mined with the hidden positives known);
all labels visible (nothing hidden: in-batch only and negminer's training default). Per row it also reports what
its first mining did to the hidden positives (share of mined negatives that are hidden positives, queries full,
hardness against the labels-known row's) and the mean rank of the training queries' hidden positives in the
corpus before and after training (the damage false negatives do, measured directly).

Gates, printed first: (a) in-batch only and all-labels-visible beat zero-shot by >= 1 nDCG@10 point, (b) naive
top-k loses to in-batch only by >= 0.5 point. A paired bootstrap over eval queries (per-query nDCG@10 averaged
over seeds) gives 95% intervals of negminer's training default against the free baselines.

Results are written to ``--json`` after every run; a rerun with the same set-up skips the (row, seed) pairs
already there (``--fresh`` starts over), so the table can be built in several sittings.

    python benchmarks/incomplete_labels.py [--data DIR] [--train-split train] [--eval-split dev] [--hide 0.5]
        [--queries 300] [--min-positives 2] [--max-pairs 4] [--steps 100] [--batch-size 16] [--num-negatives 1]
        [--max-seq-length 128] [--lr 5e-5] [--refresh-every 50] [--seeds 42,43,44] [--rows inbatch,naive,...]
        [--device cuda] [--bf16]

At a GPU budget (the steps where hard negatives are reported to pay: 2,000 steps of 64, about three epochs of
every NFCorpus training query; sized for about 10 minutes on one H100-class GPU, not yet timed on one):

    NEGMINER_BENCH_LABEL=gpu python benchmarks/incomplete_labels.py --device cuda --bf16 --steps 2000 \
        --batch-size 64 --queries 2500 --max-pairs 16 --refresh-every 500 \
        --rows inbatch,train-default,train-default-refresh --seeds 42,43,44 --json runs/bench/il-gpu.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table, st_recipe  # noqa: E402

from negminer import DataError, Encoder, RetrievalData, load_beir, mine  # noqa: E402
from negminer.index import default_model_path  # noqa: E402
from negminer.mining import RECOMMENDED_FILTER, TRAINING_FILTER, MiningConfig  # noqa: E402
from negminer.trainer import LocalNegativeSource, TrainConfig, evaluate, train  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nfcorpus"


LF: dict[str, Any] = {"loss_filter": "relative", "loss_filter_margin": 0.05}
BAND: dict[str, Any] = {"positive_neighbourhood": 1.5, "range_min": 10, "range_max": 60, "sampling_strategy": "random"}


@dataclass(frozen=True)
class Row:
    """One way of training: which labels it sees, where its negatives come from."""

    key: str
    name: str
    negatives: str = "mined"  # none | mined | refresh | st (sentence-transformers' recipe)
    mining: dict[str, Any] = field(default_factory=lambda: {"filter": "none"})  # naive top-k unless a row says
    labels: str = "visible"  # visible: hidden positives unknown; known: mined with them known; all: none hidden
    options: dict[str, Any] = field(default_factory=dict)  # other TrainConfig options


ROWS: list[Row] = [
    Row("inbatch", "in-batch negatives only", negatives="none"),
    Row("naive", "naive top-k (no filter)"),
    Row("st", "sentence-transformers' recipe (relative 0.05 + MNRL)", negatives="st"),
    Row("mine-default", "negminer mining default, mined once", mining=RECOMMENDED_FILTER),
    Row("train-default", "negminer training default, mined once", mining=TRAINING_FILTER),
    Row("train-default-refresh", "negminer training default, refreshed", negatives="refresh", mining=TRAINING_FILTER),
    Row("labels-known", "labels known (naive top-k, hidden positives known)", labels="known"),
    Row("all-inbatch", "all labels visible, in-batch only", negatives="none", labels="all"),
    Row("all-default", "all labels visible, negminer training default", mining=TRAINING_FILTER, labels="all"),
    # a band below the top: where labels are incomplete the top ranks are crowded with unlabeled positives
    Row("band", "neighbourhood 1.5, random from ranks 10-60", mining=BAND),
    # in-loss masking of in-batch candidates scoring near the query's positive (likely unlabeled positives)
    Row("train-default-lf", "negminer training default + in-loss relative 0.05", mining=TRAINING_FILTER, options=LF),
    Row("inbatch-lf", "in-batch only + in-loss relative 0.05", negatives="none", options=LF),
    # the seeds' techniques (KaLM-Embedding-V2, MoCHi, LM-Cocktail), each on top of the training default
    Row("focal", "training default + focal reweighting (gamma 2)", mining=TRAINING_FILTER, options={"focal_gamma": 2}),
    Row("mix", "training default + 8 mixed negatives a query", mining=TRAINING_FILTER, options={"mix_negatives": 8}),
    Row(
        "soup",
        "training default + soup of the last 3 checkpoints (every 25 steps)",
        mining=TRAINING_FILTER,
        options={"soup_last": 3, "save_steps": 25},
    ),
]
TECHNIQUES = ("focal", "mix", "soup")
ROW_OF = {r.key: r for r in ROWS}
DEFAULT_ROWS = ",".join(r.key for r in ROWS)
DEFAULT_KEY = "train-default"  # the row the paired intervals are about
BASELINES = ("inbatch", "st", "naive")


# -- the data ---------------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """The fixed split: training queries with their visible and hidden positives, and the eval data."""

    visible: RetrievalData
    hidden: list[list[int]]
    eval: RetrievalData

    @property
    def known(self) -> RetrievalData:
        """The training queries with every positive, hidden ones included."""
        return self.visible.with_positives([[*v, *h] for v, h in zip(self.visible.positives, self.hidden)])


def load_setup(
    data: str | Path,
    *,
    train_split: str = "train",
    eval_split: str = "dev",
    hide: float = 0.5,
    queries: int = 300,
    min_positives: int = 2,
    split_seed: int = 0,
) -> Setup:
    """The training queries (``queries`` of those with >= ``min_positives`` positives, picked by a hash of their id
    and ``split_seed``), ``hide`` of each one's positives hidden, and the eval split with its full labels."""
    if not 0.0 < hide < 1.0:
        raise SystemExit(f"--hide must be in (0, 1), got {hide}")
    if min_positives < 2:
        raise SystemExit(f"--min-positives must be at least 2 (a query needs a positive to hide), got {min_positives}")
    try:
        train_all = load_beir(data, train_split)
        ev = load_beir(data, eval_split)
    except DataError as exc:
        raise SystemExit(f"{exc}") from None

    def key(i: int) -> bytes:
        return hashlib.sha1(f"{split_seed}\x00{train_all.query_ids[i]}".encode()).digest()

    eligible = [i for i, p in enumerate(train_all.positives) if len(p) >= min_positives]
    chosen = sorted(sorted(eligible, key=key)[:queries])
    if not chosen:
        raise SystemExit(f"no training query of split {train_split!r} has >= {min_positives} positives")
    visible, hidden = train_all.subset(chosen).hide_positives(hide, seed=split_seed)
    return Setup(visible, hidden, ev)


# -- measuring ----------------------------------------------------------------------------------------------------
def mining_stats(res: Any, hidden_texts: list[set[str]]) -> dict[str, Any]:
    """What a mining result did to the hidden positives: contamination, queries full, hardness."""
    sets = [{res.doc_texts[n] for n in res.negatives[q] if n >= 0} for q in range(len(res))]
    mined = sum(len(s) for s in sets)
    hit = sum(len(s & h) for s, h in zip(sets, hidden_texts))
    r = res.report
    return {
        "negatives": mined,
        "hidden mined": hit,
        "contamination": hit / max(mined, 1),
        "full": r.queries_full / max(r.queries, 1),
        "hardness": r.negative_scores.get("mean", float("nan")),
    }


def hidden_ranks(encoder: Encoder, setup: Setup) -> float:
    """Mean rank (1 = first) in the whole corpus of the training queries' hidden positives under ``encoder``."""
    _, texts, row_of = setup.visible.dedup_corpus()
    docs = encoder.encode(texts, kind="document", desc="corpus")
    qs = encoder.encode(list(setup.visible.queries), kind="query", desc="training queries")
    ranks = []
    for q, hid in enumerate(setup.hidden):
        if not hid:
            continue
        scores = docs @ qs[q]
        for d in hid:
            ranks.append(int((scores > scores[row_of[d]]).sum()) + 1)
    return float(np.mean(ranks)) if ranks else float("nan")


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, samples: int = 2000, seed: int = 0) -> list[float]:
    """(mean difference a - b, 2.5th and 97.5th percentile) over queries resampled with replacement."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(axis=1)
    return [float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


# -- training -----------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, setup: Setup, args: argparse.Namespace, tmp: Path) -> None:
        self.setup = setup
        self.args = args
        self.tmp = tmp
        self.hidden_texts = [{setup.visible.corpus_texts[d] for d in h} for h in setup.hidden]

    def encoder(self, path: str | None = None) -> Encoder:
        """The encoder of a trained model, or of the starting model (``path`` None)."""
        a = self.args
        return Encoder(
            path or a.model,
            device=a.device or "cpu",
            cache_dir=a.cache_dir,
            max_seq_length=a.max_seq_length,
            show_progress=False,
        )

    def measure(self, path: str | None) -> dict[str, Any]:
        enc = self.encoder(path)
        out = evaluate(enc, self.setup.eval, per_query=True)
        out["hidden rank"] = hidden_ranks(enc, self.setup)
        return out

    def config(self, row: Row, seed: int, out: Path) -> TrainConfig:
        a = self.args
        return TrainConfig(
            output_dir=str(out),
            model=a.model,
            negatives=row.negatives,
            refresh_every=a.refresh_every,
            num_negatives=a.num_negatives,
            mining=row.mining,
            max_pairs_per_query=a.max_pairs,
            max_steps=a.steps,
            batch_size=a.batch_size,
            learning_rate=a.lr,
            max_seq_length=a.max_seq_length,
            cache_dir=a.cache_dir,
            device=a.device or "cpu",
            bf16=bool(a.bf16),
            seed=seed,
            show_progress=False,
            save_total_limit=1,
            **row.options,
        )

    def data_of(self, row: Row) -> RetrievalData:
        return self.setup.known if row.labels == "all" else self.setup.visible

    def first_mining(self, row: Row) -> dict[str, Any] | None:
        """The row's mining with the zero-shot model (what a mined-once row trains on), measured on the hidden."""
        if row.negatives in ("none", "st"):
            return None
        cfg = MiningConfig(**{**row.mining, "num_negatives": self.args.num_negatives})
        data = self.setup.known if row.labels in ("known", "all") else self.setup.visible
        res = mine(data, self.encoder(), config=cfg, show_progress=False)
        return mining_stats(res, self.hidden_texts)

    def run(self, row: Row, seed: int) -> dict[str, Any]:
        out = self.tmp / f"{row.key}-{seed}"
        t0 = time.perf_counter()
        try:
            if row.negatives == "st":
                path, extra = self.st_recipe(seed, out)
            else:
                source: Callable[..., Any] | None = None
                if row.labels == "known":
                    known = self.setup.known

                    def source(train_data: RetrievalData, cfg: MiningConfig) -> LocalNegativeSource:
                        return LocalNegativeSource(known, cfg, encoder=self.encoder, show_progress=False)

                res = train(self.data_of(row), self.config(row, seed, out), validation=self.setup.eval, source=source)
                path, extra = res.model_path, {"positives masked": res.positives_masked, "steps": res.steps}
            result = self.measure(path)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return {**result, **extra, "seconds": round(time.perf_counter() - t0, 1)}

    def st_recipe(self, seed: int, out: Path) -> tuple[str, dict[str, Any]]:
        """sentence-transformers' recipe on the visible pairs (at most --max-pairs a query), as its users run it."""
        from datasets import Dataset

        a, vis = self.args, self.setup.visible
        pairs = [(q, vis.corpus_texts[d]) for q, pos in zip(vis.queries, vis.positives) for d in pos[: a.max_pairs]]
        path, kept = st_recipe(
            Dataset.from_dict({"anchor": [p[0] for p in pairs], "positive": [p[1] for p in pairs]}),
            corpus=list(dict.fromkeys(vis.corpus_texts)),
            model_path=a.model or default_model_path(),
            out=out,
            max_seq_length=a.max_seq_length,
            num_negatives=a.num_negatives,
            max_steps=a.steps,
            batch_size=a.batch_size,
            lr=a.lr,
            seed=seed,
        )
        return str(path), {"rows kept": kept, "pairs": len(pairs)}


# -- the report ---------------------------------------------------------------------------------------------------
def mean_sd(xs: Sequence[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.4f} ± {sd:.4f}"


def report(state: dict[str, Any], seeds: list[int]) -> str:
    zero = state["zero-shot"]
    z = zero["ndcg@10"]
    runs: dict[str, dict[str, Any]] = state["runs"]
    done = {k: [runs[k][str(s)] for s in seeds if str(s) in runs.get(k, {})] for k in ROW_OF}
    done = {k: v for k, v in done.items() if v}

    def nd(k: str) -> float:
        return statistics.mean(r["ndcg@10"] for r in done[k])

    lines = ["## Gates\n"]
    for k, label in (("inbatch", "in-batch only"), ("all-inbatch", "all labels visible, in-batch only")):
        if k in done:
            gain = 100 * (nd(k) - z)
            lines.append(f"- (a) {label} vs zero-shot: {gain:+.2f} points ({'holds' if gain >= 1 else 'FAILS'}, >= +1)")
    if "inbatch" in done and "naive" in done:
        gap = 100 * (nd("inbatch") - nd("naive"))
        lines.append(
            f"- (b) naive top-k vs in-batch only: {-gap:+.2f} points ({'holds' if gap >= 0.5 else 'FAILS'}, <= -0.5)"
        )
    header = [
        "row",
        "nDCG@10 (mean ± sd)",
        "vs zero-shot",
        "Recall@100",
        "MRR@10",
        "nDCG@10 per seed",
        "hidden mined",
        "queries full",
        "hardness / labels known",
        "hidden rank after (before)",
        "min per run",
    ]
    known_hard = (state.get("mining", {}).get("labels-known") or {}).get("hardness")
    rows: list[list[Any]] = [
        ["zero-shot", f"{z:.4f}", "", f"{zero['recall@100']:.4f}", f"{zero['mrr@10']:.4f}", "", "", "", "", "", ""]
    ]
    for k, results in done.items():
        m = state.get("mining", {}).get(k)
        extra = ""
        if k == "st":
            extra = f" (kept {results[0].get('rows kept')} of {results[0].get('pairs')} rows)"
        rows.append(
            [
                ROW_OF[k].name + extra,
                mean_sd([r["ndcg@10"] for r in results]),
                f"{100 * (nd(k) - z):+.2f}",
                mean_sd([r["recall@100"] for r in results]),
                mean_sd([r["mrr@10"] for r in results]),
                " ".join(f"{r['ndcg@10']:.4f}" for r in results),
                f"{100 * m['contamination']:.1f}%" if m else "-",
                f"{100 * m['full']:.1f}%" if m else "-",
                f"{m['hardness'] / known_hard:.2f}x" if m and known_hard else "-",
                f"{statistics.mean(r['hidden rank'] for r in results):.1f} ({zero['hidden rank']:.1f})",
                f"{statistics.mean(r['seconds'] for r in results) / 60:.1f}",
            ]
        )
    lines += ["", markdown_table(header, rows), ""]

    def per_query(k: str) -> np.ndarray:
        return np.mean([np.asarray(r["per_query"]["ndcg@10"]) for r in done[k]], axis=0)

    pairs = [(a, b) for a in (DEFAULT_KEY, "train-default-refresh") for b in BASELINES if a in done and b in done]
    pairs += [(a, b) for a in TECHNIQUES for b in ("inbatch", DEFAULT_KEY) if a in done and b in done]
    pairs += [(k, "zero-shot") for k in ("inbatch", DEFAULT_KEY) if k in done]
    if pairs:
        lines.append("Paired bootstrap over eval queries (per-query nDCG@10, mean over seeds; 95% interval, points):\n")
        brows = []
        for a, b in pairs:
            other = np.asarray(zero["per_query"]["ndcg@10"]) if b == "zero-shot" else per_query(b)
            d, lo, hi = paired_bootstrap(per_query(a), other)
            brows.append([ROW_OF[a].name, b, f"{100 * d:+.2f}", f"[{100 * lo:+.2f}, {100 * hi:+.2f}]"])
        lines.append(markdown_table(["row", "against", "nDCG@10 difference", "95% interval"], brows))
    if "inbatch" in done and "all-inbatch" in done and DEFAULT_KEY in done:
        gap = nd("all-inbatch") - nd("inbatch")
        closed = (nd(DEFAULT_KEY) - nd("inbatch")) / gap if gap > 0 else float("nan")
        lines.append(
            f"\nShare of the hiding gap (in-batch hidden -> all labels visible) closed by the default: {closed:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="BEIR folder with both qrels splits")
    ap.add_argument("--train-split", default="train")
    ap.add_argument("--eval-split", default="dev")
    ap.add_argument("--hide", type=float, default=0.5, help="share of each training query's positives hidden")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the query choice and hiding (not training)")
    ap.add_argument("--queries", type=int, default=300, help="training queries")
    ap.add_argument("--min-positives", type=int, default=2)
    ap.add_argument("--max-pairs", type=int, default=4, help="training pairs a query (the rest stay known)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-negatives", type=int, default=1)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--refresh-every", type=int, default=50)
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated row keys of: {DEFAULT_ROWS}")
    ap.add_argument("--model", default=None, help="model to fine-tune (default: bundled all-MiniLM-L6-v2)")
    ap.add_argument("--device", default=None, help="cpu (default) or cuda: where negminer's rows train and encode")
    ap.add_argument("--bf16", action="store_const", const=True, default=None, help="negminer's rows train in bf16")
    ap.add_argument("--cache-dir", default="runs/cache")
    ap.add_argument("--json", default="runs/bench/incomplete_labels.json")
    ap.add_argument("--fresh", action="store_true", help="ignore the results already in --json")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.rows.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ROW_OF]
    if unknown:
        raise SystemExit(f"--rows: unknown row(s) {', '.join(unknown)}; known: {DEFAULT_ROWS}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if not Path(args.data).is_dir():
        raise SystemExit(f"--data: no folder {args.data} (NFCorpus is expected in ../shared/data/nfcorpus)")

    setup = load_setup(
        args.data,
        train_split=args.train_split,
        eval_split=args.eval_split,
        hide=args.hide,
        queries=args.queries,
        min_positives=args.min_positives,
        split_seed=args.split_seed,
    )
    skip = ("seeds", "rows", "json", "fresh", "cache_dir")
    budget = {k: v for k, v in vars(args).items() if k not in skip and v is not None}
    path = Path(args.json)
    state: dict[str, Any] = {}
    if path.exists() and not args.fresh:
        old = json.loads(path.read_text())
        if old.get("budget") == budget:
            state = old
    state.setdefault("budget", budget)
    state.setdefault("runs", {})
    state.setdefault("mining", {})
    state["machine"] = machine()
    vis = setup.visible
    n_hidden = sum(len(h) for h in setup.hidden)
    state["data"] = (
        f"{Path(args.data).name}: {len(vis)} training queries ({args.train_split}, >= {args.min_positives} "
        f"positives), {vis.num_pairs} visible + {n_hidden} hidden positives, <= {args.max_pairs} pairs a query; "
        f"eval {args.eval_split} {len(setup.eval)} queries, full labels; corpus {len(vis.corpus_texts)}"
    )
    print(state["data"], flush=True)

    def save() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(state, indent=1))
        tmp_path.replace(path)

    tmp = Path(tempfile.mkdtemp(prefix="negminer-incomplete-"))
    bench = Bench(setup, args, tmp)
    try:
        if "zero-shot" not in state:
            state["zero-shot"] = bench.measure(None)
            save()
        print(f"zero-shot nDCG@10 {state['zero-shot']['ndcg@10']:.4f}", flush=True)
        for key in keys:
            row = ROW_OF[key]
            if key not in state["mining"]:
                state["mining"][key] = bench.first_mining(row)
                save()
            if "labels-known" not in state["mining"]:  # the hardness reference of every row
                state["mining"]["labels-known"] = bench.first_mining(ROW_OF["labels-known"])
            for seed in seeds:
                if str(seed) in state["runs"].get(key, {}):
                    continue
                result = bench.run(row, seed)
                state["runs"].setdefault(key, {})[str(seed)] = result
                save()
                print(f"{key} seed {seed}: nDCG@10 {result['ndcg@10']:.4f} ({result['seconds']} s)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n# Incomplete labels ({state['machine']})\n\n{state['data']}; {args.steps} steps x batch "
        f"{args.batch_size}, {args.num_negatives} negative(s), lr {args.lr}, max_seq_length {args.max_seq_length}, "
        f"refresh every {args.refresh_every}; seeds {args.seeds}\n"
    )
    print(report(state, seeds))


if __name__ == "__main__":
    main()
