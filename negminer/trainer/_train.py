"""The training loop: sentence-transformers' trainer on mined (and refreshed) hard negatives.

Rows are the (query, positive) pairs of the training data; each row's hard negatives are looked up *when the row
is read*, from a table that a refresh replaces. So after a refresh every example still to come is trained on
negatives mined by the newer checkpoint, without restarting the trainer (its optimizer, schedule, checkpoints,
logging, resume and multi-GPU support are sentence-transformers' own).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from negminer._data import RetrievalData
from negminer._errors import ConfigError, DataError, describe
from negminer._io import atomic_path, write_json
from negminer.index._encoder import Encoder, default_model_path
from negminer.mining._config import MiningConfig
from negminer.trainer._evaluate import evaluate
from negminer.trainer._negatives import HttpNegativeSource, LocalNegativeSource, NegativeSource, NegativesUpdate
from negminer.trainer.losses import LOSSES, FalseNegativeFilter

__all__ = ["TrainConfig", "TrainResult", "train", "last_checkpoint", "NEGATIVE_MODES"]

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
    resume: bool | Literal["auto"] = False  # True: from the last checkpoint (required); "auto": if there is one
    save_steps: int | None = None  # checkpoint every N steps; default: refresh_every
    save_total_limit: int = 2  # checkpoints kept on disk
    cache_dir: str | None = None
    device: str = "auto"
    encode_batch_size: int = 64
    index_url: str | None = None  # mine through the index service (API key from NEGMINER_API_KEY)
    index_name: str = "negminer-train"
    index_copy_from: str | None = None  # with index_url: index_name is a copy of this index (deleted at the end)
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
        if self.resume not in (True, False, "auto"):
            raise bad("resume", "must be true, false or 'auto'")
        for name, low in (("refresh_every", 1), ("num_negatives", 1), ("batch_size", 2), ("logging_steps", 1),
                          ("save_steps", 1), ("save_total_limit", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
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
    steps: int = 0
    stopped: bool = False  # ``should_stop`` ended the run early: no final model, the last checkpoint is kept

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
        self._row_of = {t: i for i, t in enumerate(self.texts)}
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
        rows = update.negatives
        if update.texts is not None:  # negatives from a larger corpus: their texts join the table
            for t in update.texts:
                if t not in self._row_of:
                    self._row_of[t] = len(self.texts)
                    self.texts.append(t)
            local = [self._row_of[t] for t in update.texts]
            rows = [[local[n] for n in row if 0 <= n < len(local)] for row in rows]
        filled = 0
        for q, row in enumerate(rows):
            pos = set(self.positives[q])
            negs = [int(n) for n in row if 0 <= n < len(self.texts) and n not in pos]
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


def last_checkpoint(checkpoints: str | os.PathLike[str]) -> Path | None:
    """The newest *complete* trainer checkpoint under ``checkpoints`` (its ``trainer_state.json``, written last,
    parses), or None. A checkpoint cut short by a killed process is skipped."""
    found = sorted(Path(checkpoints).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
                   if p.name.split("-")[-1].isdigit() else -1)
    for path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return path
        except (OSError, ValueError):
            logger.warning("skipping incomplete checkpoint %s", path)
    return None


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
    callback: Callable[[str, dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``data`` and evaluate it on ``validation`` (or a split of ``data``).

    Everything is checked before training starts: the options, the data (non-empty splits) and the model.

    ``callback(kind, data)`` hears of the run as it goes: ``"resume"`` (step, path of the checkpoint it continues
    from), ``"log"`` (step, loss, learning_rate, epoch), ``"evaluation"`` (a history entry), ``"refresh"`` (new
    negatives in use) and ``"checkpoint"`` (step, path of a complete checkpoint). ``should_stop()`` is asked after
    every step; when it returns True the run saves a checkpoint and returns with ``stopped=True`` (no final model).
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
        found = last_checkpoint(ckpt_dir)
        if found is None and cfg.resume is True:
            raise ConfigError(f"resume: no complete checkpoint under {ckpt_dir}")
        resume_from = str(found) if found else None
    resume_step = int(Path(resume_from).name.split("-")[-1]) if resume_from else 0
    out.mkdir(parents=True, exist_ok=True)

    history: list[dict[str, Any]] = []
    refreshes: list[dict[str, Any]] = []
    if resume_from and (out / "metrics.json").exists():  # keep what the interrupted run measured up to its checkpoint
        try:
            old = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
            history = [h for h in old.get("history", []) if h["step"] <= resume_step]
            refreshes = [r for r in old.get("refreshes", []) if r["step"] <= resume_step]
        except (OSError, ValueError, KeyError, TypeError):
            history, refreshes = [], []

    def emit(kind: str, payload: dict[str, Any]) -> None:
        if callback is not None:
            callback(kind, payload)

    def record(step: int, event: str, path: str) -> None:
        t0 = time.perf_counter()
        metrics = evaluate(encoder(path), val_data)
        entry = {"step": step, "event": event, **metrics, "seconds": round(time.perf_counter() - t0, 2)}
        history.append(entry)
        logger.info("step %d (%s): %s", step, event, metrics)
        write_json(out / "metrics.json", {"history": history, "refreshes": refreshes, "config": asdict(cfg)})
        emit("evaluation", entry)

    start_path = resume_from or model_path
    if resume_from:
        emit("resume", {"step": resume_step, "path": resume_from})
    if not history:
        record(0, "start", model_path)

    table = NegativeTable(train_data, cfg.num_negatives, cfg.seed)
    if source is not None:
        src: NegativeSource = source
    elif cfg.index_url:
        src = HttpNegativeSource(cfg.index_url, cfg.index_name, train_data, cfg.mining_config(),
                                 api_key=os.environ.get("NEGMINER_API_KEY"), from_index=cfg.index_copy_from,
                                 delete_on_close=cfg.index_copy_from is not None)
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
        emit("refresh", refreshes[-1])
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
    stopped: list[int] = []

    class Observe(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            logs = logs or {}
            if "loss" in logs:
                emit("log", {"step": state.global_step, "loss": float(logs["loss"]),
                             "learning_rate": float(logs.get("learning_rate", 0.0)),
                             "epoch": round(float(logs.get("epoch") or 0.0), 4)})

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            emit("checkpoint", {"step": state.global_step,
                                "path": str(ckpt_dir / f"checkpoint-{state.global_step}")})

    class Refresh(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = state.global_step
            if should_stop is not None and step < state.max_steps and should_stop():
                stopped.append(step)
                control.should_training_stop = True
                control.should_save = True
                return
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
        save_steps=cfg.save_steps or cfg.refresh_every, save_total_limit=cfg.save_total_limit, report_to=[],
        remove_unused_columns=False,
        use_cpu=cfg.device == "cpu" or not torch.cuda.is_available(), disable_tqdm=not cfg.show_progress,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         callbacks=[Refresh(), Observe()])
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        if source is None and hasattr(src, "close"):
            src.close()
    steps = trainer.state.global_step
    if stopped:
        logger.info("stopped at step %d; last checkpoint in %s", steps, ckpt_dir)
        return TrainResult(str(out), "", history, refreshes, steps=steps, stopped=True)
    final = _save_model(model, out / "model")
    record(steps, "end", str(final))
    _plot(history, out / "metrics.png")
    logger.info("trained %d steps; model in %s", steps, final)
    return TrainResult(str(out), str(final), history, refreshes, steps=steps)
