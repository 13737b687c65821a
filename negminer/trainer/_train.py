"""The training loop: sentence-transformers' trainer on mined (and refreshed) hard negatives.

Rows are the (query, positive) pairs of the training data; each row's hard negatives are looked up *when the row
is read*, from a table that a refresh replaces. So after a refresh every example still to come is trained on
negatives mined by the newer checkpoint, without restarting the trainer (its optimizer, schedule, checkpoints,
logging, resume and multi-GPU support are sentence-transformers' own).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from negminer._data import RetrievalData
from negminer._errors import ConfigError, DataError, describe
from negminer._io import atomic_path, write_json
from negminer.index._encoder import Encoder, default_model_path
from negminer.mining._config import MiningConfig
from negminer.trainer._evaluate import evaluate
from negminer.trainer._negatives import HttpNegativeSource, LocalNegativeSource, NegativeSource, NegativesUpdate
from negminer.trainer.losses import LOSSES, FalseNegativeFilter

__all__ = ["TrainConfig", "TrainResult", "train", "NEGATIVE_MODES"]

logger = logging.getLogger("negminer")

NEGATIVE_MODES = ("none", "mined", "refresh")


@dataclass
class TrainConfig:
    """Training arguments. Invalid values raise :class:`~negminer.ConfigError` naming the field."""

    output_dir: str = "runs/train"
    model: str | None = None  # folder or name; None = bundled all-MiniLM-L6-v2
    loss: str = "infonce"  # infonce | decoupled | dcl
    temperature: float = 0.05
    negatives: str = "mined"  # none (in-batch only) | mined (once, before training) | refresh (every N steps)
    refresh_every: int = 50
    num_negatives: int = 3
    mining: dict[str, Any] = field(default_factory=lambda: {"adaptive_margin": 1.0})
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    mini_batch_size: int | None = None  # GradCache
    max_seq_length: int | None = None
    loss_filter: str | None = None  # in-loss false-negative masking: absolute | relative | adaptive
    loss_filter_margin: float = 0.05
    validation_fraction: float = 0.2
    seed: int = 42
    resume: bool = False
    cache_dir: str | None = None
    device: str = "auto"
    encode_batch_size: int = 64
    index_url: str | None = None  # mine through the index service (API key from NEGMINER_API_KEY)
    index_name: str = "negminer-train"
    logging_steps: int = 10
    show_progress: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name}: {why} (got {getattr(self, name)!r})")

        if self.loss not in LOSSES:
            raise bad("loss", f"must be one of {', '.join(LOSSES)}")
        if self.negatives not in NEGATIVE_MODES:
            raise bad("negatives", f"must be one of {', '.join(NEGATIVE_MODES)}")
        if self.loss_filter is not None and self.loss_filter not in ("absolute", "relative", "adaptive"):
            raise bad("loss_filter", "must be absolute, relative or adaptive")
        for name, low in (("refresh_every", 1), ("num_negatives", 1), ("batch_size", 2), ("logging_steps", 1)):
            if getattr(self, name) < low:
                raise bad(name, f"must be at least {low}")
        if self.temperature <= 0 or self.learning_rate <= 0:
            raise bad("temperature" if self.temperature <= 0 else "learning_rate", "must be positive")
        if not 0 < self.validation_fraction < 1:
            raise bad("validation_fraction", "must be in (0, 1)")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise bad("epochs", "must be positive (or set max_steps)")
        try:
            self.mining_config()
        except ValueError as exc:
            raise ConfigError(f"mining: {describe(exc)}") from None

    def mining_config(self) -> MiningConfig:
        return MiningConfig(**{**self.mining, "num_negatives": self.num_negatives})


@dataclass
class TrainResult:
    """What a run produced: the final model folder and the evaluations over steps."""

    output_dir: str
    model_path: str
    history: list[dict[str, Any]]
    refreshes: list[dict[str, Any]]

    @property
    def before(self) -> dict[str, Any]:
        return self.history[0]

    @property
    def after(self) -> dict[str, Any]:
        return self.history[-1]


class NegativeTable:
    """Rows = (query, positive) pairs; each row's negatives come from the newest mining result."""

    def __init__(self, data: RetrievalData, num_negatives: int, seed: int) -> None:
        self.data = data
        _, self.texts, doc_of = data.dedup_corpus()
        self.positives = [sorted({doc_of[d] for d in pos}) for pos in data.positives]
        self.rows = [(q, p) for q, pos in enumerate(self.positives) for p in pos]
        self.num_negatives = num_negatives
        self.negatives: list[list[int]] = [[] for _ in data.queries]
        self.rng = np.random.default_rng(seed)
        self.version = 0
        self.filled = 0

    @property
    def known_positives(self) -> dict[int, set[int]]:
        return {q: set(p) for q, p in enumerate(self.positives)}

    def update(self, update: NegativesUpdate) -> None:
        """Take new negatives; a query left short is topped up with random non-positives."""
        if len(update.negatives) != len(self.positives):
            raise ConfigError(f"negatives for {len(update.negatives)} queries, training has {len(self.positives)}")
        filled = 0
        for q, row in enumerate(update.negatives):
            negs = [int(n) for n in row if 0 <= n < len(self.texts)]
            pos = set(self.positives[q])
            while len(negs) < self.num_negatives and len(self.texts) > len(pos) + len(negs):
                cand = int(self.rng.integers(len(self.texts)))
                if cand not in pos and cand not in negs:
                    negs.append(cand)
                    filled += 1
            self.negatives[q] = negs[: self.num_negatives]
        self.version = update.version
        self.filled = filled

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = [self.rows[i] for i in batch["row"]]
        out: dict[str, list[Any]] = {
            "anchor": [self.data.queries[q] for q, _ in rows],
            "positive": [self.texts[p] for _, p in rows],
        }
        n = self.num_negatives if any(self.negatives) else 0
        for k in range(n):
            out[f"negative_{k + 1}"] = [self.texts[self.negatives[q][k]] for q, _ in rows]
        out["label"] = [[q, p, *self.negatives[q][:n]] for q, p in rows]
        return out


def _save_model(model: Any, path: Path) -> Path:
    """Save a model folder atomically (temporary folder, then rename)."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(tmp))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def _plot(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    steps = [h["step"] for h in history]
    for key in ("ndcg@10", "recall@100", "mrr@10"):
        ax.plot(steps, [h[key] for h in history], marker="o", label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("validation score")
    ax.set_title("Validation metrics over training")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def train(
    data: RetrievalData,
    config: TrainConfig | None = None,
    *,
    validation: RetrievalData | None = None,
    source: NegativeSource | None = None,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``data`` and evaluate it on ``validation`` (or a split of ``data``).

    Everything is checked before training starts: the options, the data (non-empty splits) and the model.
    """
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    from negminer._settings import Settings

    cfg = config or TrainConfig()
    if len(data) == 0:
        raise DataError("no training queries", file=data.source)
    train_data, val_data = (data, validation) if validation is not None else data.split(cfg.validation_fraction)
    if len(train_data) == 0 or len(val_data) == 0:
        raise DataError(f"train/validation split left {len(train_data)}/{len(val_data)} queries: need more data "
                        "or a validation set", file=data.source)
    out = Path(cfg.output_dir)
    cache_dir = cfg.cache_dir or str(Settings().cache_dir)
    model_path = str(cfg.model or default_model_path())

    def encoder(path: str) -> Encoder:
        return Encoder(path, device=cfg.device, batch_size=cfg.encode_batch_size, cache_dir=cache_dir,
                       max_seq_length=cfg.max_seq_length, show_progress=cfg.show_progress)

    base = encoder(model_path)
    model = base.model  # raises ModelError before anything else happens
    if cfg.max_seq_length:
        model.max_seq_length = cfg.max_seq_length
    ckpt_dir = out / "checkpoints"
    resume_from = None
    if cfg.resume:
        found = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        if not found:
            raise ConfigError(f"resume: no checkpoint under {ckpt_dir}")
        resume_from = str(found[-1])
    out.mkdir(parents=True, exist_ok=True)

    history: list[dict[str, Any]] = []
    refreshes: list[dict[str, Any]] = []

    def record(step: int, event: str, path: str) -> None:
        t0 = time.perf_counter()
        metrics = evaluate(encoder(path), val_data)
        history.append({"step": step, "event": event, **metrics, "seconds": round(time.perf_counter() - t0, 2)})
        logger.info("step %d (%s): %s", step, event, metrics)
        write_json(out / "metrics.json", {"history": history, "refreshes": refreshes, "config": asdict(cfg)})

    start_path = resume_from or model_path
    record(0, "start", model_path)

    table = NegativeTable(train_data, cfg.num_negatives, cfg.seed)
    if source is not None:
        src: NegativeSource = source
    elif cfg.index_url:
        src = HttpNegativeSource(cfg.index_url, cfg.index_name, train_data, cfg.mining_config(),
                                 api_key=os.environ.get("NEGMINER_API_KEY"))
    else:
        src = LocalNegativeSource(train_data, cfg.mining_config(), cache_dir=cache_dir, device=cfg.device,
                                  batch_size=cfg.encode_batch_size, max_seq_length=cfg.max_seq_length,
                                  show_progress=cfg.show_progress)

    def take(step: int, started: float) -> bool:
        ready = src.poll()
        if ready is None:
            return False
        table.update(ready)
        refreshes.append({"step": step, "version": ready.version,
                          "seconds": round(time.perf_counter() - started, 2),
                          "queries_short": ready.report.get("queries_short"), "filled_randomly": table.filled})
        return True

    if cfg.negatives != "none":
        t0 = time.perf_counter()
        src.refresh(start_path)
        while not take(0, t0):  # the first negatives are needed before the first step
            time.sleep(0.5)

    dataset = Dataset.from_dict({"row": list(range(len(table.rows)))})
    dataset.set_transform(table.transform)
    fn_filter = (FalseNegativeFilter(cfg.loss_filter, cfg.loss_filter_margin)  # type: ignore[arg-type]
                 if cfg.loss_filter else None)
    loss = LOSSES[cfg.loss](model, temperature=cfg.temperature, mini_batch_size=cfg.mini_batch_size,
                            false_negative_filter=fn_filter, positives=table.known_positives)

    pending: dict[str, float] = {}

    class Refresh(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = state.global_step
            if "started" in pending and take(step, pending["started"]):
                pending.clear()
            if cfg.negatives != "refresh" or step % cfg.refresh_every or step >= state.max_steps:
                return
            path = _save_model(model, out / "refresh" / f"step-{step}")
            for old in sorted((out / "refresh").glob("step-*"), key=lambda p: int(p.name[5:]))[:-2]:
                shutil.rmtree(old, ignore_errors=True)  # keep the two newest refresh models
            record(step, "refresh", str(path))
            pending["started"] = time.perf_counter()
            src.refresh(str(path))
            if take(step, pending["started"]):
                pending.clear()

    import torch

    args = SentenceTransformerTrainingArguments(
        output_dir=str(ckpt_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_ratio,
        seed=cfg.seed, logging_steps=cfg.logging_steps, save_strategy="steps",
        save_steps=cfg.refresh_every, save_total_limit=2, report_to=[], remove_unused_columns=False,
        use_cpu=cfg.device == "cpu" or not torch.cuda.is_available(), disable_tqdm=not cfg.show_progress,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         callbacks=[Refresh()])
    trainer.train(resume_from_checkpoint=resume_from)
    final = _save_model(model, out / "model")
    record(trainer.state.global_step, "end", str(final))
    _plot(history, out / "metrics.png")
    logger.info("trained %d steps; model in %s", trainer.state.global_step, final)
    return TrainResult(str(out), str(final), history, refreshes)
