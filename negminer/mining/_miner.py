"""Hard-negative mining: encode, search in query chunks, filter false negatives, select negatives."""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from negminer._data import RetrievalData
from negminer._errors import ConfigError, config_error
from negminer._io import release_pages
from negminer._vocab import FilterRule, values
from negminer.index import AUTO_FLAT_MAX, Encoder, IndexConfig, VectorIndex
from negminer.mining import _filters as F
from negminer.mining._config import MiningConfig
from negminer.mining._output import MiningResult
from negminer.mining._report import MiningReport
from negminer.mining._teacher import Teacher, as_teacher

__all__ = ["mine", "mine_vectors", "MiningResult", "RULES", "StackedRows"]

logger = logging.getLogger("negminer")

MAX_PLOT_SCORES = 1_000_000  # removed-candidate scores kept per rule for the report's plot
NEIGHBOURHOOD_BLOCK = 1 << 22  # candidate x positive similarities held at once by the neighbourhood rule (16 MB)

RULES = values(FilterRule)  # the order in which they apply
STREAM_MIN_DOCS = AUTO_FLAT_MAX  # larger corpora are encoded into a memory-mapped file, never held in memory
MAX_TUNE_DEPTH = 256  # recall of an approximate index is measured (and tuned) at the search depth, up to this


class StackedRows:
    """Rows of ``base`` (an array or memory map) followed by the rows of ``extra``, indexed as one array without
    copying ``base``: a persisted index's vectors plus the vectors of positives outside it."""

    def __init__(self, base: np.ndarray, extra: np.ndarray) -> None:
        self.base, self.extra = base, extra
        self.n = len(base)
        self.shape = (self.n + len(extra), *tuple(base.shape[1:]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        idx = np.asarray(rows, dtype=np.int64)
        out = np.empty((*idx.shape, *self.shape[1:]), dtype=self.base.dtype)
        low = idx < self.n
        out[low] = self.base[idx[low]]
        out[~low] = self.extra[idx[~low] - self.n]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.concatenate([np.asarray(self.base, dtype=dtype), np.asarray(self.extra, dtype=dtype)])


Rows = np.ndarray | StackedRows  # corpus vectors: an array, a memory map, or one stacked with extra rows


class RowNames(Sequence[str]):
    """``"0"``, ``"1"``... : the ids of rows that have no other name (vectors mined without texts)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [str(j) for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return str(i % self.n)


@dataclass
class _Chunk:
    negatives: np.ndarray
    negative_scores: np.ndarray
    positive_scores: list[np.ndarray]
    removed: np.ndarray  # (n, len(RULES)) counts
    masked: np.ndarray  # positives masked per query
    candidates: np.ndarray  # alive candidates after masking, per query
    depth: np.ndarray
    before_filters: np.ndarray  # candidate scores after masking positives, before the filters
    removed_masks: dict[str, np.ndarray]  # per rule, which candidates it removed

    def removed_scores(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Scores of the candidates each rule removed, for the given rows of the chunk."""
        return {k: self.before_filters[rows][m[rows]] for k, m in self.removed_masks.items()}


class _Miner:
    def __init__(
        self,
        cfg: MiningConfig,
        index: VectorIndex,
        q_vecs: np.ndarray,
        doc_vecs: Rows,
        queries: Sequence[str],
        doc_texts: Sequence[str],
        positives: list[list[int]],
        teacher: Teacher | None,
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.q_vecs = q_vecs
        self.doc_vecs = doc_vecs
        self.queries = queries
        self.doc_texts = doc_texts
        self.positives = positives
        self.teacher = teacher
        self.rng = np.random.default_rng(cfg.seed)  # reseeded per query chunk (chunks may run anywhere, any order)
        self.max_positives = max(len(p) for p in positives)
        self.range_max = cfg.resolved_range_max(self.max_positives)
        self.timing = {"search": 0.0, "teacher": 0.0, "neighbourhood": 0.0, "filter": 0.0}

    def neighbourhood(self, qidx: np.ndarray, rows: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(:func:`neighbourhood_z` (NaN when the rule is off), the highest cosine to a known positive) of a chunk's
        candidates, computed in blocks of queries (bounded memory). The query's own positives, still candidates with
        ``include_positives``, are neither measured nor removed (NaN)."""
        n, depth = rows.shape
        width = max(len(self.positives[q]) for q in qidx)
        z = np.full((n, depth), np.nan, dtype=np.float32)
        closest = np.full((n, depth), np.nan, dtype=np.float32)
        block = max(1, NEIGHBOURHOOD_BLOCK // max(1, depth * width))
        for start in range(0, n, block):
            stop = min(n, start + block)
            sims = np.full((stop - start, depth, width), np.nan, dtype=np.float32)
            for i in range(start, stop):
                pos = self.positives[qidx[i]]
                sims[i - start, :, : len(pos)] = self.doc_vecs[np.maximum(rows[i], 0)] @ self.doc_vecs[pos].T
                sims[i - start, np.isin(rows[i], pos)] = np.nan  # a kept positive (include_positives) stays
            if self.cfg.positive_neighbourhood is not None:
                z[start:stop] = F.neighbourhood_z(sims, alive[start:stop], window=self.cfg.neighbourhood_window)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: a kept positive
                closest[start:stop] = np.where(alive[start:stop], np.nanmax(sims, axis=2), np.nan)
        return z, closest

    def sibling_thresholds(self, qidx: np.ndarray) -> np.ndarray:
        """:func:`sibling_thresholds` of a chunk's queries."""
        assert self.cfg.positive_siblings is not None
        vecs = [np.asarray(self.doc_vecs[sorted(self.positives[q])]) for q in qidx]
        return F.sibling_thresholds(vecs, self.cfg.positive_siblings)

    def run_chunk(self, qidx: np.ndarray, depth: int) -> _Chunk:
        cfg = self.cfg
        t0 = time.perf_counter()
        scores, rows = self.index.search(self.q_vecs[qidx], depth)
        t1 = time.perf_counter()
        self.timing["search"] += t1 - t0
        n = len(qidx)
        pos_lists = [self.positives[q] for q in qidx]
        width = max(len(p) for p in pos_lists)
        pos_scores = np.full((n, width), np.nan, dtype=np.float32)
        for i, (q, p) in enumerate(zip(qidx, pos_lists)):
            pos_scores[i, : len(p)] = self.doc_vecs[p] @ self.q_vecs[q]
        if self.teacher is not None:
            scores, rows, pos_scores = self._rescore(qidx, scores, rows, pos_scores)
            t2 = time.perf_counter()
            self.timing["teacher"] += t2 - t1
            t1 = t2
        scores = scores.copy()
        masked = np.zeros(n, dtype=np.int64)
        if not cfg.include_positives:
            for i, p in enumerate(pos_lists):
                hit = np.isin(rows[i], p)
                masked[i] = int(hit.sum())
                scores[i, hit] = -np.inf
        candidates = np.isfinite(scores).sum(axis=1)
        removed = np.zeros((n, len(RULES)), dtype=np.int64)
        removed_masks: dict[str, np.ndarray] = {}
        before_filters = scores.copy()
        pos_ref = F.positive_reference(pos_scores)
        masks: list[tuple[str, Any]] = []
        if cfg.positive_neighbourhood is not None or cfg.positive_siblings is not None:
            t_nb = time.perf_counter()
            z, closest = self.neighbourhood(qidx, rows, np.isfinite(scores) & (rows >= 0))
            if cfg.positive_neighbourhood is not None:
                k = cfg.positive_neighbourhood
                masks.append(("positive_neighbourhood", lambda s: F.positive_neighbourhood_mask(s, z, k)))
            if cfg.positive_siblings is not None:
                near = np.nan_to_num(closest, nan=-np.inf) >= self.sibling_thresholds(qidx)[:, None]
                masks.append(("positive_siblings", lambda s: np.isfinite(s) & near))
            self.timing["neighbourhood"] += time.perf_counter() - t_nb
        if cfg.absolute_margin is not None:
            masks.append(("absolute_margin", lambda s: F.absolute_margin_mask(s, pos_ref, cfg.absolute_margin)))
        if cfg.relative_margin is not None:
            masks.append(("relative_margin", lambda s: F.relative_margin_mask(s, pos_ref, cfg.relative_margin)))
        if cfg.adaptive_margin is not None:
            thresholds = F.adaptive_thresholds(
                scores,
                pos_scores,
                margin=cfg.adaptive_margin,
                quantile=cfg.adaptive_quantile,
                window=cfg.adaptive_window,
            )
            masks.append(("adaptive_margin", lambda s: F.threshold_mask(s, thresholds)))
        if cfg.max_score is not None:
            masks.append(("max_score", lambda s: F.max_score_mask(s, cfg.max_score)))
        if cfg.min_score is not None:
            masks.append(("min_score", lambda s: F.min_score_mask(s, cfg.min_score)))
        for name, fn in masks:
            m = fn(scores)
            removed[:, RULES.index(name)] = m.sum(axis=1)
            removed_masks[name] = m
            scores[m] = -np.inf
        cols = F.select_negatives(
            scores,
            range_min=cfg.range_min,
            range_max=self.range_max,
            num_negatives=cfg.num_negatives,
            sampling_strategy=cfg.sampling_strategy,
            rng=self.rng,
        )
        safe = np.maximum(cols, 0)
        negatives = np.where(cols >= 0, np.take_along_axis(rows, safe, axis=1), -1)
        neg_scores = np.where(cols >= 0, np.take_along_axis(scores, safe, axis=1), np.nan).astype(np.float32)
        self.timing["filter"] += time.perf_counter() - t1
        return _Chunk(
            negatives,
            neg_scores,
            [pos_scores[i, : len(p)] for i, p in enumerate(pos_lists)],
            removed,
            masked,
            candidates,
            np.full(n, depth),
            before_filters,
            removed_masks,
        )

    def _rescore(
        self,
        qidx: np.ndarray,
        scores: np.ndarray,
        rows: np.ndarray,
        pos_scores: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.teacher is not None
        queries = [self.queries[q] for q in qidx]
        docs = [
            [self.doc_texts[r] for r in row if r >= 0] + [self.doc_texts[p] for p in self.positives[q]]
            for q, row in zip(qidx, rows)
        ]
        rescored = self.teacher.score(queries, docs)
        new_scores = np.full_like(scores, -np.inf)
        new_rows = np.full_like(rows, -1)
        new_pos = np.full_like(pos_scores, np.nan)
        for i, row in enumerate(rows):
            valid = row[row >= 0]
            s = np.asarray(rescored[i], dtype=np.float32)
            cand, pos = s[: len(valid)], s[len(valid) :]
            order = np.argsort(-cand, kind="stable")
            new_scores[i, : len(valid)] = cand[order]
            new_rows[i, : len(valid)] = valid[order]
            new_pos[i, : len(pos)] = pos
        return new_scores, new_rows, new_pos

    def chunk(self, qidx: np.ndarray, depth0: int, max_depth: int) -> list[tuple[np.ndarray, _Chunk, np.ndarray]]:
        """Mine one chunk of queries, deepening the search for the ones the filters left short: (query rows,
        results, which of them are final) per pass. Random sampling is seeded by the chunk's first query, so a
        chunk gives the same negatives in this process or in a Ray task."""
        self.rng = np.random.default_rng([self.cfg.seed, int(qidx[0]) if len(qidx) else 0])
        out = []
        depth = depth0
        while len(qidx):
            ch = self.run_chunk(qidx, depth)
            is_short = (ch.negatives < 0).any(axis=1)
            again = self.cfg.deepens and depth < max_depth
            out.append((qidx, ch, np.asarray(~is_short) if again else np.ones(len(qidx), dtype=bool)))
            if not again:
                break
            qidx = qidx[is_short]
            depth = min(max_depth, depth * 4)
        return out

    def __getstate__(self) -> dict[str, Any]:  # Ray ships the miner to its tasks
        state = self.__dict__.copy()
        state["q_vecs"], state["doc_vecs"] = np.asarray(self.q_vecs), np.asarray(self.doc_vecs)
        state["queries"] = state["doc_texts"] = None  # only a teacher reads texts, and it does not run in Ray
        return state


def _corpus_vectors(
    encoder: Encoder, texts: Sequence[str], cfg: MiningConfig, work: Path | None, ray: str | bool | None
) -> np.ndarray:
    """The corpus vectors: in memory for a small corpus, a memory-mapped file in ``work`` for a large one; with
    ``ray``, the texts the cache lacks are encoded on the Ray cluster first (then read from the cache)."""
    kw: dict[str, Any] = {"kind": "document", "prompt": cfg.corpus_prompt, "prompt_name": cfg.corpus_prompt_name}
    if ray:
        from negminer.index import ray_encode

        ray_encode(encoder, texts, address=ray, **kw)
    if work is None:
        return encoder.encode(list(texts), desc="corpus", **kw)
    return encoder.encode_to(texts, work / "corpus.npy", desc="corpus", **kw)


def _config(config: MiningConfig | None, options: dict[str, Any]) -> MiningConfig:
    """``config`` as given (validated when it was built), or with ``options`` over it, validated once; the first
    bad option becomes the error's param."""
    if config is not None and not options:
        return config
    try:
        return MiningConfig(**{**(config.model_dump() if config else {}), **options})
    except ValueError as exc:  # pydantic's ValidationError
        raise config_error(exc) from None


def _index_of(index: IndexConfig | VectorIndex | str | None) -> IndexConfig | VectorIndex:
    if isinstance(index, (IndexConfig, VectorIndex)):
        return index
    try:
        return IndexConfig() if index is None else IndexConfig(index=index)
    except ValueError as exc:
        raise config_error(exc) from None


def mine(
    data: RetrievalData,
    encoder: Encoder | None = None,
    *,
    config: MiningConfig | None = None,
    teacher: Any = None,
    index: IndexConfig | VectorIndex | str | None = None,
    index_backend: str = "auto",
    device: str = "auto",
    ray: str | bool | None = None,
    work_dir: str | Path | None = None,
    show_progress: bool = True,
    **options: Any,
) -> MiningResult:
    """Mine hard negatives for every query of ``data`` from its corpus.

    Without a filter option the recommended false-negative filter applies (``filter="recommended"``, as in
    ``negminer mine`` and ``POST /mine``); ``filter="none"`` gives sentence-transformers' ``mine_hard_negatives``.
    Options are those of :class:`MiningConfig` (``num_negatives``, ``range_min``, ``range_max``,
    ``positive_neighbourhood``, ``absolute_margin``, ``relative_margin``, ``adaptive_margin``, ``max_score``,
    ``min_score``, ``sampling_strategy``...), given as ``config`` or keyword arguments; the filters apply in the
    order of :data:`RULES`. ``teacher`` (an :class:`Encoder`, ``SentenceTransformer`` or ``CrossEncoder``)
    re-scores candidates and positives before the filters (the neighbourhood rule keeps using ``encoder``'s
    document vectors).

    ``index``: an :class:`~negminer.index.IndexConfig` (or just its kind: ``auto``, ``flat``, ``ivf``, ``ivfpq``,
    ``hnsw``), or a built :class:`~negminer.index.VectorIndex` over the corpus rows. ``auto`` searches exactly up to
    100k documents and picks an approximate index above, tuned to the recall target on a sample of the queries
    (the report's ``index.recall``). A corpus above 100k documents is encoded into a memory-mapped file under
    ``work_dir`` (default: a temporary folder), so its vectors are never all in memory. ``ray`` (an address,
    ``"auto"`` or True for a local Ray) runs the query chunks as Ray tasks, with the same results.
    The corpus is de-duplicated by text, like sentence-transformers; queries are already unique in ``data``.
    """
    cfg = _config(config, options)
    if len(data) == 0:
        raise ConfigError("no queries to mine", param="data")
    index_choice = _index_of(index)
    t_start = time.perf_counter()
    encoder = encoder or Encoder(batch_size=cfg.batch_size, show_progress=show_progress)
    teach = as_teacher(teacher) if teacher is not None else None
    doc_ids, doc_texts, doc2u = data.dedup_corpus()
    positives = [list(dict.fromkeys(int(doc2u[d]) for d in pos)) for pos in data.positives]

    with _WorkDir(work_dir, len(doc_texts), encoder) as work:
        t0 = time.perf_counter()
        stats_before = (encoder.stats.cached, encoder.stats.encoded)
        doc_vecs = _corpus_vectors(encoder, doc_texts, cfg, work, ray)
        q_vecs = encoder.encode(
            list(data.queries),
            kind="query",
            prompt=cfg.query_prompt,
            prompt_name=cfg.query_prompt_name,
            desc="queries",
        )
        t_encode = time.perf_counter() - t0
        return _mine(
            cfg,
            q_vecs,
            doc_vecs,
            positives,
            index=index_choice,
            backend=index_backend,
            device=device,
            queries=data.queries,
            query_ids=data.query_ids,
            doc_ids=doc_ids,
            doc_texts=doc_texts,
            teacher=teach,
            ray=ray,
            show_progress=show_progress,
            t_start=t_start,
            report_extra={
                "data_source": data.source,
                "corpus_rows": len(data.corpus_texts),
                "timings": {"encode": t_encode},
                "encoder": {
                    "model": encoder.name,
                    "fingerprint": encoder.fingerprint,
                    "cached": encoder.stats.cached - stats_before[0],
                    "encoded": encoder.stats.encoded - stats_before[1],
                },
            },
        )


class _WorkDir:
    """A folder for the corpus vectors of a large corpus (``work_dir`` or a temporary one); None for a small one."""

    def __init__(self, work_dir: str | Path | None, n_docs: int, encoder: Encoder) -> None:
        self.path = Path(work_dir) if work_dir is not None else None
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        if self.path is None and n_docs > STREAM_MIN_DOCS:
            self.tmp = encoder.scratch_dir("negminer-mine-")
            self.path = Path(self.tmp.name)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Path | None:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def mine_vectors(
    query_vectors: np.ndarray,
    doc_vectors: Rows,
    positives: Sequence[Sequence[int]],
    *,
    config: MiningConfig | None = None,
    index: IndexConfig | VectorIndex | str | None = None,
    index_backend: str = "auto",
    device: str = "auto",
    queries: Sequence[str] | None = None,
    doc_ids: Sequence[str] | None = None,
    doc_texts: Sequence[str] | None = None,
    ray: str | bool | None = None,
    show_progress: bool = True,
    **options: Any,
) -> MiningResult:
    """Mine negatives from vectors already encoded (unit rows; ``doc_vectors`` may be a memory map, e.g. a corpus
    :meth:`~negminer.index.Encoder.encode_to` wrote): ``positives[i]`` are the corpus rows of query ``i``. The same
    search, filters and report as :func:`mine`, without a teacher; ids default to row numbers."""
    cfg = _config(config, options)
    n_q, n_d = len(query_vectors), len(doc_vectors)
    if n_q == 0:
        raise ConfigError("no queries to mine", param="query_vectors")
    if len(positives) != n_q:
        raise ConfigError(f"{len(positives)} positive lists for {n_q} queries", param="positives")
    pos = [list(dict.fromkeys(int(p) for p in ps)) for ps in positives]
    for i, ps in enumerate(pos):
        if not ps or min(ps) < 0 or max(ps) >= n_d:
            raise ConfigError(f"query {i}: positives must be 1+ corpus rows in 0..{n_d - 1}", param="positives")
    return _mine(
        cfg,
        np.asarray(query_vectors, dtype=np.float32),
        doc_vectors,
        pos,
        index=_index_of(index),
        backend=index_backend,
        device=device,
        queries=queries if queries is not None else RowNames(n_q),
        query_ids=RowNames(n_q),
        doc_ids=doc_ids if doc_ids is not None else RowNames(n_d),
        doc_texts=doc_texts if doc_texts is not None else RowNames(n_d),
        teacher=None,
        ray=ray,
        show_progress=show_progress,
        t_start=time.perf_counter(),
        report_extra={"data_source": "vectors", "corpus_rows": n_d, "timings": {}, "encoder": {}},
    )


def _build_index(
    choice: IndexConfig | VectorIndex,
    doc_vecs: Rows,
    q_vecs: np.ndarray,
    depth: int,
    backend: str,
    device: str,
    seed: int,
) -> VectorIndex:
    """The index to search: the one given (its rows are the corpus rows), or the one ``choice`` plans, tuned at the
    search depth on a sample of the queries."""
    if isinstance(choice, VectorIndex):  # rows past its end (positives outside the index) are never candidates
        if choice.ntotal > len(doc_vecs):
            raise ConfigError(f"the index holds {choice.ntotal} vectors, the corpus {len(doc_vecs)}", param="index")
        return choice
    return VectorIndex.for_vectors(
        np.asarray(doc_vecs) if isinstance(doc_vecs, StackedRows) else doc_vecs,
        choice,
        queries=q_vecs,
        k=max(1, min(depth, MAX_TUNE_DEPTH)),
        backend=backend,  # type: ignore[arg-type]
        device=device,  # type: ignore[arg-type]
        seed=seed,
    )


def _chunks_of(n: int, size: int) -> Iterator[np.ndarray]:
    for start in range(0, n, size):
        yield np.arange(start, min(n, start + size))


def _mine(
    cfg: MiningConfig,
    q_vecs: np.ndarray,
    doc_vecs: Rows,
    positives: list[list[int]],
    *,
    index: IndexConfig | VectorIndex,
    backend: str,
    device: str,
    queries: Sequence[str],
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    doc_texts: Sequence[str],
    teacher: Teacher | None,
    ray: str | bool | None,
    show_progress: bool,
    t_start: float,
    report_extra: dict[str, Any],
) -> MiningResult:
    n_q = len(q_vecs)
    max_positives = max(len(p) for p in positives)
    depth0 = cfg.resolved_range_max(max_positives) + max_positives
    if cfg.positive_neighbourhood is not None:  # the rule's statistics need its window of candidates
        depth0 = max(depth0, cfg.neighbourhood_window + max_positives)
    depth0 = min(depth0, len(doc_vecs))

    t0 = time.perf_counter()
    # Recall is measured at the whole search depth: the neighbourhood rule's statistics read every candidate, and
    # tuning only the ranks negatives come from (range_max) kept fewer of exact mining's negatives at 1M documents
    # (docs/scale.md).
    vindex = _build_index(index, doc_vecs, q_vecs, depth0, backend, device, cfg.seed)
    t_index = time.perf_counter() - t0

    depth0 = min(depth0, vindex.ntotal)
    miner = _Miner(cfg, vindex, q_vecs, doc_vecs, queries, doc_texts, positives, teacher)
    max_depth = min(vindex.ntotal, max(cfg.max_depth, depth0))

    num = cfg.num_negatives
    negatives = np.full((n_q, num), -1, dtype=np.int64)
    neg_scores = np.full((n_q, num), np.nan, dtype=np.float32)
    pos_scores: list[np.ndarray] = [np.zeros(0, np.float32)] * n_q
    removed = np.zeros((n_q, len(RULES)), dtype=np.int64)
    masked = np.zeros(n_q, dtype=np.int64)
    candidates = np.zeros(n_q, dtype=np.int64)
    depth_used = np.zeros(n_q, dtype=np.int64)
    removed_scores: dict[str, list[np.ndarray]] = {}

    def store(qidx: np.ndarray, ch: _Chunk, final: np.ndarray) -> None:
        """Keep a chunk's results; ``final`` marks its rows that will not be searched again."""
        negatives[qidx] = ch.negatives
        neg_scores[qidx] = ch.negative_scores
        for i, q in enumerate(qidx):
            pos_scores[q] = ch.positive_scores[i]
        removed[qidx] = ch.removed
        masked[qidx] = ch.masked
        candidates[qidx] = ch.candidates
        depth_used[qidx] = ch.depth
        for k, v in ch.removed_scores(final).items():
            kept = removed_scores.setdefault(k, [])
            if sum(len(a) for a in kept) < MAX_PLOT_SCORES:
                kept.append(v)

    bar = tqdm(total=n_q, desc="Mining", unit="query", disable=not show_progress)
    chunks = _chunks_of(n_q, cfg.chunk_size)
    if ray:
        if teacher is not None:
            raise ConfigError("a teacher cannot run in Ray tasks yet; mine in process", param="ray")
        from negminer.mining._ray import map_chunks

        results: Iterator[tuple[list[tuple[np.ndarray, _Chunk, np.ndarray]], dict[str, float]]] = map_chunks(
            miner, list(chunks), depth0, max_depth, address=ray
        )
    else:
        results = ((miner.chunk(qidx, depth0, max_depth), {}) for qidx in chunks)
    for passes, timing in results:
        for qidx, ch, final in passes:
            store(qidx, ch, final)
        release_pages(doc_vecs)  # rows a chunk read from a memory-mapped corpus leave this process's RSS
        for k, v in timing.items():
            miner.timing[k] = miner.timing.get(k, 0.0) + v
        bar.update(len(passes[0][0]) if passes else 0)
    bar.close()

    report = MiningReport.build(
        cfg=cfg,
        data_source=report_extra["data_source"],
        positives=positives,
        pos_scores=pos_scores,
        negatives=negatives,
        neg_scores=neg_scores,
        removed=removed,
        rules=RULES,
        masked=masked,
        candidates=candidates,
        depth_used=depth_used,
        depth0=depth0,
        range_max=miner.range_max,
        corpus_size=len(doc_vecs),
        corpus_rows=report_extra["corpus_rows"],
        timings={
            **report_extra["timings"],
            "index": t_index,
            **miner.timing,
            "total": time.perf_counter() - t_start,
        },
        encoder=report_extra["encoder"],
        index=vindex.describe(),
        teacher=getattr(teacher, "name", None),
    )
    removed_held = {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in removed_scores.items()}
    report.add_histograms(removed_held)
    return MiningResult(
        queries=queries,
        query_ids=query_ids,
        doc_ids=doc_ids,
        doc_texts=doc_texts,
        positives=positives,
        positive_scores=pos_scores,
        negatives=negatives,
        negative_scores=neg_scores,
        config=cfg,
        report=report,
        search_depth=depth_used,
        removed_scores=removed_held,
    )
