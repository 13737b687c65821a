"""Fine-tuning dual encoders on mined hard negatives (losses in :mod:`negminer.trainer.losses`).

The options, events, negative sources and evaluation import quickly; the training loop and the losses load torch
and transformers, so they are imported when first used (``negminer.trainer.train``), not with the package: the
service and the command line name the training options without paying for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from negminer.trainer._config import NEGATIVE_MODES, TrainConfig, TrainHyperparameters
from negminer.trainer._dist import agree_on_data, check_devices, check_hardware, current_process, launch, on_cpu
from negminer.trainer._evaluate import evaluate, retrieval_metrics
from negminer.trainer._events import (
    CheckpointEvent,
    EvaluationEvent,
    LogEvent,
    RefreshEvent,
    ResumeEvent,
    TrainListener,
)
from negminer.trainer._model import check_model_options, model_soup
from negminer.trainer._negatives import LocalNegativeSource, NegativeSource, NegativeSourceFactory, NegativesUpdate

if TYPE_CHECKING:
    from negminer.trainer._train import TrainResult, finite_weights, last_checkpoint, train
    from negminer.trainer.losses import LOSSES, DCLLoss, DecoupledSoftmaxLoss, FalseNegativeFilter, InfoNCELoss

_LAZY = {
    "TrainResult": "negminer.trainer._train",
    "last_checkpoint": "negminer.trainer._train",
    "finite_weights": "negminer.trainer._train",
    "train": "negminer.trainer._train",
    "LOSSES": "negminer.trainer.losses",
    "DCLLoss": "negminer.trainer.losses",
    "DecoupledSoftmaxLoss": "negminer.trainer.losses",
    "FalseNegativeFilter": "negminer.trainer.losses",
    "InfoNCELoss": "negminer.trainer.losses",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LOSSES",
    "NEGATIVE_MODES",
    "CheckpointEvent",
    "DCLLoss",
    "DecoupledSoftmaxLoss",
    "EvaluationEvent",
    "FalseNegativeFilter",
    "InfoNCELoss",
    "LocalNegativeSource",
    "LogEvent",
    "NegativeSource",
    "NegativeSourceFactory",
    "NegativesUpdate",
    "RefreshEvent",
    "ResumeEvent",
    "TrainConfig",
    "TrainHyperparameters",
    "TrainListener",
    "TrainResult",
    "agree_on_data",
    "check_devices",
    "check_hardware",
    "check_model_options",
    "current_process",
    "evaluate",
    "finite_weights",
    "last_checkpoint",
    "launch",
    "model_soup",
    "on_cpu",
    "retrieval_metrics",
    "train",
]
