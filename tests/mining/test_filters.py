"""Every filter on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from negminer.mining import (
    absolute_margin_mask,
    adaptive_thresholds,
    max_score_mask,
    min_score_mask,
    neighbourhood_z,
    positive_neighbourhood_mask,
    positive_reference,
    relative_margin_mask,
    select_negatives,
    sibling_thresholds,
    threshold_mask,
)

NEG = -np.inf
S = np.array([[0.90, 0.80, 0.70, NEG], [0.50, 0.40, 0.30, 0.20]], dtype=np.float32)


def test_positive_reference_is_lowest_positive() -> None:
    pos = np.array([[0.9, 0.7, np.nan], [0.6, np.nan, np.nan]], dtype=np.float32)
    np.testing.assert_allclose(positive_reference(pos), [0.7, 0.6])


def test_absolute_margin() -> None:
    # query 0: pos 0.85, margin 0.1 -> drop if s + 0.1 > 0.85, i.e. s > 0.75: 0.90, 0.80
    # query 1: pos 0.45 -> drop if s > 0.35: 0.50, 0.40
    m = absolute_margin_mask(S, np.array([0.85, 0.45], np.float32), 0.1)
    assert m.tolist() == [[True, True, False, False], [True, True, False, False]]


def test_absolute_margin_zero_keeps_equal_score() -> None:
    m = absolute_margin_mask(np.array([[0.5, 0.4]], np.float32), np.array([0.5], np.float32), 0.0)
    assert m.tolist() == [[False, False]]


def test_relative_margin_positive_and_negative_scores() -> None:
    # pos 0.8, m 0.1 -> threshold 0.72: drop 0.90 and 0.80
    # pos -0.5, m 0.2 -> threshold -0.5 - 0.1 = -0.6 (sign-safe): drop everything above -0.6
    s = np.array([[0.9, 0.8, 0.7], [-0.55, -0.6, -0.7]], np.float32)
    m = relative_margin_mask(s, np.array([0.8, -0.5], np.float32), np.float32(0.1))
    assert m[0].tolist() == [True, True, False]
    m2 = relative_margin_mask(s[1:], np.array([-0.5], np.float32), 0.2)
    assert m2.tolist() == [[True, False, False]]


def test_max_and_min_score_ignore_removed() -> None:
    assert max_score_mask(S, 0.75).tolist() == [[True, True, False, False], [False] * 4]
    # -inf (already removed) is not counted again by min_score
    assert min_score_mask(S, 0.35).tolist() == [[False, False, False, False], [False, False, True, True]]


def test_adaptive_threshold_hand_computed() -> None:
    scores = np.array([[0.6, 0.5, 0.4, NEG]], dtype=np.float32)
    pos = np.array([[0.9, 0.7, 0.2]], dtype=np.float32)
    # anchor = median(0.9, 0.7, 0.2) = 0.7; sigma = sample std of (0.6, 0.5, 0.4) = 0.1
    t = adaptive_thresholds(scores, pos, margin=1.5, quantile=0.5, window=3)
    np.testing.assert_allclose(t, [0.7 - 1.5 * 0.1], atol=1e-6)
    assert threshold_mask(scores, t).tolist() == [[True, False, False, False]]
    # quantile 0 = lowest positive (the fixed margins' anchor)
    t0 = adaptive_thresholds(scores, pos, margin=1.0, quantile=0.0, window=3)
    np.testing.assert_allclose(t0, [0.2 - 0.1], atol=1e-6)


def test_adaptive_threshold_min_spread_and_single_candidate() -> None:
    scores = np.array([[0.5, NEG, NEG]], dtype=np.float32)
    pos = np.array([[0.8]], dtype=np.float32)
    t = adaptive_thresholds(scores, pos, margin=2.0, window=3, min_spread=0.05)
    np.testing.assert_allclose(t, [0.8 - 2.0 * 0.05], atol=1e-6)


def test_adaptive_quantile_validated() -> None:
    with pytest.raises(ValueError, match="quantile"):
        adaptive_thresholds(S, np.ones((2, 1), np.float32), quantile=1.5)


def test_select_negatives_counts_ranks_after_filtering() -> None:
    scores = np.array([[0.9, NEG, 0.7, 0.6, 0.5, 0.4]], dtype=np.float32)
    # survivors in order: cols 0, 2, 3, 4, 5; window [1, 4) -> cols 2, 3, 4
    cols = select_negatives(scores, range_min=1, range_max=4, num_negatives=2)
    assert cols.tolist() == [[2, 3]]
    cols = select_negatives(scores, range_min=1, range_max=4, num_negatives=3)
    assert cols.tolist() == [[2, 3, 4]]


def test_select_negatives_short_rows_padded() -> None:
    scores = np.array([[0.9, NEG, NEG], [NEG, NEG, NEG]], dtype=np.float32)
    cols = select_negatives(scores, range_min=0, range_max=3, num_negatives=2)
    assert cols.tolist() == [[0, -1], [-1, -1]]


def test_select_negatives_random_is_seeded_and_sorted() -> None:
    scores = np.array([np.linspace(0.9, 0.1, 9)], dtype=np.float32)
    a = select_negatives(
        scores, range_min=0, range_max=9, num_negatives=3, sampling_strategy="random", rng=np.random.default_rng(7)
    )
    b = select_negatives(
        scores, range_min=0, range_max=9, num_negatives=3, sampling_strategy="random", rng=np.random.default_rng(7)
    )
    assert a.tolist() == b.tolist()
    assert a[0].tolist() == sorted(a[0].tolist())  # columns in score order
    assert len(set(a[0].tolist())) == 3
    many = {
        tuple(
            select_negatives(
                scores,
                range_min=0,
                range_max=9,
                num_negatives=3,
                sampling_strategy="random",
                rng=np.random.default_rng(s),
            )[0]
        )
        for s in range(20)
    }
    assert len(many) > 5


# -- the positive-neighbourhood rule ------------------------------------------------------------------------------
def _sims(rows: list[list[list[float]]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_neighbourhood_z_is_robust_z_per_positive_then_max() -> None:
    # one query, 5 candidates, 2 positives. Positive 0: cosines 0.30 0.20 0.25 0.95 0.20 -> median 0.25,
    # |dev| 0.05 0.05 0 0.70 0.05 -> MAD 0.05 -> scale 0.07413; positive 1: all 0.10 except 0.5 at candidate 0.
    sims = _sims([[[0.30, 0.5], [0.20, 0.1], [0.25, 0.1], [0.95, 0.1], [0.20, 0.1]]])
    alive = np.ones((1, 5), bool)
    z = neighbourhood_z(sims, alive, window=5, min_spread=0.01)
    scale0 = 1.4826 * 0.05
    # positive 1 has MAD 0 -> the floor min_spread: z = (0.5 - 0.1) / 0.01 = 40 for candidate 0, 0 for the others
    # (its 0 beats positive 0's -0.67 for candidates 1 and 4: the max over positives)
    np.testing.assert_allclose(z[0], [40.0, 0.0, 0.0, 0.70 / scale0, 0.0], rtol=1e-4, atol=1e-5)
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32)
    assert positive_neighbourhood_mask(scores, z, 2.0).tolist() == [[True, False, False, True, False]]
    assert positive_neighbourhood_mask(scores, z, 100.0).tolist() == [[False] * 5]


def test_neighbourhood_window_and_dead_candidates() -> None:
    # the statistics come from the first `window` alive candidates only; dead ones are never removed
    sims = _sims([[[0.2], [0.9], [0.2], [0.3], [0.99]]])
    alive = np.array([[True, False, True, True, True]])
    z = neighbourhood_z(sims, alive, window=4, min_spread=0.01)  # background 0.2, 0.2, 0.3 -> median 0.2, MAD 0
    assert np.isnan(z[0, 1])
    np.testing.assert_allclose(z[0, [0, 2, 3, 4]], [0.0, 0.0, 10.0, 79.0], rtol=1e-4)
    scores = np.array([[0.9, NEG, 0.7, 0.6, 0.5]], np.float32)
    assert positive_neighbourhood_mask(scores, z, 5.0).tolist() == [[False, False, False, True, True]]


def test_neighbourhood_with_one_positive_removes_its_near_duplicate() -> None:
    # the classic false negative: a near copy of the only positive, among ordinary neighbours
    rng = np.random.default_rng(0)
    background = rng.normal(0.3, 0.05, size=40)
    sims = np.concatenate([[0.97], background]).astype(np.float32)[None, :, None]
    z = neighbourhood_z(sims, np.ones((1, 41), bool), window=41)
    mask = positive_neighbourhood_mask(np.zeros((1, 41), np.float32), z, 1.5)
    assert mask[0, 0] and mask[0, 1:].mean() < 0.15


def test_neighbourhood_padding_and_no_positive() -> None:
    # query 0 has one real positive (the second column is NaN padding); query 1 has none
    sims = _sims([[[0.1, np.nan], [0.9, np.nan], [0.1, np.nan]], [[np.nan, np.nan]] * 3])
    z = neighbourhood_z(sims, np.ones((2, 3), bool), window=3)
    assert z[0, 1] > 10 and np.isnan(z[1]).all()
    assert positive_neighbourhood_mask(np.zeros((2, 3), np.float32), z, 1.0).tolist() == [
        [False, True, False],
        [False, False, False],
    ]


def test_neighbourhood_is_free_of_the_cosine_scale() -> None:
    # an affine change of the model's cosine scale (e.g. a model whose cosines bunch near 0.8) removes the same
    rng = np.random.default_rng(1)
    sims = rng.uniform(0.0, 0.6, size=(3, 30, 2)).astype(np.float32)
    sims[:, 4, 0] = 0.95
    alive = np.ones((3, 30), bool)
    squeezed = (0.75 + 0.25 * sims).astype(np.float32)
    a = positive_neighbourhood_mask(np.zeros((3, 30)), neighbourhood_z(sims, alive, min_spread=0.0), 1.5)
    b = positive_neighbourhood_mask(np.zeros((3, 30)), neighbourhood_z(squeezed, alive, min_spread=0.0), 1.5)
    assert (a == b).all() and a[:, 4].all()


def _unit(*rows: list[float]) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_sibling_threshold_is_quantile_of_nearest_other_positive() -> None:
    # three positives: p0 and p1 close (cos 0.8), p2 far from both (cos 0.6 to p0, 0.0 to p1)
    p = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.6, -0.8, 0.0]], dtype=np.float32)
    nearest = [0.8, 0.8, 0.6]  # each positive's cosine to its nearest other positive
    got = sibling_thresholds([p], 0.0)
    assert got[0] == pytest.approx(min(nearest), abs=1e-6)
    assert sibling_thresholds([p], 0.5)[0] == pytest.approx(np.quantile(nearest, 0.5), abs=1e-6)
    assert sibling_thresholds([p], 1.0)[0] == pytest.approx(0.8, abs=1e-6)


def test_sibling_threshold_off_below_two_positives_and_scale_of_labels() -> None:
    one = _unit([1.0, 0.0])
    copies = _unit([1.0, 0.0], [1.0, 0.01])  # near-copies: a high bar
    diverse = _unit([1.0, 0.0], [0.0, 1.0])  # unrelated labels: a low bar
    t = sibling_thresholds([one, np.zeros((0, 2), np.float32), copies, diverse], 0.1)
    assert np.isinf(t[0]) and np.isinf(t[1])
    assert t[2] > 0.99 and abs(t[3]) < 1e-6
    with pytest.raises(ValueError, match="quantile"):
        sibling_thresholds([copies], 1.5)
