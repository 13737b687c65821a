"""Fine-tuning dual encoders on mined hard negatives (losses in :mod:`negminer.trainer.losses`)."""

from negminer.trainer._evaluate import evaluate, retrieval_metrics
from negminer.trainer._negatives import HttpNegativeSource, LocalNegativeSource, NegativeSource, NegativesUpdate
from negminer.trainer._train import NEGATIVE_MODES, TrainConfig, TrainResult, last_checkpoint, train
from negminer.trainer.losses import LOSSES, DCLLoss, DecoupledSoftmaxLoss, FalseNegativeFilter, InfoNCELoss

__all__ = [
    "LOSSES",
    "NEGATIVE_MODES",
    "DCLLoss",
    "DecoupledSoftmaxLoss",
    "FalseNegativeFilter",
    "InfoNCELoss",
    "HttpNegativeSource",
    "LocalNegativeSource",
    "NegativeSource",
    "NegativesUpdate",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "last_checkpoint",
    "retrieval_metrics",
    "train",
]
