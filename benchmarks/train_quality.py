"""Retrieval quality after fine-tuning, per negatives mode and loss, against sentence-transformers' own recipe.

On the demo data (train / test split by query), every run fine-tunes all-MiniLM-L6-v2 with the same steps, batch
size, learning rate, sequence length and seed, then scores the test split (nDCG@10, Recall@100, MRR@10 against
the whole corpus). The sentence-transformers recipe is ``mine_hard_negatives(relative_margin=0.05)`` then
``MultipleNegativesRankingLoss`` in its own trainer.

    python benchmarks/train_quality.py [--max-steps 40] [--batch-size 16] [--num-negatives 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table  # noqa: E402

from negminer import Encoder, build_demo  # noqa: E402
from negminer.index import default_model_path  # noqa: E402
from negminer.mining import RECOMMENDED_FILTER  # noqa: E402
from negminer.trainer import TrainConfig, evaluate, train  # noqa: E402

RUNS = [
    ("in-batch only", "none", {}),
    ("mined, relative 0.05", "mined", {"relative_margin": 0.05}),
    ("mined, adaptive 1.0", "mined", {"adaptive_margin": 1.0}),
    ("refreshed, adaptive 1.0", "refresh", {"adaptive_margin": 1.0}),
]


def st_recipe(train_data, test, args, tmp: Path) -> dict:
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from sentence_transformers.util import mine_hard_negatives

    model = SentenceTransformer(default_model_path(), device="cpu")
    model.max_seq_length = args.max_seq_length
    ds = mine_hard_negatives(
        train_data.to_pairs_dataset(),
        model,
        relative_margin=0.05,
        num_negatives=args.num_negatives,
        output_format="n-tuple",
        use_faiss=True,
        verbose=False,
        batch_size=64,
    )
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(tmp / "st"),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=0.1,
        seed=42,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    SentenceTransformerTrainer(
        model=model, args=targs, train_dataset=ds, loss=MultipleNegativesRankingLoss(model, scale=20.0)
    ).train()
    model.save(str(tmp / "st-model"))
    return evaluate(
        Encoder(str(tmp / "st-model"), device="cpu", max_seq_length=args.max_seq_length, show_progress=False), test
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-docs", type=int, default=1500)
    ap.add_argument("--max-steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-negatives", type=int, default=1)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--refresh-every", type=int, default=20)
    ap.add_argument("--losses", default="infonce,decoupled,dcl")
    ap.add_argument("--cache-dir", default="runs/cache")
    ap.add_argument("--json", default="runs/bench/train_quality.json")
    args = ap.parse_args()

    data = build_demo(args.max_docs)
    train_data, test = data.split(0.2)
    tmp = Path(tempfile.mkdtemp(prefix="negminer-quality-"))
    rows: list[list[object]] = []
    try:
        zero = evaluate(
            Encoder(
                None, device="cpu", cache_dir=args.cache_dir, max_seq_length=args.max_seq_length, show_progress=False
            ),
            test,
        )
        rows.append(["zero-shot", "-", zero["ndcg@10"], zero["recall@100"], zero["mrr@10"], 0.0, "-"])
        print(rows[-1], flush=True)
        for loss in args.losses.split(","):
            for name, mode, mining in RUNS:
                t0 = time.perf_counter()
                cfg = TrainConfig(
                    output_dir=str(tmp / f"{loss}-{mode}"),
                    loss=loss,
                    negatives=mode,
                    refresh_every=args.refresh_every,
                    num_negatives=args.num_negatives,
                    mining=mining or RECOMMENDED_FILTER,
                    max_steps=args.max_steps,
                    batch_size=args.batch_size,
                    learning_rate=args.lr,
                    max_seq_length=args.max_seq_length,
                    cache_dir=args.cache_dir,
                    device="cpu",
                    show_progress=False,
                )
                res = train(train_data, cfg, validation=test)
                a = res.after
                rows.append(
                    [
                        name,
                        loss,
                        a["ndcg@10"],
                        a["recall@100"],
                        a["mrr@10"],
                        round(100 * (a["ndcg@10"] - zero["ndcg@10"]), 2),
                        round(time.perf_counter() - t0),
                    ]
                )
                print(rows[-1], flush=True)
                shutil.rmtree(tmp / f"{loss}-{mode}", ignore_errors=True)
        t0 = time.perf_counter()
        st = st_recipe(train_data, test, args, tmp)
        rows.append(
            [
                "sentence-transformers recipe (relative 0.05 + MNRL)",
                "mnrl",
                st["ndcg@10"],
                st["recall@100"],
                st["mrr@10"],
                round(100 * (st["ndcg@10"] - zero["ndcg@10"]), 2),
                round(time.perf_counter() - t0),
            ]
        )
        print(rows[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n# Fine-tuning quality ({machine()})\n")
    print(
        f"demo data: train {len(train_data)} / test {len(test)} queries, corpus {len(data.corpus_texts)}; "
        f"{args.max_steps} steps x batch {args.batch_size}, {args.num_negatives} hard negative(s), lr {args.lr}, "
        f"max_seq_length {args.max_seq_length}, refresh every {args.refresh_every} steps; test split scores\n"
    )
    print(
        markdown_table(
            ["negatives", "loss", "nDCG@10", "Recall@100", "MRR@10", "nDCG@10 vs zero-shot (points)", "seconds"], rows
        )
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
