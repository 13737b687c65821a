"""The training loop: sentence-transformers' trainer on mined (and refreshed) hard negatives.

Rows are the (query, positive) pairs of the training data; each row's hard negatives are looked up *when the row
is read*, from a table that a refresh replaces. So after a refresh every example still to come is trained on
negatives mined by the newer checkpoint, without restarting the trainer (its optimizer, schedule, checkpoints,
logging, resume and multi-GPU support are sentence-transformers' own).

The pieces: :func:`train` prepares a :class:`_Run` (the state one run shares: options, evaluation data, history,
negatives table and source, listener), then hands sentence-transformers' trainer two callbacks that act on it:
:class:`_ObserveCallback` (logs and checkpoints, told to the listener) and :class:`_RefreshCallback` (stop requests,
refreshes of the negatives). A :class:`~negminer.trainer.TrainListener` hears of the run as it goes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from negminer._data import VALIDATION_SALT, RetrievalData
from negminer._errors import ConfigError, DataError, NonFiniteError
from negminer._io import atomic_path, write_json
from negminer._settings import default_cache_dir
from negminer._vocab import NegativesMode
from negminer.index import Encoder, model_ref
from negminer.mining import MiningConfig
from negminer.trainer._config import TrainConfig
from negminer.trainer._dist import Dist, check_devices, check_hardware, current_process, on_cpu
from negminer.trainer._evaluate import evaluate
from negminer.trainer._events import (
    CheckpointEvent,
    EvaluationEvent,
    LogEvent,
    RefreshEvent,
    ResumeEvent,
    TrainListener,
)
from negminer.trainer._model import ModelInfo, model_soup, prepare_model, save_trained, trained_line
from negminer.trainer._negatives import LocalNegativeSource, NegativeSource, NegativeSourceFactory, NegativesUpdate
from negminer.trainer.losses import LOSSES, FalseNegativeFilter

__all__ = ["TrainResult", "last_checkpoint", "train"]

logger = logging.getLogger("negminer")


class _Silent(TrainListener):
    pass


@dataclass
class TrainResult:
    """What a run produced: the final model folder and the evaluations over steps."""

    output_dir: str
    model_path: str
    history: list[dict[str, Any]]
    refreshes: list[dict[str, Any]]
    steps: int = 0
    stopped: bool = False  # the listener stopped the run early: no final model, the last checkpoint is kept
    tokens: int = 0  # input tokens trained on (padding excluded), over every resumed attempt
    positives_masked: int = 0  # in-batch candidates kept out of a query's negatives as known positives (this attempt)
    model: dict[str, Any] = field(default_factory=dict)  # parameters, trainable ones, LoRA, what was saved
    speed: dict[str, Any] = field(default_factory=dict)  # training loop seconds, examples/s, tokens/s, peak memory

    def model_summary(self) -> str:
        """One line: the parameters trained (of all), LoRA's settings, and what was saved with its size."""
        m = self.model
        if not m:
            return ""
        line = trained_line(m["parameters"], m["trainable_parameters"], m.get("lora"))
        saved = m.get("saved") or {}
        if saved:
            kind = {"adapter": "the adapter", "merged": "the model, adapter merged", "soup": "a soup of checkpoints"}
            size, unit = float(saved["bytes"]), "bytes"
            for bigger in ("KiB", "MiB", "GiB"):
                if size < 1024:
                    break
                size, unit = size / 1024, bigger
            line += f"; saved {kind.get(saved['kind'], 'the model')} ({size:.1f} {unit})"
        return line

    @property
    def before(self) -> dict[str, Any]:
        return self.history[0]

    @property
    def after(self) -> dict[str, Any]:
        return self.history[-1]


class NegativeTable:
    """Rows = (query, positive) pairs; each row's negatives come from the newest mining result."""

    def __init__(self, data: RetrievalData, num_negatives: int, seed: int, max_pairs: int | None = None) -> None:
        self.data = data
        _, self.texts, doc_of = data.dedup_corpus()
        self._row_of = {t: i for i, t in enumerate(self.texts)}
        listed = [list(dict.fromkeys(doc_of[d] for d in pos)) for pos in data.positives]
        self.positives = [sorted(pos) for pos in listed]
        # rows: the first max_pairs positives of each query as listed; every positive stays known (masked)
        self.rows = [(q, p) for q, pos in enumerate(listed) for p in sorted(pos[:max_pairs] if max_pairs else pos)]
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
    found = sorted(
        Path(checkpoints).glob("checkpoint-*"),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
    )
    for path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return path
        except (OSError, ValueError):
            logger.warning("skipping incomplete checkpoint %s", path)
    return None


def _plot(
    history: list[dict[str, Any]],
    losses: list[dict[str, float]],
    refreshes: list[dict[str, Any]],
    path: Path,
    evaluated_on: str,
) -> None:
    """metrics.png: the training loss by step (left) and the retrieval metrics on ``evaluated_on`` (right), the
    steps where refreshed negatives arrived marked on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    if losses:
        left.plot(
            [x["step"] for x in losses], [x["loss"] for x in losses], "o-", color="tab:gray", label="training loss"
        )
    else:
        left.text(0.5, 0.5, "no loss logged (fewer steps than logging_steps)", ha="center", transform=left.transAxes)
    left.set_xlabel("step")
    left.set_ylabel("training loss")
    left.set_title("Training loss")
    steps = [h["step"] for h in history]
    for key in ("ndcg@10", "recall@100", "mrr@10"):
        if all(key in h for h in history):
            right.plot(steps, [h[key] for h in history], marker="o", label=key)
    right.set_xlabel("step")
    right.set_ylabel("score")
    right.set_title(f"Retrieval on {evaluated_on}")
    for i, r in enumerate(refreshes):
        if r["step"] > 0:
            for ax in (left, right):
                ax.axvline(r["step"], color="tab:green", ls=":", lw=1, label="new negatives" if i < 2 else None)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            unique = dict(zip(labels, handles))
            ax.legend(unique.values(), unique.keys(), fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _check_finite(model: Any) -> None:
    """A model with NaN or infinite weights is never saved (:class:`~negminer.NonFiniteError`,
    ``non_finite_model``)."""
    import torch

    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise NonFiniteError(
            "the trained model's weights hold NaN or infinite values; it was not saved (the last checkpoint is kept)",
            code="non_finite_model",
        )


def finite_weights(path: str | Path) -> bool:
    """Whether every weight in the model folder ``path`` (its ``*.safetensors`` files, at any depth) is finite:
    what a checkpoint must pass before it is offered as a model."""
    import torch
    from safetensors.torch import load_file

    for f in Path(path).rglob("*.safetensors"):
        for tensor in load_file(str(f)).values():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return False
    return True


# -- one run's shared state ------------------------------------------------------------------------------------------
def spare_devices(device: str) -> list[str]:
    """The CUDA devices a single-device training run on ``device`` leaves free (none on CPU or with one GPU)."""
    import torch

    n = torch.cuda.device_count()
    if n < 2 or not (device in ("auto", "cuda") or device.startswith("cuda:")):
        return []
    used = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    return [f"cuda:{i}" for i in range(n) if i != used]


@dataclass
class _Run:
    """What the pieces of one run share."""

    cfg: TrainConfig
    out: Path
    val_data: RetrievalData
    cache_dir: str
    listener: TrainListener
    history: list[dict[str, Any]] = field(default_factory=list)
    refreshes: list[dict[str, Any]] = field(default_factory=list)
    table: NegativeTable | None = None
    source: NegativeSource | None = None
    refresh_started: float | None = None  # a refresh was asked for and has not arrived yet
    stopped_at: int | None = None
    losses: list[dict[str, float]] = field(default_factory=list)  # {step, loss} as logged
    trainer: Any = None  # sentence-transformers' trainer, once it exists: negminer's metrics go to its trackers
    tracking: bool = False  # the trackers have started (the trainer's on_train_begin)
    pending: list[dict[str, float]] = field(default_factory=list)  # metrics logged before the trackers started
    prompts: tuple[str | None, str | None] = (None, None)  # (query, document): what every encoding puts first
    dist: Dist = field(default_factory=Dist)
    speed: dict[str, Any] = field(default_factory=dict)  # the training loop's time, throughput and peak memory

    def track(self, metrics: dict[str, float]) -> None:
        """Log negminer's own metrics to the run's trackers (``report_to``), through the trainer."""
        if not self.cfg.report_to:
            return
        if not self.tracking:
            self.pending.append(metrics)
            return
        control = self.trainer.control
        due = control.should_log  # the trainer's handler clears it on every log: the step's loss log stays due
        self.trainer.log(metrics)
        control.should_log = due

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def encoder(self, path: str) -> Encoder:
        """The encoder of a checkpoint with this run's device, cache, batch size and length (evaluation, mining)."""
        cfg = self.cfg
        return Encoder(
            path,
            device=cfg.device,
            batch_size=cfg.encode_batch_size,
            cache_dir=self.cache_dir,
            max_seq_length=cfg.max_seq_length,
            show_progress=self.show_progress,
        )

    @property
    def show_progress(self) -> bool:
        """Encoding and mining bars before training only: once the training bar runs, they would cut into it."""
        return self.cfg.show_progress and self.trainer is None

    def refresh_encoder(self, path: str) -> Encoder:
        """The encoder that re-mines negatives: on the GPUs training does not use when there are any (one, or a
        multi-process pool over several), so refreshing does not take the training device's memory and time."""
        spare = spare_devices(self.cfg.device)
        if not spare:
            return self.encoder(path)
        cfg = self.cfg
        return Encoder(
            path,
            device=spare[0],
            batch_size=cfg.encode_batch_size,
            cache_dir=self.cache_dir,
            max_seq_length=cfg.max_seq_length,
            show_progress=self.show_progress,
            devices=spare if len(spare) > 1 else None,
        )

    def save_metrics(self) -> None:
        write_json(
            self.out / "metrics.json",
            {
                "history": self.history,
                "refreshes": self.refreshes,
                "losses": self.losses,
                "speed": self.speed,
                "config": self.cfg.model_dump(mode="json"),
            },
        )

    def evaluate(self, step: int, event: str, model_path: str) -> None:
        """Evaluate the model in ``model_path`` on the validation data; record and announce it."""
        t0 = time.perf_counter()
        query_prompt, document_prompt = self.prompts
        metrics = evaluate(
            self.encoder(model_path), self.val_data, query_prompt=query_prompt, document_prompt=document_prompt
        )
        done = EvaluationEvent(step, event, metrics, round(time.perf_counter() - t0, 2))
        self.history.append(done.entry())
        logger.info("step %d (%s): %s", step, event, metrics)
        self.save_metrics()
        self.track({f"eval_{k}": v for k, v in metrics.items()})
        self.listener.on_evaluation(done)

    def take(self, step: int) -> bool:
        """Put the source's new negatives into the table, if it has any."""
        assert self.source is not None and self.table is not None and self.refresh_started is not None
        ready = self.source.poll()
        if ready is None:
            return False
        self.table.update(ready)
        self.share_table()
        done = RefreshEvent(
            step,
            ready.version,
            round(time.perf_counter() - self.refresh_started, 2),
            ready.report.get("queries_short"),
            self.table.filled,
        )
        self.refreshes.append(asdict(done))
        self.track({"refresh_version": float(done.version), "refresh_seconds": done.seconds})
        self.refresh_started = None
        self.listener.on_refresh(done)
        return True

    def refresh(self, step: int, checkpoint: str) -> None:
        """Ask the source for negatives mined with ``checkpoint``; take them now if they are ready."""
        assert self.source is not None
        self.refresh_started = time.perf_counter()
        self.source.refresh(checkpoint)
        self.take(step)

    def wait(self, step: int) -> None:
        """Wait for the refresh in flight (the first negatives; every refresh when training on several processes,
        whose tables must change at the same step)."""
        while self.refresh_started is not None:
            time.sleep(0.5)
            self.take(step)

    def share_table(self) -> None:
        """Several processes: rank 0's negatives table on every rank (rank 0 mines; all train on its negatives)."""
        if not self.dist.active or self.table is None:
            return
        table = self.table
        state = self.dist.share((table.texts, table.negatives, table.version, table.filled) if self.dist.main else None)
        if not self.dist.main:
            table.texts, table.negatives, table.version, table.filled = state
            table._row_of = {t: i for i, t in enumerate(table.texts)}

    def mining_config(self) -> MiningConfig:
        """The run's mining options with the prompts training uses, as text (every path encodes the same)."""
        query_prompt, document_prompt = self.prompts
        return self.cfg.mining_config().model_copy(
            update={
                "query_prompt": query_prompt,
                "query_prompt_name": None,
                "corpus_prompt": document_prompt,
                "corpus_prompt_name": None,
            }
        )


class _ObserveCallback(TrainerCallback):
    """Tells the listener of the trainer's logs and checkpoints."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.run.losses.append({"step": state.global_step, "loss": float(logs["loss"])})
            self.run.listener.on_log(
                LogEvent(
                    state.global_step,
                    float(logs["loss"]),
                    float(logs.get("learning_rate", 0.0)),
                    round(float(logs.get("epoch") or 0.0), 4),
                    int(state.max_steps or 0),
                )
            )

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        """The trackers start before this callback (they come first): log what was measured before training."""
        run = self.run
        run.tracking = True
        pending, run.pending = run.pending, []
        for metrics in pending:
            run.track(metrics)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        step = state.global_step
        self.run.listener.on_checkpoint(CheckpointEvent(step, str(self.run.ckpt_dir / f"checkpoint-{step}")))


class _TrainingBar(TrainerCallback):
    """One progress bar for the run, the last loss beside it; in place of transformers' bar and printer, which
    also print each log as a raw dict."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.bar: Any = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        from tqdm.auto import tqdm

        if self.run.cfg.show_progress and self.run.dist.main:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="Training", unit="step")

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _RefreshCallback(TrainerCallback):
    """After each step: stop when the listener asks, take negatives that arrived, refresh every N steps.

    On several processes rank 0 decides (stop, refresh) and the others follow at the same step; a refresh is then
    waited for, so every rank swaps its table at the same step."""

    def __init__(self, run: _Run, model: Any, loss: Any) -> None:
        self.run = run
        self.model = model
        self.loss = loss
        self.counted = 0

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.loss.step = state.global_step

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        run, step = self.run, state.global_step
        # input tokens, kept in the trainer state (so in checkpoints: a resumed run goes on counting)
        state.num_input_tokens_seen = int(state.num_input_tokens_seen or 0) + self.loss.tokens_seen - self.counted
        self.counted = self.loss.tokens_seen
        stop = step < state.max_steps and run.dist.main and run.listener.should_stop()
        if run.dist.share(stop):
            run.stopped_at = step
            control.should_training_stop = True
            control.should_save = True
            return
        if run.dist.active:
            self._refresh_together(step, state)
            return
        if run.refresh_started is not None and not run.take(step):
            return  # one refresh in flight at a time: its model stays on disk until the source has used it
        if self._due(step, state):
            self._refresh(step)

    def _due(self, step: int, state: TrainerState) -> bool:
        """Whether this step re-mines the negatives (every refresh_every steps, not at the last)."""
        cfg = self.run.cfg
        return cfg.negatives == NegativesMode.refresh and step % cfg.refresh_every == 0 and step < state.max_steps

    def _refresh(self, step: int) -> None:
        run = self.run
        folder = run.out / "refresh"
        path = folder / f"step-{step}"
        _check_finite(self.model)
        save_trained(self.model, path, merge=False)  # a LoRA run saves its adapter: base + adapter encode
        for old in sorted(folder.glob("step-*"), key=lambda p: int(p.name[5:]))[:-2]:
            shutil.rmtree(old, ignore_errors=True)  # keep the two newest refresh models
        run.evaluate(step, "refresh", str(path))
        run.refresh(step, str(path))

    def _refresh_together(self, step: int, state: TrainerState) -> None:
        run = self.run
        if not self._due(step, state):
            return
        if run.dist.main:
            self._refresh(step)
            run.wait(step)  # shares the table when it arrives
        else:
            run.share_table()


# -- the pieces of train() ------------------------------------------------------------------------------------------
def _splits(
    data: RetrievalData,
    cfg: TrainConfig,
    validation: RetrievalData | None,
) -> tuple[RetrievalData, RetrievalData]:
    if len(data) == 0:
        raise DataError("no training queries", file=data.source)
    if validation is not None:
        train_data, val_data = data, validation
    else:
        train_data, val_data = data.split(cfg.validation_fraction, salt=VALIDATION_SALT)
    if len(train_data) == 0 or len(val_data) == 0:
        held = "validation" if len(val_data) == 0 else "training"
        how = (
            "the validation data holds no queries"
            if validation is not None
            else f"holding out validation_fraction={cfg.validation_fraction:g} of its {len(data)} queries left "
            f"{len(train_data)} for training and {len(val_data)} for validation"
        )
        raise DataError(
            f"no {held} queries: {how}. Give a validation file (--validation, validation_file), more queries, or "
            "another validation_fraction",
            file=data.source,
        )
    return train_data, val_data


def _resume_point(cfg: TrainConfig, ckpt_dir: Path) -> tuple[str | None, int]:
    """(checkpoint to resume from, its step), or (None, 0)."""
    if not cfg.resume:
        return None, 0
    found = last_checkpoint(ckpt_dir)
    if found is None:
        if cfg.resume is True:
            raise ConfigError(f"no complete checkpoint under {ckpt_dir}", param="resume")
        return None, 0
    return str(found), int(found.name.split("-")[-1])


def _earlier_metrics(out: Path, step: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, float]]]:
    """What an interrupted run measured up to the checkpoint it resumes from."""
    try:
        old = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        return (
            [h for h in old.get("history", []) if h["step"] <= step],
            [r for r in old.get("refreshes", []) if r["step"] <= step],
            [x for x in old.get("losses", []) if x["step"] <= step],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return [], [], []


def _source(
    given: NegativeSource | NegativeSourceFactory | None, train_data: RetrievalData, run: _Run
) -> tuple[NegativeSource, bool]:
    """(the run's negative source, whether the run owns it and closes it at the end)."""
    cfg = run.cfg
    if isinstance(given, NegativeSource):
        return given, False
    if given is not None:
        return given(train_data, run.mining_config()), True
    return LocalNegativeSource(
        train_data,
        run.mining_config(),
        encoder=run.refresh_encoder,
        show_progress=cfg.show_progress,
        ray=cfg.ray,
    ), True


def _training_args(cfg: TrainConfig, ckpt_dir: Path, table: NegativeTable, prompts: dict[str, str]) -> Any:
    """sentence-transformers' training arguments: negminer's own options, the typed trainer options, then
    ``trainer_args`` (checked when the config was made: no unknown names, none of negminer's)."""
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from negminer.trainer._config import TYPED_TRAINER_ARGS, trainer_arg_names
    from negminer.trainer._sampler import QueryGroupBatchSampler

    sampler: Any = BatchSamplers.BATCH_SAMPLER
    if cfg.group_positives:
        sampler = functools.partial(QueryGroupBatchSampler, queries=[q for q, _ in table.rows])
    typed = {name: getattr(cfg, name) for name in TYPED_TRAINER_ARGS}
    if "activation_checkpointing" in trainer_arg_names():  # transformers 5's name of gradient_checkpointing
        typed["activation_checkpointing"] = typed.pop("gradient_checkpointing")
    try:
        return SentenceTransformerTrainingArguments(
            output_dir=str(ckpt_dir),
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            warmup_steps=cfg.warmup(),
            seed=cfg.seed,
            logging_steps=cfg.logging_steps,
            save_strategy="steps",
            save_steps=cfg.save_steps or cfg.refresh_every,
            save_total_limit=max(cfg.save_total_limit, cfg.soup_last or 0),
            report_to=cfg.report_to or "none",
            remove_unused_columns=False,
            use_cpu=on_cpu(cfg.device),
            disable_tqdm=not cfg.show_progress,
            batch_sampler=sampler,
            prompts=prompts or None,
            **typed,
            **cfg.trainer_args,
        )
    except (ValueError, TypeError, ImportError) as exc:  # transformers' own checks (hardware, combinations)
        raise ConfigError(f"the trainer refused the options: {exc}", param="trainer_args") from exc


def _resolve_prompts(encoder: Encoder, cfg: TrainConfig) -> tuple[str | None, str | None]:
    """The (query, document) prompts of the run: the mining options' (text or the model's prompt of that name),
    else the model's own query / document prompts."""
    m = cfg.mining
    sides = (
        ("query", m.query_prompt, m.query_prompt_name, "query_prompt_name"),
        ("document", m.corpus_prompt, m.corpus_prompt_name, "corpus_prompt_name"),
    )
    found: list[str | None] = []
    for kind, prompt, name, option in sides:
        try:
            found.append(encoder.resolve_prompt(kind, prompt, name))  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(exc.message, param=f"mining.{option}") from exc
    return found[0], found[1]


def _trainer_class() -> Any:
    """sentence-transformers' trainer, resuming a LoRA run from its adapter checkpoint through peft."""
    from sentence_transformers import SentenceTransformerTrainer

    class Trainer(SentenceTransformerTrainer):
        def _load_from_checkpoint(self, checkpoint_path: str, model: Any = None) -> None:
            inner = self.model[0].model if len(self.model) and hasattr(self.model[0], "model") else None
            if inner is None or not hasattr(inner, "peft_config"):
                return super()._load_from_checkpoint(checkpoint_path)
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(inner, load_file(str(Path(checkpoint_path) / "adapter_model.safetensors")))

    return Trainer


def train(
    data: RetrievalData,
    config: TrainConfig | None = None,
    *,
    validation: RetrievalData | None = None,
    source: NegativeSource | NegativeSourceFactory | None = None,
    listener: TrainListener | None = None,
    evaluated_on: str | None = None,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``data`` and evaluate it on ``validation`` (or a split of ``data``).

    Everything is checked before training starts: the options, the hardware, the data (non-empty splits), the
    model and the prompts. The query and document prompts (the mining options', else the model's own) are what
    training, evaluation, mining and refreshes put before each text, and the saved model keeps them as its
    ``query`` and ``document`` prompts.

    ``source``: where negatives come from: a :class:`NegativeSource` (the caller's: it is not closed), a
    :data:`NegativeSourceFactory` called with the training split and mining options (for example the index
    service's ``negminer.client.HttpNegativeSource.factory(...)``), or None: mined in this process.
    ``listener`` hears of resume, logs, evaluations, refreshes and checkpoints, and may stop the run.
    ``evaluated_on`` names the evaluation data in metrics.png (default: what ``validation`` is).
    Under torchrun each process trains on its share of the batches (see :mod:`negminer.trainer._dist`).
    """
    from datasets import Dataset

    cfg = config or TrainConfig()
    dist = current_process()
    train_data, val_data = _splits(data, cfg, validation)
    check_hardware(cfg.bf16, cfg.fp16, cfg.device)
    check_devices(cfg.devices)
    out = Path(cfg.output_dir)
    run = _Run(
        cfg,
        out,
        val_data,
        cfg.cache_dir or str(default_cache_dir()),
        (listener or _Silent()) if dist.main else _Silent(),
        dist=dist,
    )
    model_path = model_ref(cfg.model)
    encoder = run.encoder(model_path)
    model = encoder.model  # raises ModelError before anything else happens
    if cfg.max_seq_length:
        model.max_seq_length = cfg.max_seq_length
    run.prompts = _resolve_prompts(encoder, cfg)
    for name, prompt in zip(("query", "document"), run.prompts):
        if prompt is not None:  # saved with the model: SentenceTransformer(path).encode_query uses it
            model.prompts[name] = prompt
    run.table = NegativeTable(train_data, cfg.num_negatives, cfg.seed, cfg.max_pairs_per_query)
    args = _training_args(cfg, run.ckpt_dir, run.table, _column_prompts(run.prompts, cfg.num_negatives))
    dist.start(on_cpu(cfg.device))
    info = prepare_model(model, cfg, model_path, out, write=dist.main)
    dist.barrier()  # the prepared base (LoRA over a changed model) is on disk before anyone reads it
    logger.info("%s", trained_line(info.parameters, info.trainable, info.lora))
    resume_from, resume_step = _resume_point(cfg, run.ckpt_dir)
    out.mkdir(parents=True, exist_ok=True)
    if resume_from:
        run.history, run.refreshes, run.losses = _earlier_metrics(out, resume_step)
        run.listener.on_resume(ResumeEvent(resume_step, resume_from))
    if dist.main and not run.history:
        run.evaluate(0, "start", model_path)

    run.source, owned = _source(source, train_data, run) if dist.main else (None, False)
    try:
        if cfg.negatives != NegativesMode.none:
            if dist.main:
                run.refresh(0, resume_from or model_path)
                run.wait(0)  # the first negatives are needed before the first step
            else:
                run.share_table()
        dataset = Dataset.from_dict({"row": list(range(len(run.table.rows)))})
        dataset.set_transform(run.table.transform)
        fn_filter = FalseNegativeFilter(cfg.loss_filter, cfg.loss_filter_margin) if cfg.loss_filter else None
        loss = LOSSES[cfg.loss](
            model,
            temperature=cfg.temperature,
            mini_batch_size=cfg.mini_batch_size,
            false_negative_filter=fn_filter,
            positives=run.table.known_positives,
            gather_across_devices=dist.active,
            focal_gamma=cfg.focal_gamma,
            mix_negatives=cfg.mix_negatives,
            seed=cfg.seed,
        )
        trainer = _trainer_class()(
            model=model,
            args=args,
            train_dataset=dataset,
            loss=loss,
            callbacks=[_RefreshCallback(run, model, loss), _ObserveCallback(run)],
        )
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(_TrainingBar(run))
        run.trainer = trainer
        if isinstance(run.source, LocalNegativeSource):
            run.source.show_progress = False  # refreshes from now on run beside the training bar
        for callback in trainer.callback_handler.callbacks:  # TensorBoard's: OUTPUT/tensorboard, not checkpoints/runs
            if type(callback).__name__ == "TensorBoardCallback" and callback.logging_dir is None:
                callback.logging_dir = str(out / "tensorboard")
        with _PeakMemory() as peak:
            output = trainer.train(resume_from_checkpoint=resume_from)
    finally:
        close = getattr(run.source, "close", None)
        if owned and close is not None:
            close()
    steps, tokens = trainer.state.global_step, int(trainer.state.num_input_tokens_seen or 0)
    run.speed = _speed(output.metrics, steps, cfg, dist, tokens, peak.mib)
    masked = loss.positives_masked
    logger.info("%d in-batch candidates were masked as known positives of their query (not negatives)", masked)
    if run.stopped_at is not None:
        logger.info("stopped at step %d; last checkpoint in %s", steps, run.ckpt_dir)
        return TrainResult(
            str(out), "", run.history, run.refreshes, steps=steps, stopped=True, tokens=tokens, positives_masked=masked
        )
    final = out / "model"
    saved: dict[str, Any] = {}
    if dist.main:
        saved = _save_final(model, cfg, run, final)
        run.evaluate(steps, "end", str(final))
        evaluated_on = evaluated_on or (
            "the validation data" if validation is not None else "held-out validation queries"
        )
        _plot(run.history, run.losses, run.refreshes, out / "metrics.png", evaluated_on)
        logger.info("trained %d steps; model in %s", steps, final)
    dist.barrier()  # every rank returns once the model is on disk
    return TrainResult(
        str(out),
        str(final),
        run.history,
        run.refreshes,
        steps=steps,
        tokens=tokens,
        positives_masked=masked,
        model=_model_report(info, saved),
        speed=run.speed,
    )


class _PeakMemory:
    """This process's peak resident memory while the block runs (sampled from /proc every 20 ms; None where there
    is no /proc): the training loop's own peak, which the process's lifetime peak (model loading, evaluation's
    encoding) can hide."""

    def __init__(self) -> None:
        self.mib: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while True:
            try:
                with open("/proc/self/statm", encoding="ascii") as fh:
                    rss = int(fh.read().split()[1]) * page / 2**20
            except (OSError, ValueError, IndexError):
                return
            self.mib = max(self.mib or 0.0, rss)
            if self._stop.wait(0.02):
                return

    def __enter__(self) -> _PeakMemory:
        if Path("/proc/self/statm").exists():
            self._thread = threading.Thread(target=self._sample, daemon=True, name="peak-memory")
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _speed(
    metrics: dict[str, Any], steps: int, cfg: TrainConfig, dist: Dist, tokens: int, peak_mib: float | None
) -> dict[str, Any]:
    """The training loop of this attempt: seconds (refreshes during it included), examples and tokens a second
    over every process, and this process's peak resident memory during the loop (CUDA's allocator peak on a GPU)."""
    import torch

    seconds = float(metrics.get("train_runtime") or 0.0)
    examples = steps * cfg.batch_size * cfg.gradient_accumulation_steps * dist.world
    out: dict[str, Any] = {
        "seconds": round(seconds, 3),
        "processes": dist.world,
        "examples_per_second": round(examples / seconds, 3) if seconds else None,
        "tokens_per_second": round(tokens * dist.world / seconds, 1) if seconds else None,
        "peak_rss_mib": round(peak_mib, 1) if peak_mib is not None else None,
    }
    if not on_cpu(cfg.device):
        out["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _column_prompts(prompts: tuple[str | None, str | None], num_negatives: int) -> dict[str, str]:
    """The trainer's ``prompts``: the query prompt on the anchor column, the document prompt on the others."""
    query_prompt, document_prompt = prompts
    out: dict[str, str] = {}
    if query_prompt:
        out["anchor"] = query_prompt
    if document_prompt:
        out["positive"] = document_prompt
        out.update({f"negative_{k + 1}": document_prompt for k in range(num_negatives)})
    return out


def _save_final(model: Any, cfg: TrainConfig, run: _Run, final: Path) -> dict[str, Any]:
    """The final model: the trained weights (or adapter, or adapter merged), or a soup of the last checkpoints."""
    _check_finite(model)
    if cfg.soup_last:
        found = sorted(
            (p for p in run.ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
            key=lambda p: int(p.name.split("-")[-1]),
        )[-cfg.soup_last :]
        if len(found) >= 2:
            model_soup([str(p) for p in found], final, device="cpu")
            size = sum(p.stat().st_size for p in final.rglob("*.safetensors"))
            logger.info("final model: the uniform average of %s", ", ".join(p.name for p in found))
            return {"kind": "soup", "bytes": size, "soup_of": [p.name for p in found]}
        logger.warning(
            "soup_last=%d: only %d checkpoint(s); the final model is the last weights", cfg.soup_last, len(found)
        )
    return save_trained(model, final, merge=cfg.lora_merge)


def _model_report(info: ModelInfo, saved: dict[str, Any]) -> dict[str, Any]:
    return {
        "parameters": info.parameters,
        "trainable_parameters": info.trainable,
        "decoder": info.decoder,
        "pooling": info.pooling,
        "lora": info.lora,
        "base": info.base,
        "saved": saved,
    }
