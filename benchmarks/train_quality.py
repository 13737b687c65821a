"""Retrieval quality after fine-tuning, per negatives filter, mode and loss, against sentence-transformers' recipe.

On the demo data (train / test split by query), every run fine-tunes all-MiniLM-L6-v2 with the same steps, batch
size, learning rate and sequence length (the same budget), then scores the test split (nDCG@10, Recall@100, MRR@10
against the whole corpus). Each row runs with every seed of ``--seeds`` and reports the mean and the standard
deviation over seeds. The sentence-transformers recipe is ``mine_hard_negatives(relative_margin=0.05)`` then
``MultipleNegativesRankingLoss`` in its own trainer, with the same seeds.

    python benchmarks/train_quality.py [--seeds 42,43,44] [--max-steps 40] [--batch-size 16] [--num-negatives 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table  # noqa: E402
from _common import st_recipe as common_st_recipe  # noqa: E402

from negminer import Encoder, build_demo  # noqa: E402
from negminer.index import default_model_path  # noqa: E402
from negminer.mining import RECOMMENDED_FILTER, TRAINING_FILTER  # noqa: E402
from negminer.trainer import TrainConfig, evaluate, train  # noqa: E402

NEW = RECOMMENDED_FILTER  # the mining default (negminer.mining.RECOMMENDED_FILTER)
FOCAL, MIX = {"focal_gamma": 2}, {"mix_negatives": 8}  # the options of the techniques' rows
# (row name, loss, negatives mode, mining filter, group_positives[, other TrainConfig options])
RUNS: list[tuple[Any, ...]] = [
    ("mined once, relative 0.05", "infonce", "mined", {"relative_margin": 0.05}, False),
    ("refreshed, relative 0.05", "infonce", "refresh", {"relative_margin": 0.05}, False),
    ("mined once, adaptive 1.0", "infonce", "mined", {"adaptive_margin": 1.0}, False),
    ("refreshed, adaptive 1.0", "infonce", "refresh", {"adaptive_margin": 1.0}, False),
    ("mined once, mining default", "infonce", "mined", NEW, False),
    ("refreshed, mining default", "infonce", "refresh", NEW, False),
    ("refreshed, mining default", "decoupled", "refresh", NEW, False),
    ("refreshed, neighbourhood 1.5, --group-positives", "infonce", "refresh", NEW, True),
    ("refreshed, neighbourhood 1.5, --group-positives", "decoupled", "refresh", NEW, True),
    # the loss x grouping comparison on many positives (--harsh --rows 9,10,11,12 --no-st)
    ("mined once, neighbourhood 1.5", "infonce", "mined", NEW, False),
    ("mined once, neighbourhood 1.5", "decoupled", "mined", NEW, False),
    ("mined once, neighbourhood 1.5, --group-positives", "infonce", "mined", NEW, True),
    ("mined once, neighbourhood 1.5, --group-positives", "decoupled", "mined", NEW, True),
    # the rule combined with the adaptive margin (clean near-copies removed, the margin's hardness)
    ("refreshed, neighbourhood 1.5 + adaptive 1.0 (training default)", "infonce", "refresh", TRAINING_FILTER, False),
    # the seeds' techniques on top of the training default (rows 14-16)
    ("training default + focal reweighting (gamma 2)", "infonce", "refresh", TRAINING_FILTER, False, FOCAL),
    ("training default + 8 mixed negatives a query", "infonce", "refresh", TRAINING_FILTER, False, MIX),
    (
        "training default + soup of the last 3 checkpoints (every 10 steps)",
        "infonce",
        "refresh",
        TRAINING_FILTER,
        False,
        {"soup_last": 3, "save_steps": 10},
    ),
]
DEFAULT_ROWS = "0,1,2,3,4,5,6,7,8,13"
ST_ROW = ("sentence-transformers recipe (relative 0.05 + MNRL)", "mnrl")


def st_recipe(train_data: Any, test: Any, args: argparse.Namespace, tmp: Path, seed: int) -> dict[str, Any]:
    path, _ = common_st_recipe(
        train_data.to_pairs_dataset(),
        corpus=None,
        model_path=default_model_path(),
        out=tmp / "st",
        max_seq_length=args.max_seq_length,
        num_negatives=args.num_negatives,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
    )
    try:
        return evaluate(Encoder(str(path), device="cpu", max_seq_length=args.max_seq_length, show_progress=False), test)
    finally:
        shutil.rmtree(tmp / "st", ignore_errors=True)


def negminer_run(
    train_data: Any, test: Any, args: argparse.Namespace, tmp: Path, seed: int, run: tuple
) -> dict[str, Any]:
    _, loss, mode, mining, group, *rest = run
    options = rest[0] if rest else {}
    out = tmp / f"{loss}-{mode}-{seed}"
    cfg = TrainConfig(
        output_dir=str(out),
        loss=loss,
        negatives=mode,
        refresh_every=args.refresh_every,
        num_negatives=args.num_negatives,
        mining=mining,
        group_positives=group,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_seq_length=args.max_seq_length,
        cache_dir=args.cache_dir,
        device="cpu",
        seed=seed,
        show_progress=False,
        **options,
    )
    try:
        return train(train_data, cfg, validation=test).after
    finally:
        shutil.rmtree(out, ignore_errors=True)


def summary(name: str, loss: str, results: list[dict[str, Any]], zero: dict[str, Any], secs: float) -> list[Any]:
    def ms(key: str) -> str:
        xs = [r[key] for r in results]
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{statistics.mean(xs):.4f} ± {sd:.4f}"

    nd = [r["ndcg@10"] for r in results]
    return [
        name,
        loss,
        ms("ndcg@10"),
        ms("recall@100"),
        ms("mrr@10"),
        round(100 * (statistics.mean(nd) - zero["ndcg@10"]), 2),
        " ".join(f"{x:.4f}" for x in nd),
        round(secs / max(len(results), 1)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-docs", type=int, default=1500)
    ap.add_argument("--harsh", action="store_true", help="the many-positives demo variant")
    ap.add_argument("--no-st", action="store_true", help="skip the sentence-transformers recipe row")
    ap.add_argument("--max-steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-negatives", type=int, default=1)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--refresh-every", type=int, default=20)
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--rows", default=DEFAULT_ROWS, help="comma-separated row numbers of RUNS to run")
    ap.add_argument("--cache-dir", default="runs/cache")
    ap.add_argument("--json", default="runs/bench/train_quality.json")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [RUNS[int(i)] for i in args.rows.split(",")]

    data = build_demo(args.max_docs, harsh=args.harsh)
    train_data, test = data.split(0.2)
    tmp = Path(tempfile.mkdtemp(prefix="negminer-quality-"))
    header = [
        "negatives",
        "loss",
        "nDCG@10 (mean ± sd)",
        "Recall@100",
        "MRR@10",
        "nDCG@10 vs zero-shot (points)",
        "nDCG@10 per seed",
        "seconds per run",
    ]
    rows: list[list[Any]] = []
    raw: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, loss: str, results: list[dict[str, Any]], secs: float) -> None:
        raw[f"{name} | {loss}"] = results
        rows.append(summary(name, loss, results, zero, secs))
        print(rows[-1], flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"machine": machine(), "args": vars(args), "header": header, "rows": rows, "raw": raw}, indent=2)
        )

    try:
        enc = Encoder(None, device="cpu", cache_dir=args.cache_dir, max_seq_length=args.max_seq_length)
        zero = evaluate(enc, test)
        rows.append(["zero-shot", "-", f"{zero['ndcg@10']:.4f}", f"{zero['recall@100']:.4f}", "", 0.0, "", "-"])
        rows[-1][4] = f"{zero['mrr@10']:.4f}"
        if not args.no_st:
            t0 = time.perf_counter()
            record(*ST_ROW, [st_recipe(train_data, test, args, tmp, s) for s in seeds], time.perf_counter() - t0)
        for run in runs:
            t0 = time.perf_counter()
            results = [negminer_run(train_data, test, args, tmp, s, run) for s in seeds]
            record(run[0], run[1], results, time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n# Fine-tuning quality ({machine()})\n")
    print(
        f"demo data{' (harsh)' if args.harsh else ''}: train {len(train_data)} / test {len(test)} queries, "
        f"corpus {len(data.corpus_texts)}; "
        f"{args.max_steps} steps x batch {args.batch_size}, {args.num_negatives} hard negative(s), lr {args.lr}, "
        f"max_seq_length {args.max_seq_length}, refresh every {args.refresh_every} steps; seeds {args.seeds}; "
        "test split scores\n"
    )
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
