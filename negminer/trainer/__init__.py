"""Fine-tuning dual encoders on mined hard negatives (losses in :mod:`negminer.trainer.losses`)."""

from negminer.trainer.losses import LOSSES, DCLLoss, DecoupledSoftmaxLoss, FalseNegativeFilter, InfoNCELoss

__all__ = ["LOSSES", "DCLLoss", "DecoupledSoftmaxLoss", "FalseNegativeFilter", "InfoNCELoss"]
