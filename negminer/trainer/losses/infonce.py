"""InfoNCE over all in-batch candidates, averaged over each query's positives.

.. math::

    \\mathcal{L}(q) = \\frac{1}{|P_q|} \\sum_{p \\in P_q}
        -\\log \\frac{e^{s(q,p)}}{\\sum_{d \\in C_q} e^{s(q,d)}}

with s(q, d) = cos(q, d) / temperature and C_q every document of the batch (all positives and hard negatives of
all queries; repeated texts once; candidates masked by an optional false-negative filter removed). With one
positive per query and no repeated texts this is sentence-transformers' ``MultipleNegativesRankingLoss``
(temperature 0.05 = scale 20). Other positives of q stay in the denominator: that is what
:class:`~negminer.trainer.losses.DecoupledSoftmaxLoss` changes.

Citation: van den Oord, Li, Vinyals. Representation Learning with Contrastive Predictive Coding. arXiv:1807.03748.
"""

from __future__ import annotations

import torch
from torch import Tensor

from negminer.trainer.losses._base import RetrievalLoss

__all__ = ["InfoNCELoss"]


class InfoNCELoss(RetrievalLoss):
    """-log softmax of each positive against every in-batch candidate; see the module docstring."""

    def pair_terms(self, scores: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        return torch.logsumexp(scores, dim=1, keepdim=True) - scores

    @property
    def citation(self) -> str:
        return """
@misc{oord2019representation,
      title={Representation Learning with Contrastive Predictive Coding},
      author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
      year={2019},
      eprint={1807.03748},
      archivePrefix={arXiv},
      primaryClass={cs.LG},
}
"""
