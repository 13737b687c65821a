"""Training options, declared once: :class:`TrainHyperparameters` (the recipe: what a fine-tuning job may set) and
:class:`TrainConfig` (the recipe plus where and how one run happens). The command line's options, the REST API's
``hyperparameters`` and the worker all take their names, types, limits, defaults and help from here."""

from __future__ import annotations

import functools
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

__all__ = ["NEGATIVE_MODES", "OWNED_TRAINER_ARGS", "TrainConfig", "TrainHyperparameters"]

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


# transformers' learning-rate schedules (``transformers.trainer_utils.SchedulerType``) and optimizers
# (``transformers.training_args.OptimizerNames``), named here so the options validate without importing transformers;
# tests/trainer/test_options.py holds them equal to the installed transformers'.
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
)

# SentenceTransformerTrainingArguments that negminer sets itself, and where to set each instead (None: nowhere,
# negminer decides). ``trainer_args`` cannot override them: a run's steps, batches, checkpoints and trackers are
# what its events, resume and metrics describe.
OWNED_TRAINER_ARGS: dict[str, str | None] = {
    "output_dir": "output_dir",
    "max_steps": "max_steps",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "warmup_steps": "warmup_ratio",
    "warmup_ratio": "warmup_ratio",
    "seed": "seed",
    "data_seed": "seed",
    "logging_steps": "logging_steps",
    "logging_strategy": "logging_steps",
    "save_strategy": "save_steps",
    "save_steps": "save_steps",
    "save_total_limit": "save_total_limit",
    "eval_strategy": None,
    "eval_steps": None,
    "report_to": "report_to",
    "batch_sampler": "group_positives",
    "multi_dataset_batch_sampler": None,
    "remove_unused_columns": None,
    "use_cpu": "device",
    "disable_tqdm": "show_progress",
    "resume_from_checkpoint": "resume",
    "prompts": "mining.query_prompt / mining.corpus_prompt",
    "local_rank": None,
    "do_train": None,
    "do_eval": None,
    "do_predict": None,
    "push_to_hub": None,
    "hub_token": None,
    "load_best_model_at_end": None,
}
TYPED_TRAINER_ARGS = (
    "bf16",
    "fp16",
    "gradient_accumulation_steps",
    "weight_decay",
    "lr_scheduler_type",
    "gradient_checkpointing",
    "torch_compile",
    "dataloader_num_workers",
    "optim",
)
OWNED_TRAINER_ARGS.update({name: name for name in TYPED_TRAINER_ARGS})
OWNED_TRAINER_ARGS["activation_checkpointing"] = "gradient_checkpointing"

# warmup_ratio 1.0 is every step; transformers reads a warmup_steps of 1 or more as a count of steps, so the
# ratio handed on stops just short of 1 (ceil(steps * it) is every step for any run under 10^9 steps).
_ALL_STEPS = 1 - 1e-9


@functools.cache
def trainer_arg_names() -> dict[str, Any]:
    """The options of sentence-transformers' training arguments, by name, with their types (imports transformers)."""
    import dataclasses

    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    return {f.name: f.type for f in dataclasses.fields(SentenceTransformerTrainingArguments) if f.init}


def check_trainer_args(args: dict[str, Any]) -> dict[str, Any]:
    """Refuse names sentence-transformers' trainer does not have (naming the closest) and the ones negminer owns
    (naming negminer's option instead)."""
    import difflib

    if not args:
        return args
    known = trainer_arg_names()
    for name in args:
        if name in OWNED_TRAINER_ARGS:
            instead = OWNED_TRAINER_ARGS[name]
            hint = f"set {instead} instead" if instead else "negminer sets it"
            raise ValueError(f"{name} is negminer's to set, not trainer_args' ({hint})")
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else " (see transformers' TrainingArguments)"
            raise ValueError(f"{name!r} is not an option of sentence-transformers' trainer{hint}")
    return args


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
    warmup_ratio: float = Field(
        0.1, ge=0, le=1, description="share of the steps over which the learning rate rises (1.0: all of them)"
    )
    lr_scheduler_type: str = Field(
        "linear", description="learning-rate schedule after warmup (linear, cosine, constant, ...: transformers' names)"
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    optim: str = Field(
        "adamw_torch", description="optimizer, by transformers' name (adamw_torch, adamw_torch_fused...)"
    )
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="batches whose gradients add up to one optimizer step (in-batch negatives stay per batch)"
    )
    bf16: bool = Field(False, description="train in bfloat16 mixed precision (GPUs with bf16, or CPU autocast)")
    fp16: bool = Field(False, description="train in float16 mixed precision (CUDA only)")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: less memory, about 30% slower"
    )
    torch_compile: bool = Field(False, description="compile the model with torch.compile")
    dataloader_num_workers: int = Field(0, ge=0, description="processes preparing batches (0: the training process)")
    focal_gamma: float = Field(
        0.0, ge=0, le=10, description="focal reweighting of each query's loss by its difficulty, (1-p)^gamma (0: off)"
    )
    mix_negatives: int = Field(
        0, ge=0, le=256, description="synthetic negatives a query, mixed in embedding space from its hardest (0: off)"
    )
    soup_last: int | None = Field(
        None,
        ge=2,
        description="the final model is the uniform average of the weights of the last this-many checkpoints and "
        "the end of training (a model soup; None: the end of training)",
    )
    lora_r: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="train a LoRA adapter of this rank instead of every weight (pip install "
        "'negminer[peft]'; None: full fine-tuning)",
    )
    lora_alpha: float | None = Field(None, gt=0, description="LoRA scaling alpha (default: 2 x lora_r)")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA path")
    lora_target_modules: list[str] | None = Field(
        None, description="module names LoRA adapts (default: the model's attention projections)"
    )
    lora_merge: bool = Field(
        False, description="save the final model with the adapter merged into the weights (a plain model)"
    )
    pooling: Literal["mean", "lasttoken", "cls"] | None = Field(
        None,
        description="how token vectors become one vector (default: the model's own; a bare transformers model: "
        "lasttoken for decoders, mean otherwise)",
    )
    bidirectional: bool = Field(
        False,
        description="let a decoder attend both ways (models whose transformers config has "
        "use_bidirectional_attention, e.g. Gemma 3)",
    )
    devices: int = Field(
        1,
        ge=1,
        le=64,
        description="processes that train data-parallel, one a GPU (on CPU, gloo processes); a job's worker starts "
        "them (the command line: torchrun --nproc-per-node N negminer train ...)",
    )
    trainer_args: dict[str, Any] = Field(
        default_factory=dict,
        description="any other option of sentence-transformers' SentenceTransformerTrainingArguments, by name "
        "(max_grad_norm, adam_beta2, lr_scheduler_kwargs...); unknown names and the ones negminer sets are refused",
    )
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

    @field_validator("trainer_args", mode="after")
    @classmethod
    def _known_trainer_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        return check_trainer_args(args)

    @field_validator("lr_scheduler_type", mode="after")
    @classmethod
    def _known_scheduler(cls, name: str) -> str:
        if name not in SCHEDULERS:
            raise ValueError(f"unknown schedule {name!r} (one of: {', '.join(SCHEDULERS)})")
        return name

    @field_validator("optim", mode="after")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        if name == "adamw_torch":
            return name
        from transformers.training_args import OptimizerNames

        names = [o.value for o in OptimizerNames]
        if name not in names:
            import difflib

            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (one of: {', '.join(names)})"
            raise ValueError(f"unknown optimizer {name!r}{hint}")
        return name

    @field_validator("fp16", mode="after")
    @classmethod
    def _one_precision(cls, fp16: bool, info: ValidationInfo) -> bool:
        if fp16 and info.data.get("bf16"):
            raise ValueError("give bf16 or fp16, not both")
        return fp16

    @field_validator("lora_alpha", "lora_dropout", "lora_target_modules", "lora_merge", mode="after")
    @classmethod
    def _lora_needs_rank(cls, value: Any, info: ValidationInfo) -> Any:
        default = cls.model_fields[info.field_name or ""].default
        if value != default and info.data.get("lora_r") is None:
            raise ValueError("is a LoRA option: set lora_r too")
        return value

    @field_validator("lora_r", mode="after")
    @classmethod
    def _peft_installed(cls, r: int | None) -> int | None:
        if r is not None and importlib.util.find_spec("peft") is None:
            raise ValueError("LoRA needs peft: pip install 'negminer[peft]'")
        return r

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

    def warmup(self) -> float:
        """warmup_ratio as transformers' ``warmup_steps`` reads it (a float below 1 is a ratio)."""
        return _ALL_STEPS if self.warmup_ratio >= 1 else self.warmup_ratio

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
