"""FAISS vs a NumPy exact search (congruence), approximate indexes, padding and chunking."""

from __future__ import annotations

import numpy as np
import pytest

from negminer import ConfigError
from negminer.index import VectorIndex


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("k", [1, 10, 100])
def test_faiss_flat_matches_numpy_exact(k: int) -> None:
    docs, queries = _unit(2000, 48, 0), _unit(300, 48, 1)
    f = VectorIndex(48, backend="faiss", device="cpu").add(docs)
    n = VectorIndex(48, backend="numpy").add(docs)
    fs, fr = f.search(queries, k)
    ns, nr = n.search(queries, k, batch_size=37)
    np.testing.assert_allclose(fs, ns, atol=1e-5)
    assert (fr == nr).mean() > 0.999  # random floats: ties are (almost) impossible
    brute = queries @ docs.T
    np.testing.assert_allclose(ns[:, 0], brute.max(axis=1), atol=1e-5)


def test_padding_when_k_exceeds_size() -> None:
    docs = _unit(5, 8, 2)
    for backend in ("faiss", "numpy"):
        s, r = VectorIndex(8, backend=backend).add(docs).search(docs[:2], 8)
        assert (r[:, 5:] == -1).all() and np.isneginf(s[:, 5:]).all()
        assert r[0, 0] == 0 and r[1, 0] == 1


def test_numpy_chunking_is_invisible() -> None:
    docs, queries = _unit(500, 16, 3), _unit(64, 16, 4)
    idx = VectorIndex(16, backend="numpy").add(docs)
    a = idx.search(queries, 20, batch_size=1)
    b = idx.search(queries, 20, batch_size=1000)
    assert (a[1] == b[1]).all()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_recall(kind: str) -> None:
    docs, queries = _unit(3000, 32, 5), _unit(100, 32, 6)
    exact = VectorIndex(32, backend="numpy").add(docs).search(queries, 10)[1]
    opts = {"nlist": 16, "nprobe": 16} if kind == "ivf" else {"ef_search": 256}
    approx = VectorIndex(32, kind=kind, backend="faiss", **opts).add(docs).search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= (0.999 if kind == "ivf" else 0.9)  # IVF visiting every list is exact


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="exact only"):
        VectorIndex(8, kind="hnsw", backend="numpy")
    with pytest.raises(ConfigError, match="kind"):
        VectorIndex(8, kind="lsh")  # type: ignore[arg-type]
    idx = VectorIndex(8, backend="numpy")
    with pytest.raises(ConfigError, match=r"shape \(n, 8\)"):
        idx.add(np.zeros((3, 7), np.float32))
    with pytest.raises(ConfigError, match="nlist"):
        VectorIndex(8, kind="ivf", backend="faiss", nlist=100).add(_unit(10, 8, 0))


def test_cpu_device_reported() -> None:
    idx = VectorIndex(8, backend="faiss", device="cpu").add(_unit(10, 8, 0))
    assert idx.describe()["device"] == "cpu"
