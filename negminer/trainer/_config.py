"""Training options, declared once: :class:`TrainHyperparameters` (the recipe: what a fine-tuning job may set) and
:class:`TrainConfig` (the recipe plus where and how one run happens). The command line's options, the REST API's
``hyperparameters`` and the worker all take their names, types, limits, defaults and help from here."""

from __future__ import annotations

import importlib.util
import os
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from negminer._model import StrictModel
from negminer._vocab import LossFilterRule, LossName, NegativesMode, values
from negminer.mining import FILTERS, MiningConfig

__all__ = ["NEGATIVE_MODES", "TrainConfig", "TrainHyperparameters"]

NEGATIVE_MODES = values(NegativesMode)


def _fspath(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


PathStr = Annotated[str, BeforeValidator(_fspath)]


# Trackers sentence-transformers' trainer (transformers' integrations) can log to, and the module each needs.
REPORTERS = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "trackio": "trackio",
}


class TrainHyperparameters(StrictModel):
    """The training recipe. Invalid values raise :class:`~negminer.ConfigError` naming the field (the REST API
    answers 422 naming ``hyperparameters.<field>``)."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        validate_default=True,
        use_enum_values=True,
        populate_by_name=True,
        allow_inf_nan=False,
    )

    loss: LossName = Field(LossName.infonce, description="infonce, decoupled (DEXML) or dcl")
    temperature: float = Field(0.05, gt=0, description="s = cos / temperature")
    negatives: NegativesMode = Field(
        NegativesMode.mined,
        description="none (in-batch only), mined (once, before "
        "training) or refresh (re-mined every refresh_every steps)",
    )
    refresh_every: int = Field(50, ge=1, description="steps between refreshes of the negatives")
    num_negatives: int = Field(3, ge=1, description="hard negatives per example")
    mining: MiningConfig = Field(
        default_factory=lambda: MiningConfig.recommended(training=True),
        description="mining options (default: the trainer's recommended filter, negminer.mining.TRAINING_FILTER); "
        "num_negatives is the training option's",
    )
    max_steps: int = Field(-1, ge=-1, description="stop after this many steps (-1: epochs decide)")
    epochs: float = Field(
        1.0, validation_alias=AliasChoices("epochs", "n_epochs"), description="passes over the (query, positive) pairs"
    )
    batch_size: int = Field(16, ge=2, description="examples per step")
    learning_rate: float = Field(2e-5, gt=0, description="peak learning rate")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="share of the steps over which the learning rate rises")
    mini_batch_size: int | None = Field(None, ge=1, description="GradCache mini-batch (large batches, small memory)")
    max_seq_length: int | None = Field(None, ge=8, description="tokens per text (default: the model's)")
    loss_filter: LossFilterRule | None = Field(None, description="in-loss false-negative masking rule")
    loss_filter_margin: float = Field(0.05, description="margin of loss_filter")
    group_positives: bool = Field(
        False,
        description="batch a query's (query, positive) rows in groups of up to a quarter of the batch, so its "
        "positives share a batch (what makes the decoupled loss differ from infonce); the same number of steps",
    )
    max_pairs_per_query: int | None = Field(
        None,
        ge=1,
        description="train on at most this many (query, positive) pairs a query (its first positives as listed); "
        "the others stay known positives, never negatives (keeps queries with many positives from filling the "
        "epoch)",
    )
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="queries held out for evaluation when no validation data is given"
    )
    save_steps: int | None = Field(None, ge=1, description="steps between checkpoints (default: refresh_every)")
    logging_steps: int = Field(10, ge=1, description="steps between loss logs")
    report_to: list[str] = Field(
        default_factory=list,
        description="experiment trackers the trainer also logs to, as in sentence-transformers (tensorboard, "
        "wandb, mlflow...; tensorboard: pip install 'negminer[tensorboard]', logs in OUTPUT/tensorboard); "
        "negminer's evaluations and refreshes are logged there too",
    )

    @field_validator("mining", mode="before")
    @classmethod
    def _training_filter_by_default(cls, mining: Any) -> Any:
        """Mining options that name no filter get the trainer's (``filter: training``), not the miner's default."""
        if isinstance(mining, dict) and not any(mining.get(k) is not None for k in (*FILTERS, "filter")):
            try:
                return MiningConfig.recommended(training=True, **mining)
            except ValueError:  # ConfigError too: validated again below, so the error keeps its location
                return {**mining, "filter": "training"}
        return mining

    @field_validator("mining", mode="after")
    @classmethod
    def _mining_takes_num_negatives(cls, mining: MiningConfig, info: ValidationInfo) -> MiningConfig:
        num = info.data.get("num_negatives", 3)
        if mining.num_negatives == num:
            return mining
        if "num_negatives" in mining.model_fields_set:  # honoured or refused, never dropped
            raise ValueError(
                f"num_negatives ({mining.num_negatives}) is a training option here: set num_negatives next to "
                f"mining (now {num}), not inside it"
            )
        again = MiningConfig.model_validate({**mining.model_dump(exclude_unset=True), "num_negatives": num})
        again._chosen_by = mining._chosen_by
        return again

    @field_serializer("mining")
    def _mining_as_set(self, mining: MiningConfig) -> dict[str, Any]:
        """Only what differs from MiningConfig's defaults (num_negatives is the training option's)."""
        return mining.model_dump(mode="json", exclude_defaults=True, exclude={"num_negatives"})

    @field_validator("report_to", mode="after")
    @classmethod
    def _known_reporters(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in REPORTERS:
                raise ValueError(f"unknown tracker {name!r} (one of: {', '.join(sorted(REPORTERS))})")
            module = REPORTERS[name]
            if importlib.util.find_spec(module) is None:
                hint = "pip install 'negminer[tensorboard]'" if name == "tensorboard" else f"pip install {module}"
                raise ValueError(f"{name} is not installed here ({hint})")
        return list(dict.fromkeys(names))

    @field_validator("max_steps", mode="after")
    @classmethod
    def _steps_or_epochs(cls, max_steps: int) -> int:
        if max_steps == 0:
            raise ValueError("must be -1 (epochs decide) or a positive number of steps (got 0)")
        return max_steps

    @field_validator("epochs", mode="after")
    @classmethod
    def _epochs_or_steps(cls, epochs: float, info: ValidationInfo) -> float:
        if epochs <= 0 and info.data.get("max_steps", -1) <= 0:
            raise ValueError("must be positive (or set max_steps)")
        return epochs

    def mining_config(self) -> MiningConfig:
        """The mining options with this run's ``num_negatives``."""
        return self.mining.model_copy(update={"num_negatives": self.num_negatives})


class TrainConfig(TrainHyperparameters):
    """Everything :func:`negminer.trainer.train` needs: the recipe and the run's place, model, device and resume."""

    output_dir: PathStr = Field("runs/train", description="output folder (model, checkpoints, metrics)")
    model: PathStr | None = Field(None, description="model folder or name (default: bundled all-MiniLM-L6-v2)")
    seed: int = Field(42, ge=0, description="seed of the data order, sampling and initialization")
    resume: bool | Literal["auto"] = Field(
        False, description="true: continue from the last complete checkpoint (required); auto: if there is one"
    )
    save_total_limit: int = Field(2, ge=1, description="trainer checkpoints kept on disk")
    cache_dir: PathStr | None = Field(
        None, description="embedding cache (default: ~/.cache/negminer; the command line passes $NEGMINER_CACHE_DIR)"
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    encode_batch_size: int = Field(64, ge=1, description="texts per encoding batch (evaluation, mining)")
    ray: str | None = Field(
        None, description="refresh negatives on this Ray cluster (encoding and mining; an address, 'auto' or 'local')"
    )
    show_progress: bool = Field(True, description="progress bars")
