"""Saving, loading, corruption and versioning of indexes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from negminer import IndexFileError
from negminer.index import CorpusIndex, Encoder, IndexStore, VectorIndex, build_index


def _index(n: int = 50, seed: int = 0, backend: str = "faiss", fingerprint: str = "f" * 64) -> CorpusIndex:
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return CorpusIndex(VectorIndex(16, backend=backend).add(x), [f"d{i}" for i in range(n)], fingerprint, "m")


@pytest.mark.parametrize("backend", ["faiss", "numpy"])
def test_save_load_round_trip(tmp_path: Path, backend: str) -> None:
    idx = _index(backend=backend)
    idx.save(tmp_path / "ix")
    back = CorpusIndex.load(tmp_path / "ix", expect_fingerprint="f" * 64)
    q = np.random.default_rng(9).standard_normal((4, 16)).astype(np.float32)
    assert (idx.search(q, 5)[1] == back.search(q, 5)[1]).all()
    assert back.doc_ids == idx.doc_ids and back.fingerprint == idx.fingerprint
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_corrupted_file_is_refused(tmp_path: Path) -> None:
    _index().save(tmp_path / "ix")
    f = tmp_path / "ix" / "vectors.faiss"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="vectors.faiss: checksum mismatch"):
        CorpusIndex.load(tmp_path / "ix")


def test_mismatched_model_and_broken_meta_are_refused(tmp_path: Path) -> None:
    _index().save(tmp_path / "ix")
    with pytest.raises(IndexFileError, match="re-encode the corpus with this model"):
        CorpusIndex.load(tmp_path / "ix", expect_fingerprint="0" * 64)
    (tmp_path / "ix" / "meta.json").write_text("{not json")
    with pytest.raises(IndexFileError, match="meta.json: corrupted"):
        CorpusIndex.load(tmp_path / "ix")
    with pytest.raises(IndexFileError, match="not a negminer index"):
        CorpusIndex.load(tmp_path / "nothing")
    (tmp_path / "ix" / "meta.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(IndexFileError, match="unknown format"):
        CorpusIndex.load(tmp_path / "ix")


def test_store_versions_and_undisturbed_readers(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "store")
    with pytest.raises(IndexFileError, match="no index published yet"):
        store.load()
    assert store.publish(_index(seed=1)) == 1
    reader = store.load()
    q = np.random.default_rng(3).standard_normal((3, 16)).astype(np.float32)
    before = reader.search(q, 5)
    assert store.publish(_index(seed=2, n=60)) == 2
    assert store.current_version() == 2
    after = reader.search(q, 5)  # the reader keeps its version
    assert (before[1] == after[1]).all() and reader.version == 1 and len(reader) == 50
    new = store.load()
    assert new.version == 2 and len(new) == 60
    assert store.load(1).version == 1
    for s in (3, 4):
        store.publish(_index(seed=s), keep=2)
    assert store.versions() == [3, 4]
    with pytest.raises(IndexFileError, match="version 1 not found"):
        store.load(1)


def test_build_index_from_encoder(tiny_model: Path, tmp_path: Path) -> None:
    enc = Encoder(tiny_model, device="cpu", cache_dir=tmp_path / "cache", show_progress=False)
    texts = ["alpha beta", "gamma delta", "epsilon"]
    idx = build_index(enc, ["a", "b", "c"], texts)
    s, r = idx.search(enc.encode(["gamma delta"], kind="document"), 1)
    assert idx.doc_ids[r[0, 0]] == "b" and s[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert idx.fingerprint == enc.fingerprint
    scratch = list((tmp_path / "cache").glob("negminer-vectors-*"))
    assert len(scratch) == 1 and (scratch[0] / "vectors.npy").is_file()  # the vectors, memory-mapped
    with idx:
        IndexStore(tmp_path / "store").publish(idx)
    assert not list((tmp_path / "cache").glob("negminer-vectors-*"))  # closed: removed now, not by the GC
    assert len(IndexStore(tmp_path / "store").load()) == 3


def test_a_failed_build_leaves_no_scratch_vectors(tiny_model: Path, tmp_path: Path) -> None:
    enc = Encoder(tiny_model, device="cpu", cache_dir=tmp_path / "cache", show_progress=False)

    def stop(stage: str, done: int, total: int) -> None:
        if stage == "indexing":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(enc, ["a", "b"], ["alpha", "beta"], progress=stop)
    assert not list((tmp_path / "cache").glob("negminer-vectors-*"))
