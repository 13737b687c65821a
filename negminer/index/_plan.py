"""Which index for a corpus: exact below a size, HNSW up to a few million vectors, IVF above, product-quantized IVF
when the vectors do not fit the memory budget (autofaiss's rule of thumb); and what an approximate index costs in
recall, measured against an exact search that streams over the vectors (a memory map is never copied whole).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from negminer._errors import ConfigError
from negminer._io import release_pages
from negminer._vocab import IndexChoice, IndexKind, values

__all__ = [
    "AUTO_FLAT_MAX",
    "IndexConfig",
    "IndexPlan",
    "default_memory_budget",
    "exact_search",
    "parse_bytes",
    "plan_index",
    "recall_at_k",
]

AUTO_FLAT_MAX = 100_000  # auto: exact search up to this many vectors (a 2-core machine mines them in minutes)
AUTO_HNSW_MAX = 4_000_000  # auto: HNSW up to this many (fast, high recall; its build grows as n log n), IVF above
HNSW_M = 32
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12}
_UNITS |= {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_bytes(value: str | int | float, *, param: str = "memory_budget") -> int:
    """``4GB``, ``512MiB``, ``1.5g`` or a number of bytes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        amount = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(f"expected a size such as 4GB or 512MiB, got {value!r}", param=param)
        amount = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(amount) or amount <= 0:
        raise ConfigError(f"must be a positive size, got {value!r}", param=param)
    return int(amount)


def default_memory_budget() -> int:
    """Half of this machine's physical memory: room for the index, the process and the page cache."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def default_nlist(n: int) -> int:
    """IVF lists: about 2 * sqrt(n), a power of two (1M vectors: 2048 lists of ~500)."""
    return int(max(1, min(n, 2 ** round(math.log2(max(1.0, 2 * math.sqrt(n)))))))


def _pq_m(dim: int, bytes_per_vector: float) -> int | None:
    """The most PQ sub-quantizers (one byte each, dividing ``dim``, at most dim / 2) that fit."""
    for m in sorted((m for m in range(1, dim // 2 + 1) if dim % m == 0), reverse=True):
        if m <= bytes_per_vector:
            return m
    return None


@dataclass(frozen=True)
class IndexPlan:
    """An index structure for ``n`` vectors of ``dim`` and its estimated memory (bytes)."""

    kind: IndexKind
    n: int
    dim: int
    nlist: int | None
    pq_m: int | None
    hnsw_m: int | None
    memory_bytes: int
    memory_budget: int
    reason: str

    def options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`VectorIndex` for this plan."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.nlist is not None:
            out["nlist"] = self.nlist
        if self.pq_m is not None:
            out["pq_m"] = self.pq_m
        if self.hnsw_m is not None:
            out["hnsw_m"] = self.hnsw_m
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, IndexKind) else v for k, v in asdict(self).items()}


class IndexConfig(BaseModel):
    """How mining and index builds choose and tune their vector index (the CLI's ``--index``, ``--memory-budget``,
    ``--recall-target``; the service's index options)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=True)

    index: IndexChoice = Field(
        IndexChoice.auto,
        description=f"index structure: auto (flat up to {AUTO_FLAT_MAX:,} documents, HNSW up to "
        f"{AUTO_HNSW_MAX:,}, IVF above, IVF-PQ when the vectors do not fit the memory budget), flat (exact), ivf, "
        "ivfpq or hnsw",
    )
    memory_budget: str | None = Field(
        None, description="memory the index may take, e.g. 4GB or 512MiB (default: half of this machine's memory)"
    )
    recall_target: float = Field(
        0.98,
        gt=0.0,
        le=1.0,
        description="approximate indexes: recall@k vs exact search that nprobe/efSearch is tuned to",
    )
    recall_sample: int = Field(1000, ge=10, description="queries of the recall measurement (exact search of each)")

    @field_validator("memory_budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bytes(value)
        return value

    def plan(self, n: int, dim: int) -> IndexPlan:
        """The index for ``n`` vectors of ``dim`` (see :func:`plan_index`)."""
        return plan_index(n, dim, kind=self.index, memory_budget=self.memory_budget)


def _estimate(kind: str, n: int, dim: int, nlist: int, pq_m: int | None) -> int:
    full = 4 * dim
    if kind == "flat":
        return n * full
    if kind == "hnsw":
        return n * (full + 2 * HNSW_M * 4 + 16)
    centroids = nlist * full
    if kind == "ivf":
        return n * (full + 8) + centroids
    assert pq_m is not None
    return n * (pq_m + 8) + centroids + 256 * full  # codes + ids, coarse centroids, PQ codebooks


def plan_index(n: int, dim: int, *, kind: str = "auto", memory_budget: str | int | None = None) -> IndexPlan:
    """The index for ``n`` vectors: ``kind`` as asked, or with ``auto``: flat up to :data:`AUTO_FLAT_MAX`
    vectors, HNSW up to :data:`AUTO_HNSW_MAX`, IVF (full vectors) above, IVF-PQ with as many code bytes as fit when
    the full vectors do not fit ``memory_budget`` (default: half the machine's memory). An explicit kind that does
    not fit is refused. (In the scale benchmark, docs/scale.md, at 1M documents HNSW mined faster than IVF at the same
    recall and kept more of exact mining's negatives.)"""
    if kind not in values(IndexChoice):
        raise ConfigError(f"must be one of {', '.join(values(IndexChoice))}, got {kind!r}", param="index")
    budget = parse_bytes(memory_budget) if memory_budget is not None else default_memory_budget()
    nlist = default_nlist(n)
    full_bytes = _estimate("flat", n, dim, nlist, None)
    if kind == "auto":
        if n <= AUTO_FLAT_MAX and full_bytes <= budget:
            kind, reason = "flat", f"{n} vectors <= {AUTO_FLAT_MAX}: exact search"
        elif n <= AUTO_HNSW_MAX and _estimate("hnsw", n, dim, nlist, None) <= budget:
            kind, reason = "hnsw", f"{AUTO_FLAT_MAX} < {n} vectors <= {AUTO_HNSW_MAX}; the graph fits the budget"
        elif _estimate("ivf", n, dim, nlist, None) <= budget:
            kind, reason = "ivf", f"{n} vectors > {AUTO_FLAT_MAX}; full vectors fit the budget"
        else:
            kind, reason = "ivfpq", "full vectors exceed the memory budget: product-quantized codes"
    else:
        reason = "asked for"
    pq_m = None
    if kind == "ivfpq":
        room = (budget - nlist * 4 * dim - 256 * 4 * dim) / max(1, n) - 8
        pq_m = _pq_m(dim, room)
        if pq_m is None:
            raise ConfigError(
                f"{n} vectors of {dim} floats need more than {_fmt(budget)} even as 1-byte PQ codes",
                param="memory_budget",
            )
    if kind in ("ivf", "ivfpq") and n < nlist:
        nlist = max(1, n)
    need = _estimate(kind, n, dim, nlist, pq_m)
    if need > budget:
        raise ConfigError(
            f"a {kind} index of {n} x {dim} vectors needs about {_fmt(need)}, over the budget of {_fmt(budget)} "
            "(raise --memory-budget or use --index auto / ivfpq)",
            param="memory_budget",
        )
    return IndexPlan(
        kind=IndexKind(kind),
        n=n,
        dim=dim,
        nlist=nlist if kind in ("ivf", "ivfpq") else None,
        pq_m=pq_m,
        hnsw_m=HNSW_M if kind == "hnsw" else None,
        memory_bytes=need,
        memory_budget=budget,
        reason=reason,
    )


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def exact_search(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    block_cells: int = 1 << 24,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of ``queries`` over ``vectors``, reading ``vectors`` (a memory map is fine)
    a block at a time: memory stays about ``block_cells`` scores (64 MB) whatever the corpus size, and the pages of
    a memory map are released after each block. Ties go to the lower row, like FAISS's flat index."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n = vectors.shape[0]
    kk = min(k, n)
    block_rows = max(kk, block_cells // max(1, len(q)))
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_r = np.full((len(q), 0), -1, dtype=np.int64)
    for start in range(0, n, block_rows):
        block = np.asarray(vectors[start : start + block_rows], dtype=np.float32)
        s = q @ block.T
        if s.shape[1] > kk:  # the block's own top-k first: only 2k columns are ever merged
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            s, r = np.take_along_axis(s, part, axis=1), part + start
        else:
            r = np.broadcast_to(np.arange(start, start + len(block)), s.shape)
        all_s, all_r = np.concatenate([best_s, s], axis=1), np.concatenate([best_r, r], axis=1)
        order = np.lexsort((all_r, -all_s), axis=1)[:, :kk]
        best_s, best_r = np.take_along_axis(all_s, order, axis=1), np.take_along_axis(all_r, order, axis=1)
        release_pages(vectors)
        if progress is not None:
            progress(min(n, start + block_rows), n)
    out_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    out_r = np.full((len(q), k), -1, dtype=np.int64)
    out_s[:, :kk], out_r[:, :kk] = best_s, best_r
    return out_s, out_r


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int | None = None) -> float:
    """Share of the exact top-``k`` rows (``truth``) that the approximate search returned in its top-``k``."""
    k = k or truth.shape[1]
    hit = total = 0
    for f, t in zip(found[:, :k], truth[:, :k]):
        t = t[t >= 0]
        hit += int(np.isin(t, f).sum())
        total += len(t)
    return hit / total if total else 1.0
