"""Index choice for a size and a memory budget, streaming exact search, recall measured and tuned at build,
indexes and texts read back from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from negminer import ConfigError, IndexFileError
from negminer._vocab import IndexChoice, IndexKind, values
from negminer.index import (
    CorpusIndex,
    DiskTexts,
    IndexConfig,
    VectorIndex,
    exact_search,
    plan_index,
    recall_at_k,
)
from negminer.index._plan import parse_bytes
from negminer.index._texts import write_texts


def clustered(n: int, d: int, seed: int, clusters: int = 40) -> np.ndarray:
    """Unit vectors in clusters (a low-dimensional structure, as real embeddings have)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, 8)).astype(np.float32)
    proj = rng.normal(size=(8, d)).astype(np.float32)
    x = (centers[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, 8)).astype(np.float32)) @ proj
    x += 0.3 * rng.normal(size=x.shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_choices_are_auto_and_the_kinds() -> None:
    assert list(values(IndexChoice)) == ["auto", *values(IndexKind)]


@pytest.mark.parametrize(
    ("text", "expected"), [("4GB", 4_000_000_000), ("512MiB", 512 << 20), ("1.5g", 1_500_000_000), (1024, 1024)]
)
def test_parse_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1GB", "0", "4 parsecs"])
def test_parse_bytes_refuses_nonsense(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_bytes(bad)
    assert err.value.param == "memory_budget"
    with pytest.raises(ValueError, match="memory_budget"):
        IndexConfig(memory_budget=bad)


def test_plan_by_size_and_budget() -> None:
    assert plan_index(50_000, 384, memory_budget="16GB").kind == "flat"
    mid = plan_index(1_000_000, 384, memory_budget="16GB")
    assert mid.kind == "hnsw" and mid.hnsw_m == 32 and mid.memory_bytes < 2 * 1_000_000 * 384 * 4
    big = plan_index(10_000_000, 384, memory_budget="64GB")
    assert big.kind == "ivf" and big.nlist == 8192 and big.memory_bytes < 2 * 10_000_000 * 384 * 4
    assert plan_index(1_000_000, 384, memory_budget="1.6GB").kind == "ivf"  # no room for the graph's links
    tight = plan_index(1_000_000, 384, memory_budget="1GB")
    assert tight.kind == "ivfpq" and 384 % tight.pq_m == 0 and tight.memory_bytes <= 1e9
    assert tight.pq_m == 192  # the most code bytes that fit: the best recall the budget allows
    assert plan_index(1_000, 384, kind="hnsw").options() == {"kind": "hnsw", "hnsw_m": 32}
    with pytest.raises(ConfigError, match="over the budget") as err:
        plan_index(1_000_000, 384, kind="flat", memory_budget="1GB")
    assert err.value.param == "memory_budget"
    with pytest.raises(ConfigError) as err:
        plan_index(1_000_000_000, 384, memory_budget="1GB")
    assert "1-byte PQ codes" in str(err.value)
    with pytest.raises(ConfigError) as err:
        plan_index(10, 8, kind="annoy")
    assert err.value.param == "index"


def test_exact_search_streams_over_a_memory_map(tmp_path: Path) -> None:
    docs, queries = clustered(3000, 32, 0), clustered(50, 32, 1)
    np.save(tmp_path / "docs.npy", docs)
    mapped = np.load(tmp_path / "docs.npy", mmap_mode="r")
    scores, rows = exact_search(mapped, queries, 20, block_cells=256 * 50)  # 12 blocks of 256 rows merged
    ref_s, ref_r = VectorIndex(32, backend="numpy").add(docs).search(queries, 20)
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)
    assert (rows == ref_r).mean() > 0.999
    assert recall_at_k(rows, ref_r) > 0.999
    pad_s, pad_r = exact_search(mapped[:5], queries[:2], 8)
    assert (pad_r[:, 5:] == -1).all() and np.isneginf(pad_s[:, 5:]).all()


@pytest.mark.parametrize("kind", ["ivf", "hnsw", pytest.param("ivfpq", marks=pytest.mark.slow)])
def test_approximate_indexes_are_tuned_to_the_recall_target(kind: str) -> None:
    docs, queries = clustered(20_000 if kind != "ivfpq" else 8_000, 32, 2), clustered(400, 32, 3)
    index = VectorIndex.for_vectors(docs, IndexConfig(index=kind, recall_sample=200), queries=queries, k=10)
    assert index.kind == kind and index.ntotal == len(docs)
    measured = index.recall
    assert measured is not None and measured["k"] == 10 and measured["queries"] == 200
    assert measured["recall"] >= IndexConfig().recall_target == 0.98, measured
    truth = exact_search(docs, queries, 10)[1]
    held_out = recall_at_k(index.search(queries, 10)[1], truth)
    assert held_out >= 0.96  # the tuned setting holds on the queries it was not tuned on
    assert index.describe()["recall"]["recall"] == measured["recall"]
    if kind == "ivfpq":  # candidates re-scored exactly against the full vectors: scores are true inner products
        s, r = index.search(queries[:5], 5)
        np.testing.assert_allclose(s, np.einsum("qd,qkd->qk", queries[:5], docs[r]), atol=1e-5)


def test_auto_is_exact_for_a_small_corpus() -> None:
    docs = clustered(500, 16, 4)
    index = VectorIndex.for_vectors(docs)
    assert index.kind == "flat" and index.exact and index.recall is not None and index.recall["recall"] == 1.0
    assert index.describe()["plan"]["reason"].endswith("exact search")


def test_texts_on_disk_round_trip(tmp_path: Path) -> None:
    texts = ["plain", "line\nbreak", "ünïcödé ✓", "", '{"json": "inside"}']
    write_texts(tmp_path / "texts.jsonl", texts)
    disk = DiskTexts(tmp_path / "texts.jsonl")
    assert len(disk) == 5 and list(disk) == texts and disk[2] == texts[2] and disk[-1] == texts[-1]
    assert disk[1:3] == texts[1:3]
    with pytest.raises(IndexError):
        disk[5]
    (tmp_path / "texts.jsonl").write_text("short\n")
    with pytest.raises(IndexFileError, match="offsets say"):
        DiskTexts(tmp_path / "texts.jsonl")


def test_a_saved_approximate_index_keeps_its_tuning_and_reads_vectors_from_disk(tmp_path: Path) -> None:
    docs, queries = clustered(5000, 16, 5), clustered(100, 16, 6)
    index = VectorIndex.for_vectors(docs, IndexConfig(index="ivfpq", recall_sample=100), queries=queries)
    ids, texts = [f"d{i}" for i in range(len(docs))], [f"text {i}" for i in range(len(docs))]
    CorpusIndex(index, ids, "fp", "m", texts=texts, vectors=docs).save(tmp_path / "v1")
    loaded = CorpusIndex.load(tmp_path / "v1")
    assert isinstance(loaded.vectors, np.memmap) and isinstance(loaded.texts, DiskTexts)
    assert loaded.texts[4321] == "text 4321" and loaded.row_of("d17") == 17 and loaded.row_of("zz") is None
    assert loaded.index.nprobe == index.nprobe and loaded.index.pq_m == index.pq_m
    assert loaded.index.recall == index.recall
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], index.search(queries, 10)[1])
