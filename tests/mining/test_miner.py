"""The miner end to end on a tiny random model: positives never negatives, formats, deepening, report, teacher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from negminer import ConfigError, Encoder, RetrievalData, mine
from negminer.mining import MiningConfig


@pytest.fixture(scope="module")
def encoder(tiny_model: Path) -> Encoder:
    return Encoder(tiny_model, device="cpu", show_progress=False)


def test_positives_are_never_negatives(demo_small, encoder: Encoder) -> None:
    res = mine(demo_small, encoder, num_negatives=4, filter="none", show_progress=False)
    for i, pos in enumerate(res.positives):
        assert not set(res.negatives[i][res.negatives[i] >= 0].tolist()) & set(pos)
        scores = res.negative_scores[i][np.isfinite(res.negative_scores[i])]
        assert list(scores) == sorted(scores, reverse=True)
    assert res.report.queries_full == len(demo_small)  # no filter: every query is supplied


def test_duplicate_texts_count_as_positive(encoder: Encoder) -> None:
    data = RetrievalData(
        ["a", "b", "c", "d"], ["same text", "same text", "other text", "third text"], ["q"], ["same text"], [[0]]
    )
    res = mine(data, encoder, num_negatives=3, filter="none", show_progress=False)
    assert res.doc_texts == ["same text", "other text", "third text"]  # de-duplicated by text
    negs = [res.doc_texts[n] for n in res.negatives[0] if n >= 0]
    assert sorted(negs) == ["other text", "third text"]


def test_filters_remove_and_report_counts(demo_small, encoder: Encoder) -> None:
    plain = mine(demo_small, encoder, num_negatives=3, range_max=40, filter="none", show_progress=False)
    filt = mine(
        demo_small, encoder, num_negatives=3, range_max=40, relative_margin=0.02, max_score=0.99, show_progress=False
    )
    r = filt.report
    assert set(r.removed) == {"relative_margin", "max_score"}
    assert r.removed["relative_margin"] > 0
    # every mined negative satisfies the rule it was filtered by
    for i, pos in enumerate(filt.positive_scores):
        ref = float(np.min(pos))
        thr = ref - abs(ref) * 0.02
        s = filt.negative_scores[i][np.isfinite(filt.negative_scores[i])]
        assert (s <= thr + 1e-6).all()
    assert r.candidates == plain.report.candidates
    assert r.negatives == int((filt.negatives >= 0).sum())
    assert r.queries_full + r.queries_short == r.queries


def test_deepening_keeps_multi_positive_queries_supplied(encoder: Encoder) -> None:
    from negminer import build_demo

    harsh = build_demo(300, harsh=True)
    fixed = mine(harsh, encoder, relative_margin=0.0, num_negatives=3, show_progress=False)
    deep = mine(harsh, encoder, relative_margin=0.0, num_negatives=3, deepen=True, show_progress=False)
    assert deep.report.queries_short <= fixed.report.queries_short
    assert deep.report.queries_deepened > 0 or fixed.report.queries_short == 0
    adaptive = mine(harsh, encoder, adaptive_margin=1.0, num_negatives=3, show_progress=False)
    assert adaptive.config.deepens
    # the plotted removed scores are those of each query's final search, as the counts are
    assert len(adaptive.removed_scores["adaptive_margin"]) == adaptive.report.removed["adaptive_margin"]
    assert adaptive.report.queries_short <= fixed.report.queries_short
    short = (adaptive.negatives < 0).any(axis=1)
    # a query is only left short after its search covered the whole corpus
    assert (adaptive.search_depth[short] == len(adaptive.doc_texts)).all()


@pytest.mark.parametrize("fmt", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
def test_output_formats(demo_small, encoder: Encoder, fmt: str, tmp_path: Path) -> None:
    res = mine(demo_small, encoder, num_negatives=2, relative_margin=0.01, show_progress=False)
    cols = res.rows(fmt, output_scores=True)
    n_rows = len(cols["anchor"])
    assert all(len(v) == n_rows for v in cols.values())
    full = [i for i in range(len(res)) if (res.negatives[i] >= 0).all()]
    if fmt == "triplet":
        assert n_rows == sum(len(res.positives[i]) * int((res.negatives[i] >= 0).sum()) for i in range(len(res)))
        assert set(cols) == {"anchor", "positive", "negative", "scores"}
    elif fmt == "n-tuple":
        assert n_rows == sum(len(res.positives[i]) for i in full)
        assert set(cols) == {"anchor", "positive", "negative_1", "negative_2", "scores"}
    elif fmt == "labeled-pair":
        assert set(cols) == {"anchor", "positive", "score"}
    else:
        assert all(len(d) == len(s) for d, s in zip(cols["positive"], cols["scores"]))
    res.save(str(tmp_path / "out.jsonl"), fmt)
    res.save(str(tmp_path / "out.parquet"), fmt)
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == n_rows
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "out.parquet").num_rows == n_rows
    ds = res.to_dataset(fmt)
    assert ds.num_rows == n_rows


def test_bad_options_are_refused(demo_small, encoder: Encoder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_negatives"):
        mine(demo_small, encoder, num_negatives=0, show_progress=False)
    with pytest.raises(ValueError, match="range_min"):
        MiningConfig(range_min=5, range_max=5)
    with pytest.raises(ValueError, match="does not fit"):
        MiningConfig(range_min=2, range_max=4, num_negatives=3)
    with pytest.raises(ValueError, match="margin_typo"):
        MiningConfig(margin_typo=0.1)
    res = mine(demo_small, encoder, show_progress=False)
    with pytest.raises(ConfigError, match="output_format"):
        res.rows("quadruplet")
    with pytest.raises(ConfigError, match=r"\.jsonl or \.parquet"):
        res.save(str(tmp_path / "out.csv"))
    assert not (tmp_path / "out.csv").exists()


def test_report_json_and_plot(demo_small, encoder: Encoder, tmp_path: Path) -> None:
    res = mine(demo_small, encoder, relative_margin=0.05, show_progress=False)
    res.report.save_json(tmp_path / "r.json")
    res.report.save_plot(tmp_path / "r.png", res.removed_scores)
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["queries"] == len(demo_small)
    assert d["removed"]["relative_margin"] == res.report.removed["relative_margin"]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "relative_margin" in res.report.summary()


def test_random_sampling_is_seeded(demo_small, encoder: Encoder) -> None:
    a = mine(demo_small, encoder, sampling_strategy="random", range_max=20, seed=3, show_progress=False)
    b = mine(demo_small, encoder, sampling_strategy="random", range_max=20, seed=3, show_progress=False)
    top = mine(demo_small, encoder, range_max=20, show_progress=False)
    assert (a.negatives == b.negatives).all()
    assert (a.negatives != top.negatives).any()


def test_chunking_does_not_change_results(demo_small, encoder: Encoder) -> None:
    a = mine(demo_small, encoder, relative_margin=0.05, chunk_size=7, show_progress=False)
    b = mine(demo_small, encoder, relative_margin=0.05, chunk_size=4096, show_progress=False)
    assert (a.negatives == b.negatives).all()


def test_teacher_rescoring_uses_teacher_scores(demo_small, encoder: Encoder, tiny_teacher: Path) -> None:
    teacher = Encoder(tiny_teacher, device="cpu", show_progress=False)
    res = mine(demo_small, encoder, teacher=teacher, relative_margin=0.05, show_progress=False)
    assert res.report.teacher.startswith("bi-encoder:")
    q = teacher.encode(res.queries[:5], kind="query")
    for i in range(5):
        d = teacher.encode([res.doc_texts[p] for p in res.positives[i]])
        np.testing.assert_allclose(res.positive_scores[i], d @ q[i], atol=1e-5)
        negs = [n for n in res.negatives[i] if n >= 0]
        if negs:
            dn = teacher.encode([res.doc_texts[n] for n in negs])
            np.testing.assert_allclose(res.negative_scores[i][: len(negs)], dn @ q[i], atol=1e-5)
    plain = mine(demo_small, encoder, relative_margin=0.05, show_progress=False)
    assert (plain.negatives != res.negatives).any()


def test_cross_encoder_teacher(demo_small, encoder: Encoder, tiny_model: Path) -> None:
    """A real (randomly initialized) CrossEncoder re-scores candidates and positives."""
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(
        str(tiny_model.parent / f"{tiny_model.name}-bert"), num_labels=1, device="cpu", local_files_only=True
    )
    small = demo_small.subset(range(10))
    res = mine(small, encoder, teacher=ce, absolute_margin=0.0, num_negatives=2, show_progress=False)
    assert res.report.teacher.startswith("cross-encoder:")
    expected = ce.predict([(small.queries[0], res.doc_texts[p]) for p in res.positives[0]])
    np.testing.assert_allclose(res.positive_scores[0], expected, atol=1e-5)
    negs = [n for n in res.negatives[0] if n >= 0]
    if negs:
        got = ce.predict([(small.queries[0], res.doc_texts[n]) for n in negs])
        np.testing.assert_allclose(res.negative_scores[0][: len(negs)], got, atol=1e-5)


def test_dataset_trains_with_sentence_transformers_as_is(demo_small, tiny_model: Path, tmp_path: Path) -> None:
    """The n-tuple dataset goes straight into sentence-transformers' trainer with MultipleNegativesRankingLoss."""
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    res = mine(
        demo_small.subset(range(16)),
        Encoder(tiny_model, device="cpu", show_progress=False),
        num_negatives=2,
        show_progress=False,
    )
    ds = res.to_dataset("n-tuple")
    model = SentenceTransformer(str(tiny_model), device="cpu")
    before = next(model.parameters()).detach().clone()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=ds, loss=MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    assert not np.allclose(before.numpy(), next(model.parameters()).detach().numpy())


@pytest.fixture(scope="module")
def cached_encoder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """The tiny model with an embedding cache: tests that mine the same texts many times encode them once."""
    return Encoder(tiny_model, device="cpu", cache_dir=tmp_path_factory.mktemp("cache"), show_progress=False)


def test_positive_neighbourhood_off_or_idle_changes_nothing(demo_small, cached_encoder: Encoder) -> None:
    """Congruence: with the rule off the miner is unchanged (the ST parity tests hold), and a threshold nothing
    passes gives exactly the negatives of the other rules alone (a window small enough not to deepen the first
    search, which the rule otherwise does to see its window of candidates)."""
    encoder = cached_encoder
    for rules in ({}, {"relative_margin": 0.05}, {"adaptive_margin": 1.0}):
        base = mine(demo_small, encoder, num_negatives=3, show_progress=False, **(rules or {"filter": "none"}))
        idle = mine(
            demo_small,
            encoder,
            num_negatives=3,
            positive_neighbourhood=1e9,
            neighbourhood_window=2,
            deepen=base.config.deepens,
            show_progress=False,
            **rules,
        )
        assert idle.report.removed["positive_neighbourhood"] == 0
        np.testing.assert_array_equal(idle.negatives, base.negatives)
        np.testing.assert_allclose(idle.negative_scores, base.negative_scores)


def test_positive_neighbourhood_removes_near_copies_of_positives(cached_encoder: Encoder) -> None:
    encoder = cached_encoder
    # each query's positive has a near copy in the corpus (one word changed): an unlabeled positive
    topics = ["sorting lists", "parsing dates", "opening sockets", "reading files", "hashing bytes", "zipping paths"]
    docs, dups = [], []
    for t in topics:
        docs.append(f"a helper for {t} in python with examples and notes")
        dups.append(f"a helper for {t} in python with examples and note")
    filler = [f"unrelated text number {i} about gardening and weather" for i in range(40)]
    corpus = docs + dups + filler
    data = RetrievalData(
        [f"d{i}" for i in range(len(corpus))],
        corpus,
        [f"q{i}" for i in range(len(topics))],
        [f"how do I do {t}" for t in topics],
        [[i] for i in range(len(topics))],
    )
    plain = mine(data, encoder, num_negatives=2, range_max=12, filter="none", show_progress=False)
    nb = mine(data, encoder, num_negatives=2, range_max=12, positive_neighbourhood=1.5, show_progress=False)
    dup_rows = {plain.doc_texts.index(d) for d in dups}
    own = [plain.doc_texts.index(dups[i]) for i in range(len(topics))]
    assert sum(own[i] in plain.negatives[i] for i in range(len(topics))) > 0  # unfiltered, copies get mined
    assert not any(own[i] in nb.negatives[i] for i in range(len(topics)))
    r = nb.report
    assert r.removed["positive_neighbourhood"] >= len(topics) and r.queries_full == len(topics)
    assert "neighbourhood" in r.timings and nb.config.deepens
    assert len(nb.removed_scores["positive_neighbourhood"]) == r.removed["positive_neighbourhood"]
    assert dup_rows  # the copies exist in the de-duplicated corpus (one word differs)
    # with include_positives (reranking sets) the positives stay candidates: the rule measures the others
    kept = mine(
        data,
        encoder,
        num_negatives=len(corpus) - 1,
        range_max=len(corpus),
        include_positives=True,
        positive_neighbourhood=1.5,
        show_progress=False,
    )
    assert all(i in kept.negatives[i] for i in range(len(topics)))
    assert not any(own[i] in kept.negatives[i] for i in range(len(topics)))


def test_positive_siblings_removes_candidates_as_close_as_the_labels_are(cached_encoder: Encoder) -> None:
    """A query with two labelled near-copies calibrates a high bar: its third, unlabeled copy is removed, the
    filler is not. A query with one label has no calibration and keeps its negatives."""
    encoder = cached_encoder
    topics = ["sorting lists", "parsing dates", "opening sockets", "reading files"]
    labelled = [[f"a helper for {t} in python with examples{s}" for s in ("", " and notes")] for t in topics]
    unlabeled = [f"a helper for {t} in python with examples and note" for t in topics]
    filler = [f"unrelated text number {i} about gardening and weather" for i in range(40)]
    corpus = [d for pair in labelled for d in pair] + unlabeled + filler
    lone = "a lonely query about knitting"
    data = RetrievalData(
        [f"d{i}" for i in range(len(corpus))],
        corpus,
        [f"q{i}" for i in range(len(topics) + 1)],
        [f"how do I do {t}" for t in topics] + [lone],
        [[2 * i, 2 * i + 1] for i in range(len(topics))] + [[len(corpus) - 1]],
    )
    plain = mine(data, encoder, num_negatives=2, range_max=12, filter="none", show_progress=False)
    sib = mine(data, encoder, num_negatives=2, range_max=12, positive_siblings=0.0, show_progress=False)
    own = [sib.doc_texts.index(unlabeled[i]) for i in range(len(topics))]
    assert sum(own[i] in plain.negatives[i] for i in range(len(topics))) > 0  # unfiltered, the copy gets mined
    assert not any(own[i] in sib.negatives[i] for i in range(len(topics)))
    assert sib.report.removed["positive_siblings"] >= len(topics) and sib.config.deepens
    assert sib.report.queries_full == len(data)
    np.testing.assert_array_equal(sib.negatives[-1], plain.negatives[-1])  # one label: the rule does not apply
    # with the neighbourhood rule first, a candidate both would remove counts under the first
    both = mine(data, encoder, num_negatives=2, positive_neighbourhood=1.5, positive_siblings=0.0, show_progress=False)
    assert set(both.report.removed) >= {"positive_neighbourhood", "positive_siblings"}


def test_filter_presets_and_where_the_default_came_from() -> None:
    from negminer.mining import RECOMMENDED_FILTER, TRAINING_FILTER
    from negminer.trainer import TrainHyperparameters

    assert MiningConfig().describe_filter() == {
        "name": "recommended",
        "rules": RECOMMENDED_FILTER,
        "chosen_by": "default",
    }
    assert MiningConfig(filter="none").filter_rules == {}
    assert MiningConfig(absolute_margin=0.1).describe_filter()["name"] == "custom"
    with pytest.raises(ValueError, match="filter='none'"):
        MiningConfig(filter="none", adaptive_margin=1.0)
    again = MiningConfig(**MiningConfig().model_dump())
    assert again == MiningConfig() and again.filter == "recommended"
    changed = MiningConfig()
    changed.positive_siblings = None  # no longer the preset: named custom, and the caller's choice
    assert changed.describe_filter() == {
        "name": "custom",
        "rules": {"positive_neighbourhood": 1.25},
        "chosen_by": "caller",
    }
    # training: mining options that name no filter get the trainer's, an explicit null included (found by fuzzing)
    for mining in ({}, {"filter": None}, {"range_max": 50, "filter": None}):
        hp = TrainHyperparameters(mining=mining)
        assert hp.mining.describe_filter() == {"name": "training", "rules": TRAINING_FILTER, "chosen_by": "default"}
