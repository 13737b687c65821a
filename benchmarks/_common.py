"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def machine() -> str:
    import torch

    return (
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} CPU cores, "
        f"{platform.machine()}, CUDA {'yes' if torch.cuda.is_available() else 'no'}"
    )


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def st_recipe(
    pairs: Any,
    *,
    corpus: list[str] | None,
    model_path: str,
    out: Path,
    max_seq_length: int | None,
    num_negatives: int,
    max_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> tuple[Path, int]:
    """sentence-transformers' recipe as its users run it: ``mine_hard_negatives(relative_margin=0.05)`` on the
    (anchor, positive) ``pairs`` dataset, then MultipleNegativesRankingLoss (scale 20) in its own trainer. Saves
    the model to ``out / "model"``; returns (that folder, the rows the mining kept). Zero rows: the model is saved
    untrained, which is what the recipe gives its user."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from sentence_transformers.util import mine_hard_negatives

    model = SentenceTransformer(model_path, device="cpu")
    if max_seq_length:
        model.max_seq_length = max_seq_length
    ds = mine_hard_negatives(
        pairs,
        model,
        corpus=corpus,
        relative_margin=0.05,
        num_negatives=num_negatives,
        output_format="n-tuple",
        use_faiss=True,
        verbose=False,
        batch_size=64,
    )
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st"),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        warmup_steps=0.1,
        seed=seed,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    if len(ds):
        loss = MultipleNegativesRankingLoss(model, scale=20.0)
        SentenceTransformerTrainer(model=model, args=targs, train_dataset=ds, loss=loss).train()
    model.save(str(out / "model"))
    return out / "model", len(ds)
