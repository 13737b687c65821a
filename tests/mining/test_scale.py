"""Mining at scale: the streaming path (corpus vectors memory-mapped from disk) equals the in-memory one, mining from
vectors equals mining from texts, an approximate index reports its recall and keeps the negatives of exact mining,
and (slow) Ray tasks and Ray Data encoding give the in-process results exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from negminer import ConfigError, Encoder, mine
from negminer.index import IndexConfig, ray_encode
from negminer.mining import MiningResult, mine_vectors
from negminer.mining import _miner as miner_module
from negminer.mining._internal import StackedRows
from tests.index.test_plan import clustered

FILTER = {"num_negatives": 3, "positive_neighbourhood": 1.5, "neighbourhood_window": 30}


@pytest.fixture(scope="module")
def encoder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    return Encoder(tiny_model, device="cpu", show_progress=False, cache_dir=tmp_path_factory.mktemp("cache"))


def assert_same(a: MiningResult, b: MiningResult) -> None:
    np.testing.assert_array_equal(a.negatives, b.negatives)
    np.testing.assert_array_equal(a.negative_scores, b.negative_scores)
    assert a.report.removed == b.report.removed
    assert [a.negatives_of(i) for i in range(len(a))] == [b.negatives_of(i) for i in range(len(b))]


def test_the_streaming_path_equals_the_in_memory_one(
    demo_small, encoder: Encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_memory = mine(demo_small, encoder, show_progress=False, **FILTER)
    monkeypatch.setattr(miner_module, "STREAM_MIN_DOCS", 10)  # this corpus counts as large: encoded to a file
    calls = []
    original = Encoder.encode_to

    def spy(self: Encoder, texts, path, **kw):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        kw["rows_per_step"] = 64  # several steps, merged in the file
        return original(self, texts, path, **kw)

    monkeypatch.setattr(Encoder, "encode_to", spy)
    streamed = mine(demo_small, encoder, show_progress=False, **FILTER)
    assert calls == [len(in_memory.doc_texts)]
    assert_same(in_memory, streamed)
    kept = mine(demo_small, encoder, show_progress=False, work_dir=tmp_path / "work", **FILTER)
    assert_same(in_memory, kept)
    assert np.load(tmp_path / "work" / "corpus.npy", mmap_mode="r").shape[0] == len(in_memory.doc_texts)


def test_mining_vectors_equals_mining_texts(demo_small, encoder: Encoder) -> None:
    from_texts = mine(demo_small, encoder, show_progress=False, **FILTER)
    ids, texts, _ = demo_small.dedup_corpus()
    q = encoder.encode(list(demo_small.queries), kind="query")
    d = encoder.encode(texts)
    from_vectors = mine_vectors(q, d, from_texts.positives, doc_ids=ids, doc_texts=texts, show_progress=False, **FILTER)
    assert_same(from_texts, from_vectors)
    bare = mine_vectors(q, d, from_texts.positives, show_progress=False, **FILTER)
    assert bare.doc_ids[int(bare.negatives[0, 0])] == str(bare.negatives[0, 0])  # ids default to row numbers
    with pytest.raises(ConfigError) as err:
        mine_vectors(q, d, [[len(d)]] * len(q), show_progress=False)
    assert err.value.param == "positives"


def test_positives_outside_the_index_are_scored_never_candidates(demo_small, encoder: Encoder) -> None:
    ids, texts, _ = demo_small.dedup_corpus()
    d = encoder.encode(texts)
    q = encoder.encode(list(demo_small.queries[:5]), kind="query")
    outside = encoder.encode(["a positive that is not in the corpus"] * 5)
    rows = StackedRows(d, outside)
    assert len(rows) == len(d) + 5 and np.array_equal(rows[[0, len(d) + 1]], np.stack([d[0], outside[1]]))
    res = mine_vectors(q, rows, [[len(d) + i] for i in range(5)], index="flat", show_progress=False, **FILTER)
    assert (res.negatives < len(d)).all()
    assert res.positive_scores[0][0] == pytest.approx(float(outside[0] @ q[0]), abs=1e-6)


@pytest.mark.slow
def test_an_approximate_index_reports_its_recall_and_keeps_exact_negatives() -> None:
    docs = clustered(30_000, 32, 7)
    rng = np.random.default_rng(8)
    pos = rng.choice(len(docs), size=600, replace=False)
    q = docs[pos] + 0.05 * rng.normal(size=(600, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    positives = [[int(p)] for p in pos]
    exact = mine_vectors(q, docs, positives, index="flat", show_progress=False, **FILTER)
    assert exact.report.to_dict()["index"]["recall"]["recall"] == 1.0
    approx = mine_vectors(q, docs, positives, index=IndexConfig(index="ivf"), show_progress=False, **FILTER)
    info = approx.report.to_dict()["index"]
    assert info["kind"] == "ivf" and info["recall"]["recall"] >= 0.95 and info["recall"]["sample_of"] == "queries"
    assert info["recall"]["k"] == 32  # measured at the search depth: range_max 31 + the positive
    same = np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx.negatives, exact.negatives)])
    assert same >= 0.95


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_in_process_vectors_and_negatives(
    local_ray, demo_small, tiny_model: Path, tmp_path: Path
) -> None:
    local = Encoder(tiny_model, device="cpu", show_progress=False, cache_dir=tmp_path / "local", batch_size=8)
    remote = Encoder(tiny_model, device="cpu", show_progress=False, cache_dir=tmp_path / "ray", batch_size=8)
    _, texts, _ = demo_small.dedup_corpus()
    did = ray_encode(remote, texts, address="auto")
    assert did["encoded"] == len(texts) and did["actors"] == 2
    again = remote.encode(texts)
    assert remote.stats.encoded == 0  # every vector came from the cache the actors filled
    np.testing.assert_array_equal(again, local.encode(texts))
    assert ray_encode(remote, texts, address="auto")["encoded"] == 0
    for options in (FILTER, {**FILTER, "sampling_strategy": "random", "range_max": 30}):
        here = mine(demo_small, local, show_progress=False, chunk_size=40, **options)
        there = mine(demo_small, remote, show_progress=False, chunk_size=40, ray="auto", **options)
        assert_same(here, there)
        assert there.report.to_dict()["timings"]["ray_task"] > 0


@pytest.mark.slow
def test_a_process_pool_encodes_the_same_vectors(demo_small, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from negminer.index import _encoder

    monkeypatch.setattr(_encoder, "POOL_MIN_TEXTS", 10)
    _, texts, _ = demo_small.dedup_corpus()
    one = Encoder(tiny_model, device="cpu", show_progress=False).encode(texts)
    pooled = Encoder(tiny_model, device="cpu", show_progress=False, devices="2")
    try:
        vecs = pooled.encode(texts)
        assert pooled._pool is not None and len(pooled._pool["processes"]) == 2
    finally:
        pooled.close()
    np.testing.assert_allclose(vecs, one, atol=1e-5)
