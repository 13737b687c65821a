"""Decoupled Contrastive Learning (DCL): the positive leaves the denominator entirely.

.. math::

    \\mathcal{L}(q) = \\frac{1}{|P_q|} \\sum_{p \\in P_q}
        \\Big( -s(q,p) + \\log \\sum_{d \\in C_q \\setminus P_q} e^{s(q,d)} \\Big)

with s(q, d) = cos(q, d) / temperature and C_q every document of the batch. Removing the positive from the
denominator removes the negative-positive coupling that makes InfoNCE learn slowly with small batches; the loss can
be negative. A query whose candidates were all masked has no denominator and contributes 0.

Citation: Yeh, Hong, Hsu, Liu, Chen, LeCun. Decoupled Contrastive Learning. ECCV 2022, arXiv:2110.06848.
"""

from __future__ import annotations

import torch
from torch import Tensor

from negminer.trainer.losses._base import RetrievalLoss

__all__ = ["DCLLoss"]


class DCLLoss(RetrievalLoss):
    """-s(q, p) + log-sum-exp over the query's non-positives; see the module docstring."""

    def pair_terms(self, scores: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        neg = torch.logsumexp(scores.masked_fill(~negative, float("-inf")), dim=1, keepdim=True)
        has_neg = negative.any(dim=1, keepdim=True)
        return torch.where(has_neg, neg - scores, torch.zeros_like(scores))

    @property
    def citation(self) -> str:
        return """
@inproceedings{yeh2022dcl,
      title={Decoupled Contrastive Learning},
      author={Chun-Hsiao Yeh and Cheng-Yao Hong and Yen-Chi Hsu and Tyng-Luh Liu and Yubei Chen and Yann LeCun},
      booktitle={European Conference on Computer Vision (ECCV)},
      year={2022},
      eprint={2110.06848},
}
"""
