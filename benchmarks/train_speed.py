"""Training throughput of each negminer loss against sentence-transformers' MultipleNegativesRankingLoss on the
same batches, and the time of one refresh (re-encode the corpus with a new checkpoint, re-mine).

    python benchmarks/train_speed.py [--steps 6] [--batch-size 16] [--num-negatives 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, markdown_table  # noqa: E402

from negminer import Encoder, build_demo  # noqa: E402
from negminer.index import default_model_path  # noqa: E402
from negminer.mining import MiningConfig  # noqa: E402
from negminer.trainer import LOSSES, LocalNegativeSource  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-negatives", type=int, default=1)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--max-docs", type=int, default=1500)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    torch.manual_seed(0)
    data = build_demo(args.max_docs)
    b, n = args.batch_size, args.num_negatives
    batches = []
    for s in range(args.steps + 1):
        qi = [(s * b + i) % len(data) for i in range(b)]
        cols = [[data.queries[q] for q in qi], [data.corpus_texts[data.positives[q][0]] for q in qi]]
        for k in range(n):
            cols.append([data.corpus_texts[(q * 7 + k + 1) % len(data.corpus_texts)] for q in qi])
        batches.append(cols)

    def run(label: str, make_loss) -> float:
        model = SentenceTransformer(default_model_path(), device="cpu")
        model.max_seq_length = args.max_seq_length
        model.train()
        loss = make_loss(model)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
        elapsed = 0.0
        for i, cols in enumerate(batches):
            t0 = time.perf_counter()
            feats = [model.preprocess(c) for c in cols]
            value = loss(feats, None)
            value.backward()
            opt.step()
            opt.zero_grad()
            if i:  # the first step warms up
                elapsed += time.perf_counter() - t0
        return args.steps * b / elapsed

    results = [
        (
            "MultipleNegativesRankingLoss (sentence-transformers)",
            run("mnrl", lambda m: MultipleNegativesRankingLoss(m, scale=20.0)),
        )
    ]
    for name, cls in LOSSES.items():
        results.append((f"{cls.__name__}", run(name, lambda m, c=cls: c(m, temperature=0.05))))
    results.append(
        ("InfoNCELoss, GradCache mini_batch_size=4", run("cached", lambda m: LOSSES["infonce"](m, mini_batch_size=4)))
    )
    base = results[0][1]
    rows = [[name, round(v, 2), f"{v / base:.2f}x"] for name, v in results]

    tmp = Path(tempfile.mkdtemp(prefix="negminer-refresh-"))
    try:
        ckpt = tmp / "ckpt"
        SentenceTransformer(default_model_path(), device="cpu").save(str(ckpt))
        train_data, _ = data.split(0.2)
        n_docs = len(train_data.dedup_corpus()[1])
        encoder = partial(
            Encoder, cache_dir=tmp / "cache", device="cpu", max_seq_length=args.max_seq_length, show_progress=False
        )
        src = LocalNegativeSource(
            train_data, MiningConfig.recommended(num_negatives=n), encoder=encoder, show_progress=False
        )
        t0 = time.perf_counter()
        src.refresh(str(ckpt))
        cold = time.perf_counter() - t0
        src.poll()
        t0 = time.perf_counter()
        src.refresh(str(ckpt))
        warm = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"# Training speed ({machine()})\n")
    print(
        f"all-MiniLM-L6-v2, batch {b} x (query, positive, {n} negative), max_seq_length {args.max_seq_length}, "
        f"{args.steps} timed steps (forward, backward, AdamW step) on identical batches\n"
    )
    print(markdown_table(["loss", "examples/s", "vs MNRL"], rows))
    print()
    print(
        markdown_table(
            ["refresh", "seconds"],
            [
                [
                    f"new checkpoint: re-encode {n_docs} documents + {len(train_data)} queries, re-mine",
                    round(cold, 2),
                ],
                ["same checkpoint again (embedding cache)", round(warm, 2)],
            ],
        )
    )


if __name__ == "__main__":
    main()
