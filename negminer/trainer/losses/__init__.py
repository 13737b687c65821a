"""Retrieval losses for dual encoders: one loss a file, each with its formula and citation."""

from negminer._vocab import LossName
from negminer.trainer.losses._base import FalseNegativeFilter, RetrievalLoss
from negminer.trainer.losses.dcl import DCLLoss
from negminer.trainer.losses.decoupled import DecoupledSoftmaxLoss
from negminer.trainer.losses.infonce import InfoNCELoss

LOSSES: dict[str, type[RetrievalLoss]] = {
    LossName.infonce: InfoNCELoss,
    LossName.decoupled: DecoupledSoftmaxLoss,
    LossName.dcl: DCLLoss,
}
assert set(LOSSES) == set(LossName), "every LossName has its loss"

__all__ = ["LOSSES", "DCLLoss", "DecoupledSoftmaxLoss", "FalseNegativeFilter", "InfoNCELoss", "RetrievalLoss"]
