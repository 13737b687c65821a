"""False-negative filters and negative selection: pure functions on score arrays.

Conventions: ``scores`` is a float array (queries x candidates) sorted descending per row, with ``-inf`` for a
candidate that is already gone (a positive, padding, or removed by an earlier filter). Each ``*_mask`` returns
the boolean mask of *alive* candidates the rule removes; the caller sets them to ``-inf`` and counts them.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "positive_reference",
    "neighbourhood_z",
    "positive_neighbourhood_mask",
    "sibling_thresholds",
    "absolute_margin_mask",
    "relative_margin_mask",
    "max_score_mask",
    "min_score_mask",
    "adaptive_thresholds",
    "threshold_mask",
    "select_negatives",
]


def _alive(scores: np.ndarray) -> np.ndarray:
    return np.isfinite(scores)


def positive_reference(pos_scores: np.ndarray) -> np.ndarray:
    """Per-query reference score of the margins: the *lowest* positive (NaN-padded rows), as sentence-transformers."""
    return np.nanmin(pos_scores, axis=1)


def absolute_margin_mask(scores: np.ndarray, pos_ref: np.ndarray, margin: float) -> np.ndarray:
    """Remove a candidate if ``score + margin > pos`` (sentence-transformers' ``absolute_margin``)."""
    return _alive(scores) & (scores + margin > pos_ref[:, None])


def relative_margin_mask(scores: np.ndarray, pos_ref: np.ndarray, margin: float) -> np.ndarray:
    """Remove a candidate if ``score > pos - |pos| * margin`` (``relative_margin``; 0.05 = NV-Retriever's 95%)."""
    return _alive(scores) & (scores > (pos_ref - np.abs(pos_ref) * margin)[:, None])


def max_score_mask(scores: np.ndarray, max_score: float) -> np.ndarray:
    """Remove a candidate scoring above ``max_score``."""
    return _alive(scores) & (scores > max_score)


def min_score_mask(scores: np.ndarray, min_score: float) -> np.ndarray:
    """Remove a candidate scoring below ``min_score``."""
    return _alive(scores) & (scores < min_score)


def adaptive_thresholds(
    scores: np.ndarray,
    pos_scores: np.ndarray,
    *,
    margin: float = 1.0,
    quantile: float = 0.5,
    window: int = 30,
    min_spread: float = 0.01,
) -> np.ndarray:
    """Per-query false-negative threshold that follows each query's own score distribution.

    ``t_q = a_q - margin * max(sigma_q, min_spread)`` where

    * ``a_q`` is the ``quantile`` of the query's positive scores (NaN-padded ``pos_scores``): with one positive it
      is that score; with several, the median by default, not the lowest. Anchoring on the lowest positive, as the
      fixed margins do, lets one weak positive pull the threshold down until nothing is left for queries with many
      positives.
    * ``sigma_q`` is the standard deviation of the query's ``window`` highest candidate scores (positives already
      removed): the scale on which "close to the positive" is measured for this query. A query whose candidates
      are bunched together needs only a small gap; one with widely spread candidates a larger one.

    ``scores`` must be the candidates *before* the margin filters (positives at ``-inf``). Returns ``t_q`` per row.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    anchor = np.nanquantile(pos_scores, quantile, axis=1)
    top = scores[:, :window] if window > 0 else scores
    finite = np.isfinite(top)
    count = finite.sum(axis=1)
    safe = np.where(finite, top, 0.0)
    mean = safe.sum(axis=1) / np.maximum(count, 1)
    var = (np.where(finite, (top - mean[:, None]) ** 2, 0.0)).sum(axis=1) / np.maximum(count - 1, 1)
    sigma = np.where(count >= 2, np.sqrt(var), 0.0)
    return anchor - margin * np.maximum(sigma, min_spread)


def neighbourhood_z(
    sims: np.ndarray,
    alive: np.ndarray,
    *,
    window: int = 100,
    min_spread: float = 0.01,
) -> np.ndarray:
    """How unusually close each candidate is to one of its query's known positives (document to document).

    ``sims`` (queries x candidates x positives) holds the cosine of each candidate to each of the query's known
    positives, NaN where a row has fewer positives; ``alive`` (queries x candidates) marks the candidates still in
    play (positives masked), in descending query-score order. For each positive ``p`` of query ``q``:

    ``z_qp(c) = (cos(c, p) - median_p) / max(1.4826 * MAD_p, min_spread)``

    where the median and the median absolute deviation are taken over the query's ``window`` best-scored alive
    candidates: the positive's typical similarity to what this query retrieves, on this model's own scale. The
    result is ``max_p z_qp(c)`` per candidate (NaN for a dead candidate or a query without positives).

    Why this shape: a candidate much closer to a known positive than the rest of the query's neighbourhood is
    usually another positive (a near-duplicate, a paraphrase, a sibling function); the query-side margins cannot
    see that. The robust statistics keep the threshold from being dragged by the hidden positives themselves when
    a query has many, and make it free of the model's cosine scale (no per-data-set constant).
    """
    n, k, _ = sims.shape
    top = np.where(alive[:, : max(window, 1), None], sims[:, : max(window, 1)], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a query without positives or candidates
        centre = np.nanmedian(top, axis=1)  # (n, positives)
        mad = np.nanmedian(np.abs(top - centre[:, None, :]), axis=1)
        scale = np.maximum(1.4826 * np.nan_to_num(mad, nan=0.0), min_spread)
        z = (sims - centre[:, None, :]) / scale[:, None, :]
        best = np.nanmax(np.where(np.isnan(z), -np.inf, z), axis=2) if z.shape[2] else np.full((n, k), -np.inf)
    return np.where(alive & np.isfinite(best), best, np.nan)


def positive_neighbourhood_mask(scores: np.ndarray, z: np.ndarray, k: float) -> np.ndarray:
    """Remove a candidate whose :func:`neighbourhood_z` exceeds ``k`` (robust standard deviations)."""
    with np.errstate(invalid="ignore"):
        return _alive(scores) & (np.nan_to_num(z, nan=-np.inf) > k)


def sibling_thresholds(positive_vectors: list[np.ndarray], quantile: float) -> np.ndarray:
    """Per query, how close (cosine) a positive is to the query's *other* known positives: the ``quantile`` of each
    known positive's cosine to its nearest other known positive; ``+inf`` for a query with fewer than two.

    A leave-one-out (conformal) calibration: if one of the query's known positives had been left unlabeled, it
    would sit at least this close to the rest of them with probability about ``1 - quantile``. An unlabeled positive
    is, in the same sense, a positive someone left out, so a candidate whose highest cosine to a known positive
    reaches this threshold is probably one (:func:`closest_positive`). The threshold is on the model's own scale
    and the query's own labels: a query whose positives are near-copies of each other gets a high threshold, one
    whose positives are diverse (many indirect links) a lower one. ``positive_vectors[i]`` holds query ``i``'s
    known positives' L2-normalized vectors (rows)."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    out = np.full(len(positive_vectors), np.inf, dtype=np.float32)
    for i, vecs in enumerate(positive_vectors):
        if len(vecs) < 2:
            continue
        sims = vecs @ vecs.T
        np.fill_diagonal(sims, -np.inf)
        out[i] = np.quantile(sims.max(axis=1), quantile)
    return out


def threshold_mask(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Remove a candidate scoring above its query's threshold."""
    return _alive(scores) & (scores > thresholds[:, None])


def select_negatives(
    scores: np.ndarray,
    *,
    range_min: int,
    range_max: int,
    num_negatives: int,
    sampling_strategy: str = "top",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Column indices of the chosen negatives per row, ``-1`` where a row has too few.

    Ranks count *after* filtering, as in sentence-transformers: the window is the ``[range_min, range_max)``
    slice of a row's surviving candidates in descending score order. ``top`` takes the first ``num_negatives``
    of the window; ``random`` draws them uniformly from it (seeded) and returns them in score order.
    """
    n, k = scores.shape
    out = np.full((n, num_negatives), -1, dtype=np.int64)
    if k == 0:
        return out
    order = np.argsort(-scores, axis=1, kind="stable")
    alive_sorted = np.isfinite(np.take_along_axis(scores, order, axis=1))
    alive_count = alive_sorted.sum(axis=1)
    for i in range(n):
        hi = min(range_max, int(alive_count[i]))
        if hi <= range_min:
            continue
        window = order[i, range_min:hi]
        if sampling_strategy == "top":
            chosen = window[:num_negatives]
        elif sampling_strategy == "random":
            if rng is None:
                raise ValueError("random sampling needs an rng")
            pick = rng.choice(len(window), size=min(num_negatives, len(window)), replace=False)
            chosen = window[np.sort(pick)]
        else:
            raise ValueError(f"sampling_strategy must be 'top' or 'random', got {sampling_strategy!r}")
        out[i, : len(chosen)] = chosen
    return out
