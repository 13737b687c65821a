"""Retrieval losses for dual encoders: one loss a file, each with its formula and citation."""

from negminer.trainer.losses._base import FalseNegativeFilter, RetrievalLoss
from negminer.trainer.losses.dcl import DCLLoss
from negminer.trainer.losses.decoupled import DecoupledSoftmaxLoss
from negminer.trainer.losses.infonce import InfoNCELoss

LOSSES: dict[str, type[RetrievalLoss]] = {
    "infonce": InfoNCELoss,
    "decoupled": DecoupledSoftmaxLoss,
    "dcl": DCLLoss,
}

__all__ = ["LOSSES", "DCLLoss", "DecoupledSoftmaxLoss", "FalseNegativeFilter", "InfoNCELoss", "RetrievalLoss"]
