"""Every trainer option reaches sentence-transformers' trainer, declared once; bad ones are refused before training."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from negminer import ConfigError, build_demo
from negminer.cli import app
from negminer.trainer import TrainConfig, train
from negminer.trainer._config import OWNED_TRAINER_ARGS, SCHEDULERS, TYPED_TRAINER_ARGS, trainer_arg_names
from negminer.trainer._train import NegativeTable, _training_args


def test_the_named_options_are_transformers_own() -> None:
    from transformers.trainer_utils import SchedulerType

    assert set(SCHEDULERS) == {s.value for s in SchedulerType}
    known = trainer_arg_names()
    assert set(TYPED_TRAINER_ARGS) <= set(known)
    assert set(OWNED_TRAINER_ARGS) <= set(known)


def _args(cfg: TrainConfig, tmp_path: Path):
    table = NegativeTable(build_demo(20), cfg.num_negatives, cfg.seed)
    return _training_args(cfg, tmp_path / "ckpt", table, {})


def test_every_option_reaches_the_trainer(tmp_path: Path) -> None:
    cfg = TrainConfig(
        device="cpu",
        max_steps=10,
        bf16=True,
        gradient_accumulation_steps=3,
        weight_decay=0.01,
        lr_scheduler_type="cosine",
        optim="adamw_torch_fused",
        dataloader_num_workers=1,
        gradient_checkpointing=True,
        trainer_args={"max_grad_norm": 0.5, "adam_beta2": 0.98, "lr_scheduler_kwargs": {}},
    )
    args = _args(cfg, tmp_path)
    assert (args.bf16, args.gradient_accumulation_steps, args.weight_decay) == (True, 3, 0.01)
    assert (args.lr_scheduler_type.value, args.optim.value, args.dataloader_num_workers) == (
        "cosine",
        "adamw_torch_fused",
        1,
    )
    assert (args.max_grad_norm, args.adam_beta2) == (0.5, 0.98)
    checkpointing = getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing
    assert checkpointing is True


@pytest.mark.parametrize(("ratio", "steps", "warmup"), [(1.0, 40, 40), (0.1, 40, 4), (0.0, 40, 0), (0.5, 7, 4)])
def test_warmup_ratio_is_a_share_of_the_steps(tmp_path: Path, ratio: float, steps: int, warmup: int) -> None:
    args = _args(TrainConfig(device="cpu", max_steps=steps, warmup_ratio=ratio), tmp_path)
    assert args.get_warmup_steps(steps) == warmup


def test_unknown_and_owned_trainer_options_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"trainer_args: 'max_grad_nrom' .*did you mean 'max_grad_norm'"):
        TrainConfig(trainer_args={"max_grad_nrom": 1.0})
    with pytest.raises(ConfigError, match=r"trainer_args: per_device_train_batch_size .*set batch_size instead"):
        TrainConfig(trainer_args={"per_device_train_batch_size": 8})
    with pytest.raises(ConfigError, match=r"trainer_args: bf16 .*set bf16 instead"):
        TrainConfig(trainer_args={"bf16": True})
    with pytest.raises(ConfigError, match=r"trainer_args: prompts .*query_prompt"):
        TrainConfig(trainer_args={"prompts": "x"})
    with pytest.raises(ConfigError, match=r"optim: unknown optimizer 'adamw_torch_fuse'; did you mean"):
        TrainConfig(optim="adamw_torch_fuse")
    with pytest.raises(ConfigError, match=r"lr_scheduler_type"):
        TrainConfig(lr_scheduler_type="cosinus")
    with pytest.raises(ConfigError, match=r"fp16: give bf16 or fp16, not both"):
        TrainConfig(bf16=True, fp16=True)
    with pytest.raises(ConfigError, match=r"lora_alpha: is a LoRA option: set lora_r too"):
        TrainConfig(lora_alpha=16)


def test_a_value_the_trainer_refuses_is_an_error_before_anything_is_written(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "run"
    cfg = TrainConfig(
        output_dir=str(out),
        model=str(tiny_model),
        device="cpu",
        max_steps=2,
        show_progress=False,
        cache_dir=str(tmp_path / "cache"),
        trainer_args={"eval_delay": -1, "save_only_model": True, "max_grad_norm": 1.0, "adam_epsilon": 1e-8},
        lr_scheduler_type="reduce_lr_on_plateau",  # needs an evaluation strategy negminer does not run
    )
    with pytest.raises(ConfigError, match="trainer_args: the trainer refused the options"):
        train(build_demo(40), cfg)
    assert not out.exists()


def test_fp16_without_a_gpu_is_refused_naming_the_option(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "run"
    cfg = TrainConfig(output_dir=str(out), model=str(tiny_model), device="cpu", fp16=True, show_progress=False)
    with pytest.raises(ConfigError, match="fp16: float16 training needs a CUDA GPU"):
        train(build_demo(40), cfg)
    assert not out.exists()


def test_the_command_line_takes_trainer_args(tmp_path: Path, tiny_model: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        app, ["train", str(tmp_path / "missing"), "--model", str(tiny_model), "--trainer-arg", "max_grad_nrom=1"]
    )
    assert res.exit_code == 2 and "did you mean 'max_grad_norm'" in res.output, res.output
    res = runner.invoke(app, ["train", str(tmp_path / "missing"), "--trainer-arg", "oops"])
    assert res.exit_code == 2 and "--trainer-arg: expected NAME=VALUE" in res.output, res.output
