"""Fine-tuning dual encoders on mined hard negatives (losses in :mod:`negminer.trainer.losses`)."""

from negminer.trainer._config import TrainConfig, TrainHyperparameters
from negminer.trainer._evaluate import evaluate, retrieval_metrics
from negminer.trainer._negatives import LocalNegativeSource, NegativeSource, NegativeSourceFactory, NegativesUpdate
from negminer.trainer._train import (
    NEGATIVE_MODES,
    CheckpointEvent,
    EvaluationEvent,
    LogEvent,
    RefreshEvent,
    ResumeEvent,
    TrainListener,
    TrainResult,
    last_checkpoint,
    train,
)
from negminer.trainer.losses import LOSSES, DCLLoss, DecoupledSoftmaxLoss, FalseNegativeFilter, InfoNCELoss

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
    "evaluate",
    "last_checkpoint",
    "retrieval_metrics",
    "train",
]
