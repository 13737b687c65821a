"""Training throughput of each negminer loss against sentence-transformers' MultipleNegativesRankingLoss on the
same batches, the time of one refresh (re-encode the corpus with a new checkpoint, re-mine), and negminer's trainer
(``negminer train``, each run its own process) in fp32 against bf16, LoRA against every weight, and one process
against two (torchrun, the same global batch): examples/s, tokens/s and peak memory as ratios to fp32 on one process.

    python benchmarks/train_speed.py [--steps 6] [--batch-size 16] [--num-negatives 1] [--trainer-steps 12]
        [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
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
    ap.add_argument("--trainer-steps", type=int, default=12, help="steps of each negminer train run (0: skip them)")
    ap.add_argument("--device", default="cpu", help="device of the negminer train runs (cpu, cuda)")
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

    trainer_rows = trainer_runs(args) if args.trainer_steps else []

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
    if trainer_rows:
        print()
        print(
            markdown_table(
                ["negminer train", "examples/s", "tokens/s", "peak memory (MiB)", "vs fp32, 1 process"],
                trainer_rows,
                title=f"negminer train, all-MiniLM-L6-v2, {args.trainer_steps} steps x batch {args.batch_size} "
                f"(global), in-batch negatives, max_seq_length {args.max_seq_length}, device {args.device}",
            )
        )


# -- negminer's trainer in its own processes -------------------------------------------------------------------
TRAINER_RUNS = [
    ("fp32, every weight, 1 process", 1, []),
    ("bf16 (autocast), every weight, 1 process", 1, ["--bf16"]),
    ("fp32, LoRA r=16 on the attention projections", 1, ["--lora-r", "16"]),
    ("fp32, every weight, 2 processes (torchrun)", 2, []),
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trainer_runs(args: argparse.Namespace) -> list[list[object]]:
    """Each configuration as a real ``negminer train`` (torchrun for two processes), timed by the trainer itself
    (the training loop's seconds, metrics.json ``speed``); memory is each run's peak resident set (rank 0's)."""
    tmp = Path(tempfile.mkdtemp(prefix="negminer-train-speed-"))
    try:
        data = build_demo(400)
        with open(tmp / "pairs.jsonl", "w", encoding="utf-8") as fh:
            for q, pos in zip(data.queries, data.positives):
                fh.write(json.dumps({"query": q, "positive": data.corpus_texts[pos[0]]}) + "\n")
        env = {**os.environ, "NEGMINER_DEVICE": args.device, "HF_HUB_OFFLINE": "1"}
        measured = []
        for label, processes, flags in TRAINER_RUNS:
            out = tmp / f"run{len(measured)}"
            launcher = [sys.executable, "-m", "negminer.cli"]
            if processes > 1:
                launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}"]
                launcher += [f"--master-port={_port()}", "-m", "negminer.cli"]
            cmd = [*launcher, "train", str(tmp / "pairs.jsonl"), "-o", str(out), "--negatives", "none"]
            cmd += ["--max-steps", str(args.trainer_steps), "--batch-size", str(args.batch_size // processes)]
            cmd += ["--max-seq-length", str(args.max_seq_length), "--cache-dir", str(tmp / "cache"), *flags]
            print(f"{label}: {' '.join(cmd[cmd.index('train') :])}", file=sys.stderr, flush=True)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
            measured.append((label, json.loads((out / "metrics.json").read_text())["speed"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def memory(speed: dict) -> float:  # the GPU's allocator peak on CUDA, else the process's resident peak
        return float(speed.get("cuda_peak_mib") or speed["peak_rss_mib"])

    base = measured[0][1]
    rows: list[list[object]] = []
    for label, speed in measured:
        ratio = (
            f"{speed['examples_per_second'] / base['examples_per_second']:.2f}x speed, "
            f"{memory(speed) / memory(base):.2f}x memory"
        )
        rows.append([label, speed["examples_per_second"], speed["tokens_per_second"], memory(speed), ratio])
    return rows


if __name__ == "__main__":
    main()
