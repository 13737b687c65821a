"""The model one run trains: pooling, bidirectional attention, a LoRA adapter; how it is saved (every weight, the
adapter, or the adapter merged in); and model soups (uniform weight averages).

Decoder embedders (Qwen2/Qwen3/Llama/Mistral/Gemma) are sentence-transformers models whose transformer is a decoder;
a bare transformers decoder folder gets last-token pooling (the convention of Qwen3-Embedding, NV-Retriever and
KaLM-Embedding) where sentence-transformers would give it mean pooling. Padding side and EOS are the tokenizer's,
as in sentence-transformers: its last-token pooling finds each row's last real token from the attention mask.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negminer._errors import ConfigError, ModelError
from negminer._io import atomic_dir
from negminer.trainer._config import TrainConfig

__all__ = ["ModelInfo", "check_model_options", "model_soup", "prepare_model", "save_trained", "trained_line"]

logger = logging.getLogger("negminer")

# the attention projections LoRA adapts by default, by the names transformers' model families give them
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value", "c_attn", "qkv_proj", "Wqkv")
DECODER_TYPES = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3", "gemma3_text", "phi3", "gpt2"}


@dataclass
class ModelInfo:
    """What a run trains: parameters in all and trainable, and the LoRA settings (None: every weight trains)."""

    parameters: int
    trainable: int
    decoder: bool
    pooling: str | None
    lora: dict[str, Any] | None = None
    base: str | None = None  # the model folder an adapter applies to


def trained_line(parameters: int, trainable: int, lora: dict[str, Any] | None) -> str:
    """What a run trains, in one line: trained 1,536 of 1,000,608 parameters (0.15%, LoRA r=4 on query, key, value)."""
    share = 100 * trainable / max(1, parameters)
    what = f"LoRA r={lora['r']} on {', '.join(lora['target_modules'])}" if lora else "every weight"
    return f"trained {trainable:,} of {parameters:,} parameters ({share:.2f}%, {what})"


def _transformer(model: Any, option: str) -> Any:
    first = model[0] if len(model) else None
    if first is None or not hasattr(first, "model") or not hasattr(first.model, "config"):
        raise ConfigError("the model's first module is not a transformers model (a static model?)", param=option)
    return first


def is_decoder(config: Any) -> bool:
    """Whether a transformers config describes a decoder (causal) language model."""
    archs = getattr(config, "architectures", None) or []
    return (
        getattr(config, "model_type", None) in DECODER_TYPES
        or any(str(a).endswith("ForCausalLM") for a in archs)
        or bool(getattr(config, "is_decoder", False))
    )


def _pooling_module(model: Any) -> Any:
    for module in model:
        if type(module).__name__ == "Pooling":
            return module
    return None


def _linear_names(module: Any) -> list[str]:
    from torch import nn

    return sorted({name.rsplit(".", 1)[-1] for name, m in module.named_modules() if isinstance(m, nn.Linear)})


def _weight_names(folder: Path) -> set[str]:
    """Module names of a model folder's weights, from the safetensors headers (no weights are read)."""
    from safetensors import safe_open

    names: set[str] = set()
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as fh:
            names.update(k.rsplit(".", 2)[-2] for k in fh.keys() if k.count(".") >= 1)  # noqa: SIM118
    return names


def check_model_options(cfg: Any, model_path: str) -> None:
    """What can be checked of the model options from the model folder's files alone, before a job is queued:
    LoRA target modules the weights lack, and bidirectional attention on a model whose config has none. (Training
    checks both again on the loaded model.)"""
    folder = Path(model_path)
    if not folder.is_dir():
        return
    if cfg.bidirectional:
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = None
        if isinstance(config, dict) and "use_bidirectional_attention" not in config:
            raise ConfigError(
                f"the model ({config.get('model_type')}) has no bidirectional attention in transformers "
                "(use_bidirectional_attention: Gemma, Gemma 2, Gemma 3)",
                param="bidirectional",
            )
    if cfg.lora_r is not None and cfg.lora_target_modules:
        have = _weight_names(folder)
        missing = [t for t in cfg.lora_target_modules if t not in have]
        if have and missing:
            raise ConfigError(
                f"the model has no modules {', '.join(missing)}; its weights' modules: {', '.join(sorted(have))}",
                param="lora_target_modules",
            )


def prepare_model(model: Any, cfg: TrainConfig, model_path: str, out: Path, *, write: bool = True) -> ModelInfo:
    """Apply the run's model options to ``model`` (loaded from ``model_path``) in place, before training:
    ``pooling`` (a bare decoder folder: last-token), ``bidirectional``, ``gradient_checkpointing`` and LoRA.
    LoRA over a bidirectional model first saves that model to ``out/base`` (when ``write``), the base the adapter
    names (an adapter folder holds its own modules and prompts, but its base's transformers config).
    Raises :class:`~negminer.ConfigError` naming the option the model cannot take."""
    transformer = model[0] if len(model) and hasattr(model[0], "model") else None
    config = getattr(getattr(transformer, "model", None), "config", None)
    decoder = config is not None and is_decoder(config)
    pooling = _pooling_module(model)
    bare = not (Path(model_path) / "modules.json").is_file()
    mode = cfg.pooling or ("lasttoken" if bare and decoder else None)
    if mode is not None:
        if pooling is None:
            raise ConfigError("the model has no pooling module to set", param="pooling")
        pooling.pooling_mode = mode
    if cfg.bidirectional:
        transformer = _transformer(model, "bidirectional")
        config = transformer.model.config
        if not hasattr(config, "use_bidirectional_attention"):
            raise ConfigError(
                f"{type(config).__name__} ({config.model_type}) has no bidirectional attention in transformers "
                "(use_bidirectional_attention: Gemma, Gemma 2, Gemma 3)",
                param="bidirectional",
            )
        config.use_bidirectional_attention = True
        for module in transformer.model.modules():
            if hasattr(module, "is_causal"):
                module.is_causal = False
    base = model_path
    lora = None
    if cfg.lora_r is not None:
        transformer = _transformer(model, "lora_r")
        if cfg.bidirectional:  # the adapter's base must load bidirectional too: keep the changed config beside it
            base = str(out / "base")
            if write:  # one process writes it (several processes: rank 0)
                with atomic_dir(Path(base)) as tmp:
                    model.save(str(tmp))
        lora = _add_lora(transformer, cfg, base)
    if cfg.gradient_checkpointing:  # the trainer turns it on; a PEFT model must let the inputs carry gradients
        inner = getattr(transformer, "model", None)
        if lora and inner is not None and hasattr(inner, "enable_input_require_grads"):
            inner.enable_input_require_grads()
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelInfo(
        parameters,
        trainable,
        decoder,
        pooling.pooling_mode if pooling is not None else None,
        lora,
        base if lora else None,
    )


def _add_lora(transformer: Any, cfg: TrainConfig, base: str) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model

    have = _linear_names(transformer.model)
    targets = cfg.lora_target_modules or [n for n in ATTENTION_PROJECTIONS if n in have]
    missing = [t for t in targets if t not in have]
    if missing or not targets:
        what = f"has no modules {', '.join(missing)}" if missing else "has none of the usual attention projections"
        raise ConfigError(
            f"the model {what}; its linear modules: {', '.join(have)}",
            param="lora_target_modules",
        )
    assert cfg.lora_r is not None
    alpha = cfg.lora_alpha if cfg.lora_alpha is not None else 2.0 * cfg.lora_r
    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=alpha,  # type: ignore[arg-type]  # a float scales as well as an int (alpha / r)
        lora_dropout=cfg.lora_dropout,
        target_modules=list(targets),
        bias="none",
        base_model_name_or_path=os.path.abspath(base) if Path(base).exists() else base,
    )
    transformer.model.name_or_path = config.base_model_name_or_path  # what peft names as the base when it saves
    transformer.model = get_peft_model(transformer.model, config)
    return {"r": cfg.lora_r, "alpha": alpha, "dropout": cfg.lora_dropout, "target_modules": list(targets)}


def save_trained(model: Any, path: Path, *, merge: bool) -> dict[str, Any]:
    """Save the trained model to ``path`` atomically. A LoRA model is saved as its adapter (the sentence-transformers
    PEFT layout: ``adapter_config.json`` and ``adapter_model.safetensors`` beside the modules), or with ``merge``
    as a plain model with the adapter merged into the weights. Returns what was saved (``kind``, ``bytes``)."""
    transformer = model[0] if len(model) and hasattr(model[0], "model") else None
    peft = transformer is not None and hasattr(transformer.model, "peft_config")
    if peft and merge:
        _merge_adapter(model)
    with atomic_dir(path) as tmp:
        model.save(str(tmp))
    kind = "adapter" if peft and not merge else ("merged" if peft else "full")
    weights = [path / "adapter_model.safetensors"] if kind == "adapter" else list(path.rglob("*.safetensors"))
    return {"kind": kind, "bytes": sum(p.stat().st_size for p in weights if p.is_file())}


def model_soup(paths: list[str | os.PathLike[str]], output: str | os.PathLike[str], *, device: str = "cpu") -> Path:
    """The uniform average of the weights of the models in ``paths`` (fine-tunes of one base: the same modules and
    shapes), saved to ``output``; prompts and configuration come from the first (LM-Cocktail, KaLM-Embedding-V2's
    model soup). Refuses models that do not match, naming the first difference."""
    import torch
    from sentence_transformers import SentenceTransformer

    from negminer.index import Encoder

    if len(paths) < 2:
        raise ConfigError("a soup needs at least two models", param="models")
    first: Any = None
    total: dict[str, Any] = {}
    for p in paths:
        model = Encoder(str(p), device=device, cache_dir=None, show_progress=False).model
        _merge_adapter(model)  # LoRA models are averaged as the weights they stand for, not as A and B factors
        state = model.state_dict()
        if first is None:
            first = model
            total = {k: v.detach().to(torch.float64).clone() if v.is_floating_point() else v for k, v in state.items()}
            continue
        if set(state) != set(total):
            extra = sorted(set(state) ^ set(total))[0]
            raise ModelError(f"{p}: its weights differ in layout from {paths[0]} (first difference: {extra})")
        for k, v in state.items():
            if v.shape != total[k].shape:
                raise ModelError(f"{p}: {k} has shape {tuple(v.shape)}, {paths[0]} has {tuple(total[k].shape)}")
            if v.is_floating_point():
                total[k] += v.detach().to(torch.float64)
    n = len(paths)
    reference = first.state_dict()
    first.load_state_dict({k: (v / n).to(reference[k].dtype) if v.is_floating_point() else v for k, v in total.items()})
    out = Path(output)
    assert isinstance(first, SentenceTransformer)
    with atomic_dir(out) as tmp:
        first.save(str(tmp))
        (tmp / "soup.json").write_text(json.dumps({"models": [str(p) for p in paths], "method": "uniform"}, indent=1))
    return out


def _merge_adapter(model: Any) -> None:
    transformer = model[0] if len(model) and hasattr(model[0], "model") else None
    if transformer is not None and hasattr(transformer.model, "peft_config"):
        transformer.model = transformer.model.merge_and_unload()
