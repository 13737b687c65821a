"""Exact and approximate inner-product search over unit vectors: FAISS (CPU or GPU) or a NumPy reference.

Both backends answer ``search(queries, k) -> (scores, rows)`` with rows sorted by descending score, padded with
row -1 and score -inf when fewer than ``k`` vectors exist. Queries are processed in chunks, so memory stays
bounded by ``chunk x corpus`` (NumPy) or FAISS's own working set: never a full queries x corpus matrix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from negminer._errors import ConfigError, IndexFileError
from negminer._vocab import IndexKind, values

__all__ = ["VectorIndex", "faiss_available", "faiss_gpu_count"]

logger = logging.getLogger("negminer")

Kind = IndexKind | Literal["flat", "ivf", "hnsw"]
Backend = Literal["auto", "faiss", "numpy"]
Device = Literal["auto", "cpu", "gpu"]

GPU_MAX_K = 2048  # FAISS GPU indexes answer at most 2048 neighbours per query.


def _faiss() -> Any:
    import faiss

    return faiss


def faiss_available() -> bool:
    """True when the ``faiss`` module imports (``pip install negminer[cpu]`` or ``[gpu]``)."""
    try:
        _faiss()
    except ImportError:
        return False
    return True


def faiss_gpu_count() -> int:
    """Number of GPUs FAISS can use (0 with faiss-cpu or without CUDA)."""
    if not faiss_available():
        return 0
    faiss = _faiss()
    try:
        return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except Exception:  # noqa: BLE001 - a broken CUDA setup means no GPU
        return 0


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _topk_numpy(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = scores.shape[1]
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (scores.shape[0], n)).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Sort by score descending, then by row ascending (stable tie order, like FAISS).
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part_scores, order, axis=1), np.take_along_axis(part, order, axis=1)


class VectorIndex:
    """A searchable set of unit vectors (inner product = cosine).

    Args:
        dim: vector dimension.
        kind: ``flat`` (exact, default), ``ivf`` (inverted lists, for millions of vectors) or ``hnsw`` (graph).
        backend: ``auto`` (FAISS when installed, else NumPy), ``faiss`` or ``numpy`` (exact only; the reference).
        device: ``auto`` (all GPUs when faiss-gpu sees CUDA, else CPU), ``cpu`` or ``gpu``.
        nlist: IVF lists (default about 4 * sqrt(n)); nprobe: lists visited per query.
        hnsw_m: HNSW graph degree; ef_search: HNSW search breadth.
    """

    def __init__(
        self,
        dim: int,
        *,
        kind: Kind = "flat",
        backend: Backend = "auto",
        device: Device = "auto",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
    ) -> None:
        if dim < 1:
            raise ConfigError(f"dim must be positive, got {dim}")
        if kind not in values(IndexKind):
            raise ConfigError(f"must be one of {', '.join(values(IndexKind))}, got {kind!r}", param="kind")
        if backend not in ("auto", "faiss", "numpy"):
            raise ConfigError(f"must be auto, faiss or numpy, got {backend!r}", param="backend")
        if device not in ("auto", "cpu", "gpu"):
            raise ConfigError(f"must be auto, cpu or gpu, got {device!r}", param="device")
        if backend == "auto":
            backend = "faiss" if faiss_available() else "numpy"
            if backend == "numpy":
                logger.warning("faiss is not installed; using exact NumPy search (pip install 'negminer[cpu]')")
        if backend == "faiss" and not faiss_available():
            raise ConfigError("backend='faiss' needs faiss: pip install 'negminer[cpu]' or 'negminer[gpu]'")
        if backend == "numpy" and kind != "flat":
            raise ConfigError(f"the numpy backend is exact only; kind={kind!r} needs backend='faiss'")
        gpus = faiss_gpu_count() if backend == "faiss" else 0
        if device == "gpu" and gpus == 0:
            raise ConfigError("device='gpu' but FAISS sees no GPU (needs faiss-gpu and CUDA)")
        use_gpu = backend == "faiss" and device != "cpu" and gpus > 0 and kind != "hnsw"
        self.dim = dim
        self.kind = IndexKind(kind)
        self.backend: str = backend
        self.device = f"gpu x{gpus}" if use_gpu else "cpu"
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self._use_gpu = use_gpu
        self._vectors: np.ndarray | None = None  # numpy backend
        self._cpu_index: Any = None  # faiss backend, always kept (saving, k > 2048)
        self._gpu_index: Any = None

    # -- building -----------------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Number of vectors held."""
        if self.backend == "numpy":
            return 0 if self._vectors is None else int(self._vectors.shape[0])
        return 0 if self._cpu_index is None else int(self._cpu_index.ntotal)

    def describe(self) -> dict[str, Any]:
        """Backend, kind, device and size, for reports."""
        return {
            "backend": self.backend,
            "kind": self.kind,
            "device": self.device,
            "dim": self.dim,
            "ntotal": self.ntotal,
        }

    def _check(self, vectors: np.ndarray, what: str) -> np.ndarray:
        arr = np.ascontiguousarray(vectors, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ConfigError(f"{what} must have shape (n, {self.dim}), got {tuple(arr.shape)}")
        return arr

    def add(self, vectors: np.ndarray) -> VectorIndex:
        """Add vectors (rows are numbered in order of addition). IVF trains on the first batch it sees."""
        arr = self._check(vectors, "vectors")
        if self.backend == "numpy":
            self._vectors = arr if self._vectors is None else np.concatenate([self._vectors, arr])
            return self
        if self._cpu_index is None:
            self._cpu_index = self._new_faiss_index(arr)
        self._cpu_index.add(arr)
        self._gpu_index = None  # rebuilt lazily from the CPU index
        return self

    def _new_faiss_index(self, train: np.ndarray) -> Any:
        faiss = _faiss()
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.ef_search
            return index
        nlist = self.nlist or max(1, int(4 * np.sqrt(len(train))))
        if len(train) < nlist:
            raise ConfigError(f"nlist={nlist} needs at least {nlist} vectors to train IVF, got {len(train)}")
        self.nlist = nlist
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(train)
        index.nprobe = self.nprobe
        return index

    def _searcher(self, k: int) -> Any:
        if not self._use_gpu or k > GPU_MAX_K:
            return self._cpu_index
        if self._gpu_index is None:
            faiss = _faiss()
            co = faiss.GpuMultipleClonerOptions()
            co.shard = True
            co.useFloat16 = True
            self._gpu_index = faiss.index_cpu_to_all_gpus(self._cpu_index, co=co)
            if self.kind == "ivf":
                faiss.GpuParameterSpace().set_index_parameter(self._gpu_index, "nprobe", self.nprobe)
        return self._gpu_index

    # -- searching ----------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows by inner product for each query: (scores float32, rows int64), both (n, k)."""
        q = self._check(queries, "queries")
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        n = q.shape[0]
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        rows = np.full((n, k), -1, dtype=np.int64)
        total = self.ntotal
        if n == 0 or total == 0:
            return scores, rows
        kk = min(k, total)
        if self.backend == "numpy":
            assert self._vectors is not None
            # bound the chunk's score matrix to ~64M floats
            step = max(1, min(batch_size, (64 << 20) // max(1, total)))
            for s, e in _chunks(n, step):
                sc, ix = _topk_numpy(q[s:e] @ self._vectors.T, kk)
                scores[s:e, :kk] = sc
                rows[s:e, :kk] = ix
            return scores, rows
        searcher = self._searcher(kk)
        for s, e in _chunks(n, batch_size):
            sc, ix = searcher.search(q[s:e], kk)
            scores[s:e, :kk] = sc
            rows[s:e, :kk] = ix
        missing = rows < 0
        scores[missing] = -np.inf
        return scores, rows

    # -- files --------------------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the vectors / FAISS index to ``path`` (callers write to a temporary name and rename)."""
        if self.backend == "numpy":
            with open(path, "wb") as fh:
                np.save(fh, self._vectors if self._vectors is not None else np.zeros((0, self.dim), np.float32))
        else:
            _faiss().write_index(self._cpu_index, str(path))

    @classmethod
    def read(
        cls,
        path: str | os.PathLike[str],
        *,
        backend: str,
        kind: Kind,
        dim: int,
        device: Device = "auto",
        **options: Any,
    ) -> VectorIndex:
        """Read what :meth:`write` wrote."""
        if backend == "numpy":
            index = cls(dim, kind="flat", backend="numpy")
            try:
                index._vectors = np.load(path)
            except (OSError, ValueError) as exc:
                raise IndexFileError(f"{path}: unreadable vectors: {exc}") from exc
            return index
        index = cls(dim, kind=kind, backend="faiss", device=device, **options)
        if not Path(path).exists():
            raise IndexFileError(f"{path}: missing")
        try:
            index._cpu_index = _faiss().read_index(str(path))
        except RuntimeError as exc:
            raise IndexFileError(f"{path}: unreadable FAISS index: {exc}") from exc
        if index._cpu_index.d != dim:
            raise IndexFileError(f"{path}: dimension {index._cpu_index.d}, expected {dim}")
        if kind == "ivf":
            index._cpu_index.nprobe = index.nprobe
        elif kind == "hnsw":
            index._cpu_index.hnsw.efSearch = index.ef_search
        return index
