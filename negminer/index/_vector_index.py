"""Exact and approximate inner-product search over unit vectors: FAISS (CPU or GPU) or a NumPy reference.

Both backends answer ``search(queries, k) -> (scores, rows)`` with rows sorted by descending score, padded with
row -1 and score -inf when fewer than ``k`` vectors exist. Queries are processed in chunks, so memory stays
bounded by ``chunk x corpus`` (NumPy) or FAISS's own working set: never a full queries x corpus matrix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from negminer._errors import ConfigError, IndexFileError
from negminer._io import load_npy, release_pages
from negminer._vocab import IndexKind, values
from negminer.index._plan import IndexConfig, default_nlist, exact_search, recall_at_k

__all__ = ["VectorIndex", "faiss_available", "faiss_gpu_count"]

logger = logging.getLogger("negminer")

Kind = IndexKind | Literal["flat", "ivf", "ivfpq", "hnsw"]
Backend = Literal["auto", "faiss", "numpy"]
Device = Literal["auto", "cpu", "gpu"]

GPU_MAX_K = 2048  # FAISS GPU indexes answer at most 2048 neighbours per query.
ADD_ROWS = 1 << 16  # vectors added per step while building (bounded copies of a memory-mapped source)
TRAIN_PER_LIST = 50  # IVF training sample: vectors per list (FAISS warns below 39)
REFINE_FACTOR = 4  # IVF-PQ: candidates per result re-scored exactly when the full vectors are attached


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
        kind: ``flat`` (exact, default), ``ivf`` (inverted lists, for millions of vectors), ``ivfpq`` (inverted
            lists of product-quantized codes: ``pq_m`` bytes a vector) or ``hnsw`` (graph). :func:`plan_index`
            picks one for a size and a memory budget.
        backend: ``auto`` (FAISS when installed, else NumPy), ``faiss`` or ``numpy`` (exact only; the reference).
        device: ``auto`` (all GPUs when faiss-gpu sees CUDA, sharded across them, else CPU), ``cpu`` or ``gpu``.
        nlist: IVF lists (default about 2 * sqrt(n)); nprobe: lists visited per query (:meth:`tune` sets it).
        pq_m: IVF-PQ code bytes per vector (a divisor of ``dim``; default dim / 4).
        hnsw_m: HNSW graph degree; ef_search: HNSW search breadth (:meth:`tune` sets it).
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
        pq_m: int | None = None,
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
        if kind == "ivfpq":
            pq_m = pq_m or max(1, dim // 4)
            if dim % pq_m:
                raise ConfigError(f"must divide the dimension {dim}, got {pq_m}", param="pq_m")
        use_gpu = backend == "faiss" and device != "cpu" and gpus > 0 and kind != "hnsw"
        self.dim = dim
        self.kind = IndexKind(kind)
        self.backend: str = backend
        self.device = f"gpu x{gpus}" if use_gpu else "cpu"
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.pq_m = pq_m if kind == "ivfpq" else None
        self.recall: dict[str, Any] | None = None  # what :meth:`tune` measured
        self.plan: dict[str, Any] | None = None  # why this structure (:meth:`for_vectors`)
        self._use_gpu = use_gpu
        self._refine: np.ndarray | None = None  # full vectors (a memory map) re-scoring IVF-PQ candidates
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
        out: dict[str, Any] = {
            "backend": self.backend,
            "kind": self.kind,
            "device": self.device,
            "dim": self.dim,
            "ntotal": self.ntotal,
        }
        if self.kind in ("ivf", "ivfpq"):
            out["nlist"], out["nprobe"] = self.nlist, self.nprobe
        if self.kind == "ivfpq":
            out["pq_m"], out["refined"] = self.pq_m, self._refine is not None
        if self.kind == "hnsw":
            out["hnsw_m"], out["ef_search"] = self.hnsw_m, self.ef_search
        if self.recall is not None:
            out["recall"] = self.recall
        if self.plan is not None:
            out["plan"] = {k: self.plan[k] for k in ("reason", "memory_bytes", "memory_budget")}
        return out

    @property
    def exact(self) -> bool:
        """True for exhaustive search (flat): every result is the true top-k."""
        return self.kind == "flat"

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

    def build(
        self,
        vectors: np.ndarray,
        *,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> VectorIndex:
        """Add ``vectors`` (an array or a memory map) incrementally: IVF trains on a random sample of
        ``TRAIN_PER_LIST`` vectors per list, then vectors are added ``ADD_ROWS`` at a time, so a memory-mapped
        corpus is never copied whole. ``progress(done, total)`` follows the adds."""
        n = int(vectors.shape[0])
        if n == 0:
            return self
        if self.backend == "faiss" and self._cpu_index is None and self.kind in ("ivf", "ivfpq"):
            nlist = self.nlist = self.nlist or default_nlist(n)  # sized for the whole corpus, not the sample
            size = min(n, max(nlist, TRAIN_PER_LIST * nlist))
            rows = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
            self._cpu_index = self._new_faiss_index(self._check(vectors[rows], "vectors"))
        for start, stop in _chunks(n, ADD_ROWS):
            self.add(vectors[start:stop])
            release_pages(vectors)  # a memory-mapped source stays out of this process's resident memory
            if progress is not None:
                progress(stop, n)
        return self

    @classmethod
    def for_vectors(
        cls,
        vectors: np.ndarray,
        config: IndexConfig | None = None,
        *,
        queries: np.ndarray | None = None,
        k: int = 10,
        backend: Backend = "auto",
        device: Device = "auto",
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> VectorIndex:
        """The index ``config`` plans for ``vectors`` (an array or a memory map), built incrementally and, when
        approximate, tuned to ``config.recall_target`` at recall@``k`` on a sample of ``queries`` (default: a sample
        of the vectors themselves), measured against an exact search that streams over ``vectors``."""
        config = config or IndexConfig()
        n, dim = int(vectors.shape[0]), int(vectors.shape[1])
        plan = config.plan(n, dim)
        if backend == "numpy" and plan.kind != "flat" and config.index == "auto":
            plan = IndexConfig(index="flat", memory_budget=config.memory_budget).plan(n, dim)
        index = cls(dim, backend=backend, device=device, **plan.options())
        index.plan = plan.to_dict()
        index.build(vectors, seed=seed, progress=progress)
        if index.kind == "ivfpq":
            index.attach_vectors(vectors)
        rng = np.random.default_rng(seed)
        source = queries if queries is not None else vectors
        m = int(source.shape[0])
        sample = np.sort(rng.choice(m, size=min(m, config.recall_sample), replace=False)) if m else np.zeros(0, int)
        sample_q = np.asarray(source[sample], dtype=np.float32)
        if index.exact:
            index.tune(sample_q, k=k, target=config.recall_target)
        else:
            index.tune(sample_q, k=k, target=config.recall_target, vectors=vectors)
        index.recall = {**(index.recall or {}), "sample_of": "queries" if queries is not None else "documents"}
        return index

    def attach_vectors(self, vectors: np.ndarray | None) -> None:
        """Full vectors in row order (a memory map is fine): an IVF-PQ search then re-scores
        ``REFINE_FACTOR`` x k code-distance candidates exactly, so its scores are true inner products."""
        if vectors is not None and (vectors.ndim != 2 or vectors.shape != (self.ntotal, self.dim)):
            raise ConfigError(f"vectors must have shape ({self.ntotal}, {self.dim}), got {tuple(vectors.shape)}")
        self._refine = vectors

    def tune(
        self,
        queries: np.ndarray,
        *,
        k: int = 10,
        target: float = 0.95,
        truth: np.ndarray | None = None,
        vectors: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Set ``nprobe`` (IVF) or ``ef_search`` (HNSW) to the smallest value whose recall@``k`` on ``queries``
        reaches ``target``, against ``truth`` (exact rows) or an exact search of ``vectors``. Returns and keeps
        (in :meth:`describe`) what it measured. An exact index measures nothing: its recall is 1."""
        q = self._check(queries, "queries")
        k = max(1, min(k, self.ntotal))
        if self.exact or len(q) == 0:
            self.recall = {"k": k, "recall": 1.0, "target": target, "queries": len(q), "exact": True}
            return self.recall
        if truth is None:
            if vectors is None:
                raise ConfigError("tune needs truth rows or the vectors to search exactly")
            truth = exact_search(vectors, q, k)[1]
        if self.kind == "hnsw":
            name, values_ = "ef_search", [v for v in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if v >= k]
        else:
            assert self.nlist is not None
            steps = [1 << i for i in range(int(np.log2(self.nlist)) + 1)]
            name, values_ = "nprobe", sorted({*(v for v in steps if v < self.nlist), self.nlist})
        tried = []
        recall = 0.0
        for value in values_ or [4096]:
            self._set(name, value)
            recall = recall_at_k(self.search(q, k)[1], truth, k)
            tried.append([value, round(recall, 4)])
            if recall >= target:
                break
        self.recall = {
            "k": k,
            "recall": round(recall, 4),
            "target": target,
            "queries": len(q),
            name: getattr(self, name),
        }
        self.recall["tried"] = tried
        return self.recall

    def _set(self, name: str, value: int) -> None:
        setattr(self, name, value)
        if self._cpu_index is None:
            return
        faiss = _faiss()
        if name == "nprobe":
            faiss.extract_index_ivf(self._cpu_index).nprobe = value
            if self._gpu_index is not None:
                faiss.GpuParameterSpace().set_index_parameter(self._gpu_index, "nprobe", value)
        else:
            self._cpu_index.hnsw.efSearch = value

    def _new_faiss_index(self, train: np.ndarray) -> Any:
        faiss = _faiss()
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.ef_search
            return index
        nlist = self.nlist or max(1, int(2 * np.sqrt(len(train))))
        if len(train) < nlist:
            raise ConfigError(f"nlist={nlist} needs at least {nlist} vectors to train IVF, got {len(train)}")
        self.nlist = nlist
        quantizer = faiss.IndexFlatIP(self.dim)
        if self.kind == "ivfpq":
            nbits = 8 if len(train) >= 256 else max(1, int(np.log2(len(train))))
            index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
        else:
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
            if self.kind in ("ivf", "ivfpq"):
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
        refine = self._refine is not None and self.kind == "ivfpq"
        wide = min(total, kk * REFINE_FACTOR) if refine else kk
        searcher = self._searcher(wide)
        for s, e in _chunks(n, batch_size):
            sc, ix = searcher.search(q[s:e], wide)
            if refine:
                sc, ix = self._rescore(q[s:e], ix, kk)
            scores[s:e, :kk] = sc
            rows[s:e, :kk] = ix
        missing = rows < 0
        scores[missing] = -np.inf
        if refine:
            release_pages(self._refine)
        return scores, rows

    def _rescore(self, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of the candidates (read from the attached vectors), best ``k`` kept; 64 queries
        at a time, so the gathered candidate vectors stay small."""
        assert self._refine is not None
        exact = np.full(rows.shape, -np.inf, dtype=np.float32)
        for s, e in _chunks(len(q), 64):
            block = rows[s:e]
            valid = block >= 0
            uniq, inverse = np.unique(block[valid], return_inverse=True)
            vecs = np.asarray(self._refine[uniq], dtype=np.float32)  # sorted rows: sequential-ish map reads
            qi = np.nonzero(valid)[0]
            part = np.full(block.shape, -np.inf, dtype=np.float32)
            part[valid] = np.einsum("ij,ij->i", q[s:e][qi], vecs[inverse])
            exact[s:e] = part
        order = np.lexsort((np.where(rows < 0, np.iinfo(np.int64).max, rows), -exact), axis=1)[:, :k]
        return np.take_along_axis(exact, order, axis=1), np.take_along_axis(rows, order, axis=1)

    # -- pickling (Ray ships indexes to its workers) -------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_gpu_index"] = None
        if self._cpu_index is not None:
            state["_cpu_index"] = _faiss().serialize_index(self._cpu_index)
        if self._refine is not None:
            state["_refine"] = np.asarray(self._refine)
        if self._vectors is not None:
            state["_vectors"] = np.asarray(self._vectors)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._cpu_index is not None:
            self._cpu_index = _faiss().deserialize_index(self._cpu_index)
            self._use_gpu = self._use_gpu and faiss_gpu_count() > 0

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
                index._vectors = load_npy(path, mmap=True)
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
        if kind in ("ivf", "ivfpq"):
            index._cpu_index.nprobe = index.nprobe
            index.nlist = int(index._cpu_index.nlist)
            if kind == "ivfpq":
                index.pq_m = int(_faiss().downcast_index(_faiss().extract_index_ivf(index._cpu_index)).pq.M)
        elif kind == "hnsw":
            index._cpu_index.hnsw.efSearch = index.ef_search
        return index
