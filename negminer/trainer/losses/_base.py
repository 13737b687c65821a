"""What the three retrieval losses share: batch layout, positive and duplicate masks, false-negative masking,
GradCache and cross-device gathering. Each loss file only states its per-positive term.

Batch layout (sentence-transformers' convention): column 0 holds the queries, column 1 each row's positive,
columns 2.. its hard negatives. The candidates of a query are *all* documents of the batch (every column, every
row, and every device with ``gather_across_devices``).

Identity: two rows are the same query, and two documents the same document, when their token ids are equal
(repeated texts), or, when the dataset has a ``label`` column of integer ids ``[query_id, doc_id, doc_id, ...]``
(what :func:`negminer.trainer.build_train_dataset` writes), when their ids are equal. A document equal to a
positive of the query, a positive of another row with the same query, or one of the query's known positives
(``positives={query_id: [doc_id, ...]}``) is a positive of that query: never one of its negatives. Repeated
documents count once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.gradcache import CachedLossMixin
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

from negminer import mining as filters
from negminer._errors import ConfigError, NonFiniteError
from negminer._vocab import LossFilterRule, values

__all__ = ["FalseNegativeFilter", "RetrievalLoss"]


class FalseNegativeFilter:
    """In-loss false-negative masking: a candidate scoring above its query's mining threshold leaves the
    denominator, with the miner's own rules (see :mod:`negminer.mining`).

    Args:
        rule: ``absolute`` (drop if s + m > pos), ``relative`` (drop if s > pos - |pos| m) or ``adaptive``
            (drop above quantile(pos) - m * std(top window)).
        margin: the rule's margin.
        guide: a frozen ``SentenceTransformer`` sharing the trained model's tokenizer whose cosine scores decide;
            None uses the current model's (detached) scores.
    """

    def __init__(
        self,
        rule: LossFilterRule | str = LossFilterRule.relative,
        margin: float = 0.05,
        guide: nn.Module | None = None,
        quantile: float = 0.5,
        window: int = 30,
    ) -> None:
        if rule not in values(LossFilterRule):
            raise ConfigError(f"must be one of {', '.join(values(LossFilterRule))}, got {rule!r}", param="rule")
        self.rule = LossFilterRule(rule)
        self.margin = margin
        self.guide = guide
        self.quantile = quantile
        self.window = window
        if guide is not None:
            guide.eval()
            for p in guide.parameters():
                p.requires_grad_(False)

    def config(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "margin": self.margin,
            "guide": self.guide is not None,
            "quantile": self.quantile,
            "window": self.window,
        }

    def removed(self, scores: np.ndarray, positive: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Boolean (U, D) mask of the alive non-positive candidates to drop, from raw cosine ``scores``."""
        cand = np.where(alive & ~positive, scores, -np.inf).astype(np.float32)
        width = max(1, int(positive.sum(axis=1).max()))
        pos = np.full((len(scores), width), np.nan, dtype=np.float32)
        for i in range(len(scores)):
            row = scores[i][positive[i]]
            pos[i, : len(row)] = row
        if self.rule == "absolute":
            return filters.absolute_margin_mask(cand, filters.positive_reference(pos), self.margin)
        if self.rule == "relative":
            return filters.relative_margin_mask(cand, filters.positive_reference(pos), self.margin)
        ordered = -np.sort(-cand, axis=1)
        thresholds = filters.adaptive_thresholds(
            ordered, pos, margin=self.margin, quantile=self.quantile, window=self.window
        )
        return filters.threshold_mask(cand, thresholds)


def _token_count(features: Mapping[str, Tensor]) -> int:
    """Tokens of one tokenized column, padding excluded."""
    if "attention_mask" in features:
        return int(features["attention_mask"].sum().item())
    return int(features["input_ids"].numel())


def _row_hashes(features: Mapping[str, Tensor]) -> Tensor:
    """A 64-bit hash of each row's token ids (padding excluded): equal texts get equal hashes."""
    ids = features["input_ids"]
    if "attention_mask" in features:
        mask = features["attention_mask"].bool()
        rows = [ids[i][mask[i]] for i in range(ids.size(0))]
    elif "offsets" in features and ids.dim() == 1:  # EmbeddingBag-style input (StaticEmbedding)
        offs = features["offsets"].tolist() + [ids.numel()]
        rows = [ids[offs[i] : offs[i + 1]] for i in range(len(offs) - 1)]
    else:
        rows = list(ids)
    out = [
        int.from_bytes(
            hashlib.blake2b(r.detach().cpu().numpy().tobytes(), digest_size=8).digest(), "little", signed=True
        )
        for r in rows
    ]
    return torch.tensor(out, dtype=torch.long)


class RetrievalLoss(CachedLossMixin, nn.Module):
    """Base of :class:`InfoNCELoss`, :class:`DecoupledSoftmaxLoss` and :class:`DCLLoss`.

    Args:
        model: the ``SentenceTransformer`` being trained.
        temperature: s(q, d) = cos(q, d) / temperature (0.05 = sentence-transformers' scale 20).
        mini_batch_size: embed in mini-batches of this size with GradCache (memory independent of the batch size,
            about 2x slower); None embeds the whole batch at once.
        false_negative_filter: optional :class:`FalseNegativeFilter` applied inside the loss.
        positives: known positives, ``{query_id: [doc_id, ...]}``, used with a ``label`` column of ids.
        gather_across_devices: share candidates across DDP processes (all-gather with gradients).
        focal_gamma: focal reweighting of each (query, positive) term (0: off); see the module docstring.
        mix_negatives: synthetic negatives mixed per query from its hardest ones (0: off).
        mix_pool: how many of a query's highest-scoring negatives the mixed ones are drawn from.
        seed: seed of the mixing coefficients.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.05,
        mini_batch_size: int | None = None,
        false_negative_filter: FalseNegativeFilter | None = None,
        positives: Mapping[int, Iterable[int]] | None = None,
        gather_across_devices: bool = False,
        focal_gamma: float = 0.0,
        mix_negatives: int = 0,
        mix_pool: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if focal_gamma < 0:
            raise ValueError(f"focal_gamma must be at least 0, got {focal_gamma}")
        if mix_negatives < 0 or mix_pool < 2:
            raise ValueError(f"mix_negatives must be >= 0 and mix_pool >= 2, got {mix_negatives}, {mix_pool}")
        self.focal_gamma = focal_gamma
        self.mix_negatives = mix_negatives
        self.mix_pool = mix_pool
        self._mix_rng = torch.Generator().manual_seed(seed)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if mini_batch_size is not None and mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be at least 1, got {mini_batch_size}")
        self.model = model
        self.temperature = temperature
        self.mini_batch_size = mini_batch_size  # type: ignore[assignment]
        self.uses_gradient_cache = mini_batch_size is not None
        self.false_negative_filter = false_negative_filter
        self.positives = {int(q): {int(d) for d in ds} for q, ds in (positives or {}).items()}
        self.gather_across_devices = gather_across_devices
        self._keys: tuple[Tensor, list[Tensor]] | None = None
        self._features: list[dict[str, Tensor]] | None = None
        self.step = 0  # the trainer's global step before this batch (set by the trainer), for errors
        self.tokens_seen = 0  # input tokens of the training batches (special tokens included, padding not)
        self.last_masked = 0  # false negatives masked in the last batch (for logging)
        # in-batch candidates kept out of a query's negatives because they are its known positives (not paired with
        # it in the batch), over every training batch: what the labels do inside the loss
        self.positives_masked = 0

    # -- the per-positive term, given by each loss ----------------------------------------------------------
    def pair_terms(self, scores: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """(U, D) loss terms for each (query, positive column); only entries where ``positive`` is True count.

        ``scores`` are s(q, d) with ``-inf`` where a candidate is excluded; ``negative`` marks the candidates that
        are not positives of the query and are still alive."""
        raise NotImplementedError

    # -- sentence-transformers plumbing ---------------------------------------------------------------------
    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(f"{type(self).__name__} needs at least (query, positive) columns, got {len(features)}")
        self._keys = self._identity(features, labels)
        self._features = features
        if self.training:
            self.tokens_seen += sum(_token_count(f) for f in features)
        if self.mini_batch_size is not None:
            loss = self.forward_cached(features, labels)
        else:
            reps = embed_columns(self.model, features)
            loss = self.loss_from_embeddings(reps[0], reps[1:])
        if self.training and not bool(torch.isfinite(loss.detach()).all()):
            # stop before the optimizer applies it: the weights (and the last checkpoint) are still good
            step = self.step + 1
            raise NonFiniteError(
                f"the training loss became {float(loss.detach().float().mean())} at step {step}: lower the "
                "learning_rate, raise the temperature, or check the data; the last checkpoint is kept",
                step=step,
            )
        return loss

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """GradCache hook: the loss from mini-batch embeddings (see ``CachedLossMixin``)."""
        queries = torch.cat(reps[0])
        docs = [torch.cat(col) for col in reps[1:]]
        loss = self.loss_from_embeddings(queries, docs)
        if with_backward:
            loss.backward()
            return loss.detach()
        return loss

    def _identity(self, features: list[dict[str, Tensor]], labels: Tensor | None) -> tuple[Tensor, list[Tensor]]:
        if labels is not None and labels.dim() == 2 and labels.size(1) == len(features):
            ids = labels.long().cpu()
            return ids[:, 0], [ids[:, c] for c in range(1, ids.size(1))]
        return _row_hashes(features[0]), [_row_hashes(f) for f in features[1:]]

    def _gather(self, docs: list[Tensor], doc_keys: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        if not self.gather_across_devices:
            return docs, doc_keys
        import torch.distributed as dist
        from sentence_transformers.util import all_gather, all_gather_with_grad

        if not (dist.is_available() and dist.is_initialized()):
            return docs, doc_keys
        device = docs[0].device
        return ([all_gather_with_grad(d) for d in docs], [all_gather(k.to(device)).cpu() for k in doc_keys])

    def loss_from_embeddings(self, queries: Tensor, docs: list[Tensor]) -> Tensor:
        """The loss of a batch from its embeddings: queries (B, dim), one (B, dim) tensor per document column."""
        assert self._keys is not None, "forward() sets the batch identities"
        q_keys, doc_keys = self._keys
        docs, doc_keys = self._gather(docs, doc_keys)
        d_all = F.normalize(torch.cat(docs), dim=-1)
        q_all = F.normalize(queries, dim=-1)
        d_key = torch.cat(doc_keys)
        n_docs = d_key.numel()
        # positives of column 1 are this device's rows; with gathering they sit at offset rank * B
        pos_key = doc_keys[0][self._rank_offset(queries.size(0), doc_keys[0].numel()) :][: queries.size(0)]

        groups, group_of_row = torch.unique(q_keys, return_inverse=True)
        first_row = torch.full((len(groups),), queries.size(0), dtype=torch.long)
        first_row.scatter_reduce_(0, group_of_row, torch.arange(queries.size(0)), reduce="amin")
        # positive[u, j]: document j is a positive of unique query u
        hits = (pos_key[:, None] == d_key[None, :]).float()
        positive = torch.zeros(len(groups), n_docs).index_add_(0, group_of_row, hits) > 0
        paired = positive.clone()  # the documents the batch pairs with the query (column 1 of its rows)
        for u, g in enumerate(groups.tolist()):
            known = self.positives.get(g)
            if known:
                positive[u] |= torch.isin(d_key, torch.tensor(sorted(known), dtype=torch.long))
        # repeated documents count once: keep the first occurrence of each key
        _, inverse = torch.unique(d_key, return_inverse=True)
        first = torch.full((int(inverse.max()) + 1,), n_docs, dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(n_docs), reduce="amin")
        alive = (torch.arange(n_docs) == first[inverse])[None, :].expand(len(groups), -1).clone()
        positive &= alive
        if self.training:
            self.positives_masked += int((positive & ~paired).sum())

        cos = q_all[first_row.to(q_all.device)] @ d_all.T  # (U, D)
        if self.false_negative_filter is not None:
            guide_cos = self._guide_scores(first_row, cos)
            drop = torch.from_numpy(self.false_negative_filter.removed(guide_cos, positive.numpy(), alive.numpy()))
            self.last_masked = int(drop.sum())
            alive &= ~drop
        device = cos.device
        positive, alive = positive.to(device), alive.to(device)
        negative = alive & ~positive
        scores = (cos / self.temperature).masked_fill(~alive, float("-inf"))
        if self.mix_negatives and self.training:
            extra = self._mixed_scores(q_all[first_row.to(q_all.device)], d_all, cos, negative)
            if extra is not None:  # the query's own synthetic negatives, appended as columns of its row only
                scores = torch.cat([scores, extra], dim=1)
                no, yes = torch.zeros_like(extra, dtype=torch.bool), torch.ones_like(extra, dtype=torch.bool)
                positive, alive = torch.cat([positive, no], dim=1), torch.cat([alive, yes], dim=1)
                negative = torch.cat([negative, yes], dim=1)
        terms = self.pair_terms(scores, positive, negative)
        if self.focal_gamma:  # on the positives' terms only (the others are inf where masked); a floor keeps the
            # power's gradient finite at p = 1 (DCL's terms, which have no positive in the denominator, can go below 0)
            t = torch.where(positive, terms, torch.zeros_like(terms))
            terms = (1 - torch.exp(-t)).clamp(min=1e-12) ** self.focal_gamma * t
        terms = torch.where(positive, terms, torch.zeros_like(terms))
        per_query = terms.sum(dim=1) / positive.sum(dim=1).clamp(min=1)
        return per_query.mean()

    def _mixed_scores(self, queries: Tensor, docs: Tensor, cos: Tensor, negative: Tensor) -> Tensor | None:
        """(U, M) scores of each query against M negatives mixed from its ``mix_pool`` hardest (no gradient)."""
        pool = min(self.mix_pool, int(negative.sum(dim=1).min()))
        if pool < 2:
            return None
        with torch.no_grad():
            hardest = cos.detach().masked_fill(~negative, float("-inf")).topk(pool, dim=1).indices  # (U, pool)
            u, m = hardest.size(0), self.mix_negatives
            i = torch.randint(pool, (u, m), generator=self._mix_rng)
            j = (i + torch.randint(1, pool, (u, m), generator=self._mix_rng)) % pool  # j != i
            a = torch.rand((u, m, 1), generator=self._mix_rng).to(docs.dtype)
            ni = docs.detach()[hardest.gather(1, i.to(hardest.device))]  # (U, M, dim)
            nj = docs.detach()[hardest.gather(1, j.to(hardest.device))]
            mixed = F.normalize(a.to(ni.device) * ni + (1 - a.to(ni.device)) * nj, dim=-1)
        return torch.einsum("ud,umd->um", queries, mixed) / self.temperature

    def _rank_offset(self, batch: int, gathered: int) -> int:
        if gathered == batch:
            return 0
        from sentence_transformers.util import get_rank

        return get_rank() * batch

    def _guide_scores(self, first_row: Tensor, cos: Tensor) -> np.ndarray:
        flt = self.false_negative_filter
        assert flt is not None
        if flt.guide is None or self._features is None:
            return cos.detach().float().cpu().numpy()
        with torch.no_grad():
            reps = embed_columns(flt.guide, self._features)
        q = F.normalize(reps[0], dim=-1)[first_row.to(reps[0].device)]
        d = F.normalize(torch.cat(reps[1:]), dim=-1)
        return (q @ d.T).float().cpu().numpy()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "mini_batch_size": self.mini_batch_size,
            "false_negative_filter": None
            if self.false_negative_filter is None
            else self.false_negative_filter.config(),
            "gather_across_devices": self.gather_across_devices,
            "focal_gamma": self.focal_gamma,
            "mix_negatives": self.mix_negatives,
            "mix_pool": self.mix_pool,
        }
