"""Fine-tuning dual encoders on mined hard negatives (losses in :mod:`negminer.trainer.losses`)."""

from negminer.trainer._evaluate import evaluate, retrieval_metrics
from negminer.trainer._negatives import LocalNegativeSource, NegativeSource
from negminer.trainer._train import NEGATIVE_MODES, TrainConfig, TrainResult, train
from negminer.trainer.losses import LOSSES, DCLLoss, DecoupledSoftmaxLoss, FalseNegativeFilter, InfoNCELoss

__all__ = [
    "LOSSES",
    "NEGATIVE_MODES",
    "DCLLoss",
    "DecoupledSoftmaxLoss",
    "FalseNegativeFilter",
    "InfoNCELoss",
    "LocalNegativeSource",
    "NegativeSource",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "retrieval_metrics",
    "train",
]
