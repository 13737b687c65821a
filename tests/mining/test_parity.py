"""Congruence with sentence-transformers' ``mine_hard_negatives`` on the same model, data and settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from negminer import Encoder, mine
from negminer.mining import FILTERS


def _by_pair(ds) -> dict[tuple[str, str], tuple[list[str], list[float]]]:
    out: dict[tuple[str, str], tuple[list[str], list[float]]] = {}
    for r in ds:
        texts, scores = out.setdefault((r["anchor"], r["positive"]), ([], []))
        texts.append(r["negative"])
        scores.append(r["scores"][1])
    return out


def _agreement(data, ours, theirs) -> float:
    """Share of queries whose negatives (for every positive) agree, short and empty lists included.

    Negatives with exactly equal scores (texts identical within the model's max sequence length) are
    interchangeable, so a list also agrees when both lists have the same scores."""
    a, b = _by_pair(ours), _by_pair(theirs)
    same = 0
    for q, pos in zip(data.queries, data.positives):
        ok = True
        for p in pos:
            ta, sa = a.get((q, data.corpus_texts[p]), ([], []))
            tb, sb = b.get((q, data.corpus_texts[p]), ([], []))
            ok &= ta == tb or (len(sa) == len(sb) and np.allclose(sa, sb, atol=1e-6))
        same += ok
    return same / len(data)


def _compare(data, model_path: str, **settings) -> float:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    encoder = Encoder(model_path, device="cpu", batch_size=32, show_progress=False)
    # sentence-transformers' behaviour is one option away: filter="none" (or the margins it knows, given)
    asked = settings if any(k in FILTERS for k in settings) else {**settings, "filter": "none"}
    ours = mine(data, encoder, show_progress=False, **asked).to_dataset("triplet", output_scores=True)
    st_model = SentenceTransformer(model_path, device="cpu")
    theirs = mine_hard_negatives(
        data.to_pairs_dataset(),
        st_model,
        output_format="triplet",
        output_scores=True,
        use_faiss=True,
        verbose=False,
        batch_size=32,
        **settings,
    )
    assert len(ours) > 0.3 * data.num_pairs  # the comparison is not vacuous
    return _agreement(data, ours, theirs)


@pytest.mark.parametrize(
    "settings",
    [
        {"relative_margin": 0.05, "num_negatives": 3, "sampling_strategy": "top"},
        {"absolute_margin": 0.02, "num_negatives": 2},
        {"num_negatives": 3},
        {"range_min": 3, "range_max": 30, "max_score": 0.95, "min_score": 0.1, "num_negatives": 3},
    ],
)
def test_parity_small_model(demo_small, lexical_model: Path, settings: dict) -> None:
    assert _compare(demo_small, str(lexical_model), **settings) >= 0.99


@pytest.mark.slow
def test_parity_minilm(demo_small) -> None:
    from negminer.index import default_model_path

    assert _compare(demo_small, default_model_path(), relative_margin=0.05, num_negatives=3) >= 0.99
