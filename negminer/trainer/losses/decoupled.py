"""Decoupled softmax (DEXML): each positive competes only with the query's non-positives.

.. math::

    \\mathcal{L}(q) = \\frac{1}{|P_q|} \\sum_{p \\in P_q}
        -\\log \\frac{e^{s(q,p)}}{e^{s(q,p)} + \\sum_{d \\in C_q \\setminus P_q} e^{s(q,d)}}

with s(q, d) = cos(q, d) / temperature and C_q every document of the batch. The *other* positives of q leave the
denominator, so several positives do not push each other down. Equal to InfoNCE with one positive per query.

Citation: Gupta, Bhojanapalli, et al. Dual-Encoders for Extreme Multi-Label Classification. ICLR 2024,
arXiv:2310.10636 (reference code: nilesh2797/DEXML, ``losses.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from negminer.trainer.losses._base import RetrievalLoss

__all__ = ["DecoupledSoftmaxLoss"]


class DecoupledSoftmaxLoss(RetrievalLoss):
    """-log of each positive against itself plus the query's non-positives; see the module docstring."""

    def pair_terms(self, scores: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        neg = torch.logsumexp(scores.masked_fill(~negative, float("-inf")), dim=1, keepdim=True)
        return torch.logaddexp(scores, neg) - scores

    @property
    def citation(self) -> str:
        return """
@inproceedings{gupta2024dexml,
      title={Dual-Encoders for Extreme Multi-Label Classification},
      author={Nilesh Gupta and Devvrit Khatri and Ankit Singh Rawat and Srinadh Bhojanapalli and Prateek Jain
              and Inderjit S. Dhillon},
      booktitle={The Twelfth International Conference on Learning Representations},
      year={2024},
      eprint={2310.10636},
}
"""
