"""Retrieval data in: BEIR folders, pairs JSONL and Hugging Face ``datasets.Dataset`` objects.

Every loader returns a :class:`RetrievalData`: a corpus (ids and texts), unique queries, and for each query the
indices of its positive documents. Repeated query texts merge their positives. Bad input raises
:class:`~negminer.DataError` naming the file, line and field.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from negminer._errors import DataError
from negminer._model import text_problem

logger = logging.getLogger("negminer")

__all__ = [
    "PairsSummary",
    "VALIDATION_SALT",
    "RetrievalData",
    "from_hf_dataset",
    "load_beir",
    "load_corpus",
    "load_data",
    "load_pairs",
    "read_jsonl",
    "scan_pairs",
    "split_buckets",
]


@dataclass
class RetrievalData:
    """Queries with their positive documents inside a corpus.

    ``positives[i]`` lists indices into ``corpus_ids`` / ``corpus_texts`` for query ``i``.
    """

    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    queries: list[str]
    positives: list[list[int]]
    source: str = "memory"
    _id_index: dict[str, int] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.corpus_ids) != len(self.corpus_texts):
            raise DataError("corpus ids and texts differ in length", file=self.source)
        if not (len(self.query_ids) == len(self.queries) == len(self.positives)):
            raise DataError("query ids, queries and positives differ in length", file=self.source)
        n = len(self.corpus_ids)
        for qi, pos in enumerate(self.positives):
            if not pos:
                raise DataError(f"query {self.query_ids[qi]!r} has no positive", file=self.source, field="positives")
            for d in pos:
                if not 0 <= d < n:
                    raise DataError(f"positive index {d} outside the corpus", file=self.source, field="positives")

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def num_pairs(self) -> int:
        """Number of (query, positive) pairs."""
        return sum(len(p) for p in self.positives)

    def doc_index(self, doc_id: str) -> int:
        """Position of a document id in the corpus."""
        if self._id_index is None:
            self._id_index = {d: i for i, d in enumerate(self.corpus_ids)}
        return self._id_index[doc_id]

    def subset(self, query_indices: Iterable[int]) -> RetrievalData:
        """The same corpus with only the given queries."""
        idx = list(query_indices)
        return RetrievalData(
            corpus_ids=self.corpus_ids,
            corpus_texts=self.corpus_texts,
            query_ids=[self.query_ids[i] for i in idx],
            queries=[self.queries[i] for i in idx],
            positives=[list(self.positives[i]) for i in idx],
            source=self.source,
        )

    def split(self, test_fraction: float = 0.2, *, salt: str = "") -> tuple[RetrievalData, RetrievalData]:
        """Split by query into (train, test), deterministically from a hash of each query's text and ``salt``.

        Splits with different salts are independent: the trainer holds out its validation queries with
        :data:`VALIDATION_SALT`, so the training half of a split made here (``negminer demo --export-data``'s
        ``train``) still has queries to hold out."""
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        cut = int(test_fraction * 10_000)
        test = [i for i, q in enumerate(self.queries) if _bucket(q, salt) < cut]
        test_set = set(test)
        train = [i for i in range(len(self.queries)) if i not in test_set]
        return self.subset(train), self.subset(test)

    def hide_positives(self, fraction: float, *, seed: int = 0) -> tuple[RetrievalData, list[list[int]]]:
        """Simulate incomplete labels: hide ``floor(fraction * n)`` of each query's ``n`` positives, at least one
        staying visible. Returns (the data with only the visible positives, each query's hidden positives).

        Which positives are hidden depends only on ``seed``, the query id and the document id (a hash), never on
        the order of the data or on a training seed, so every run of a benchmark hides the same ones. The hidden
        documents stay in the corpus: unlabeled positives, as in real data."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        visible, hidden = [], []
        for qid, pos in zip(self.query_ids, self.positives):
            order = sorted(pos, key=lambda d: _stable_int(f"{seed}\x00{qid}\x00{self.corpus_ids[d]}"))
            k = min(int(fraction * len(order)), len(order) - 1)
            hidden_set = set(order[:k])
            visible.append([d for d in pos if d not in hidden_set])
            hidden.append([d for d in pos if d in hidden_set])
        return self.with_positives(visible), hidden

    def with_positives(self, positives: Sequence[Iterable[int]]) -> RetrievalData:
        """The same corpus and queries with other positives (one list per query, in query order)."""
        if len(positives) != len(self.queries):
            raise ValueError(f"positives for {len(positives)} queries, the data has {len(self.queries)}")
        return RetrievalData(
            corpus_ids=self.corpus_ids,
            corpus_texts=self.corpus_texts,
            query_ids=list(self.query_ids),
            queries=list(self.queries),
            positives=[list(dict.fromkeys(int(d) for d in p)) for p in positives],
            source=self.source,
        )

    def dedup_corpus(self) -> tuple[list[str], list[str], list[int]]:
        """(ids, texts) of the corpus de-duplicated by text (first id wins), and each document's row in it.

        Every component that scores documents (miner, trainer, evaluation, index service) uses this one order, so
        their row numbers agree."""
        docs = _CorpusBuilder()
        rows = [docs.add(t, d) for d, t in zip(self.corpus_ids, self.corpus_texts)]
        return docs.ids, docs.texts, rows

    def pairs(self) -> Iterator[tuple[str, str]]:
        """(query, positive text) pairs, the shape sentence-transformers' ``mine_hard_negatives`` takes."""
        for q, pos in zip(self.queries, self.positives):
            for d in pos:
                yield q, self.corpus_texts[d]

    def to_pairs_dataset(self, anchor: str = "anchor", positive: str = "positive") -> Any:
        """A ``datasets.Dataset`` of (anchor, positive) pairs."""
        from datasets import Dataset

        rows = list(self.pairs())
        return Dataset.from_dict({anchor: [r[0] for r in rows], positive: [r[1] for r in rows]})


VALIDATION_SALT = "validation"  # the trainer's hold-out split: independent of the unsalted train/test split


def _bucket(query: str, salt: str) -> int:
    """The split bucket (0..9999) of a query: the unsalted one is the train/test split's."""
    return _stable_int(f"{salt}\x00{query}" if salt else query) % 10_000


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def _text_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class _CorpusBuilder:
    """A corpus de-duplicated by text: ``add`` returns the row of a text, adding it on first sight."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.texts: list[str] = []
        self._rows: dict[str, int] = {}

    def add(self, text: str, doc_id: str | None = None) -> int:
        row = self._rows.get(text)
        if row is None:
            row = self._rows[text] = len(self.ids)
            self.ids.append(doc_id if doc_id is not None else _text_id("d", text))
            self.texts.append(text)
        return row


def _check_text(value: Any, file: str, line: int, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", file=file, line=line, field=field)
    if not value.strip():
        raise DataError("empty text", file=file, line=line, field=field)
    return value


def read_jsonl(
    path: str | os.PathLike[str], *, max_line_bytes: int | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; bad bytes or JSON raise DataError with the line.
    ``max_line_bytes``: a longer line is refused after reading at most that many bytes of it (memory stays a few
    times the cap, however long the line)."""
    path = str(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below; the error names the file
    except FileNotFoundError:
        raise DataError("file not found", file=path) from None
    limit = -1 if max_line_bytes is None else max_line_bytes + 1
    with fh:
        for lineno, raw in enumerate(iter(lambda: fh.readline(limit), b""), start=1):
            if max_line_bytes is not None and len(raw) - raw.endswith(b"\n") > max_line_bytes:
                raise DataError(f"line longer than {max_line_bytes} bytes", file=path, line=lineno)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", file=path, line=lineno) from None
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"broken JSON: {exc.msg} at column {exc.colno}", file=path, line=lineno) from None
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, got {type(obj).__name__}", file=path, line=lineno)
            if "\\u" in line:  # only a \u escape can spell a lone surrogate or a NUL in valid UTF-8 JSON
                for key, value in obj.items():
                    problem = text_problem(key) or text_problem(value)
                    if problem:
                        field = str(key).encode("utf-8", "replace").decode()
                        raise DataError(problem, file=path, line=lineno, field=field)
            yield lineno, obj


def _text_field(obj: dict[str, Any], name: str, path: str, lineno: int, *, required: bool = True) -> str:
    if name not in obj:
        if required:
            raise DataError("missing", file=path, line=lineno, field=name)
        return ""
    value = obj[name]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", file=path, line=lineno, field=name)
    return value


def _id_field(obj: dict[str, Any], name: str, path: str, lineno: int) -> str:
    if name not in obj:
        raise DataError("missing", file=path, line=lineno, field=name)
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"expected a string id, got {type(value).__name__}", file=path, line=lineno, field=name)
    value = str(value)
    if not value.strip():
        raise DataError("empty id", file=path, line=lineno, field=name)
    return value


def load_corpus(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(ids, texts) of a BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``; the title joins the text)."""
    path = str(path)
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        doc_id = _id_field(obj, "_id", path, lineno)
        title = _text_field(obj, "title", path, lineno, required=False).strip()
        text = _text_field(obj, "text", path, lineno)
        if not text.strip() and not title:
            raise DataError("empty text", file=path, line=lineno, field="text")
        if doc_id in seen:
            raise DataError(
                f"duplicate document id {doc_id!r} (first on line {seen[doc_id]})", file=path, line=lineno, field="_id"
            )
        seen[doc_id] = lineno
        ids.append(doc_id)
        texts.append(f"{title} {text}".strip() if title else text)
    if not ids:
        raise DataError("no documents", file=path)
    return ids, texts


def load_beir(path: str | os.PathLike[str], split: str = "train") -> RetrievalData:
    """Load a BEIR folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` (score > 0 = positive)."""
    root = Path(path)
    corpus_path = str(root / "corpus.jsonl")
    queries_path = str(root / "queries.jsonl")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        found = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise DataError(f"no qrels for split {split!r} (found: {', '.join(found) or 'none'})", file=str(qrels_path))
    corpus_ids, corpus_texts = load_corpus(corpus_path)
    doc_index = {d: i for i, d in enumerate(corpus_ids)}

    query_text: dict[str, str] = {}
    for lineno, obj in read_jsonl(queries_path):
        qid = _id_field(obj, "_id", queries_path, lineno)
        text = _text_field(obj, "text", queries_path, lineno)
        if not text.strip():
            raise DataError("empty text", file=queries_path, line=lineno, field="text")
        if qid in query_text:
            raise DataError(f"duplicate query id {qid!r}", file=queries_path, line=lineno, field="_id")
        query_text[qid] = text

    positives: dict[str, list[int]] = {}
    qpath = str(qrels_path)
    try:
        raw = qrels_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = qrels_path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 ({exc.reason})", file=qpath, line=line) from None
    reader = csv.reader(raw.splitlines(), delimiter="\t")
    for lineno, row in enumerate(reader, start=1):
        if not row or not "".join(row).strip():
            continue
        if lineno == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        if len(row) < 3:
            raise DataError(
                f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}",
                file=qpath,
                line=lineno,
            )
        qid, did, score_s = row[0].strip(), row[1].strip(), row[2].strip()
        try:
            score = float(score_s)
        except ValueError:
            raise DataError(f"not a number: {score_s!r}", file=qpath, line=lineno, field="score") from None
        if qid not in query_text:
            raise DataError(f"unknown query id {qid!r}", file=qpath, line=lineno, field="query-id")
        if did not in doc_index:
            raise DataError(f"unknown document id {did!r}", file=qpath, line=lineno, field="corpus-id")
        if score <= 0:
            continue
        lst = positives.setdefault(qid, [])
        if doc_index[did] not in lst:
            lst.append(doc_index[did])
    if not positives:
        raise DataError("no positive judgements (score > 0)", file=qpath)
    return _merge_queries(
        corpus_ids, corpus_texts, [(qid, query_text[qid], pos) for qid, pos in positives.items()], str(root)
    )


def _merge_queries(
    corpus_ids: list[str],
    corpus_texts: list[str],
    rows: Sequence[tuple[str, str, list[int]]],
    source: str,
) -> RetrievalData:
    """Merge rows whose query *text* repeats (the first id wins), keeping first-seen order."""
    order: dict[str, int] = {}
    qids: list[str] = []
    texts: list[str] = []
    pos: list[list[int]] = []
    for qid, text, positives in rows:
        if text in order:
            target = pos[order[text]]
            target.extend(d for d in positives if d not in target)
            continue
        order[text] = len(texts)
        qids.append(qid)
        texts.append(text)
        pos.append(list(dict.fromkeys(positives)))
    return RetrievalData(corpus_ids, corpus_texts, qids, texts, pos, source=source)


_QUERY_KEYS = ("query", "anchor")
_PAIR_FIELDS = "a query ('query' or 'anchor') and 'positive' (a text) or 'positives' (a list of texts)"


def _fields_found(obj: dict[str, Any]) -> str:
    names = ", ".join(repr(str(k)) for k in list(obj)[:12]) + (", ..." if len(obj) > 12 else "")
    return f"this line has {names or 'no fields'}; a line needs {_PAIR_FIELDS}"


def load_pairs(path: str | os.PathLike[str], corpus: str | os.PathLike[str] | None = None) -> RetrievalData:
    """Load a pairs JSONL: ``{"query": ..., "positive": ...}`` or ``{"query": ..., "positives": [...]}``.

    ``anchor`` is accepted for ``query``. An optional ``corpus`` (BEIR-style ``corpus.jsonl`` with ``_id``/``text``)
    adds documents; positives are always part of the corpus, which is de-duplicated by text.
    """
    path = str(path)
    docs = _CorpusBuilder()
    if corpus is not None:
        for d, t in zip(*load_corpus(str(corpus))):
            docs.add(t, d)

    rows: list[tuple[str, str, list[int]]] = []
    for _lineno, qid, query, positives in _pair_lines(path):
        rows.append((qid, query, [docs.add(text, pid) for text, pid in positives]))
    if not rows:
        raise DataError("no pairs", file=path)
    return _merge_queries(docs.ids, docs.texts, rows, path)


def _pair_lines(
    path: str, max_line_bytes: int | None = None
) -> Iterator[tuple[int, str, str, list[tuple[str, str | None]]]]:
    """(line, query id, query, [(positive text, its id or None)]) of each line of a pairs JSONL, checked."""
    for lineno, obj in read_jsonl(path, max_line_bytes=max_line_bytes):
        qkey = next((k for k in _QUERY_KEYS if k in obj), None)
        if qkey is None:
            raise DataError(f"missing ({_fields_found(obj)})", file=path, line=lineno, field="query")
        query = _check_text(obj[qkey], path, lineno, qkey)
        if "positives" in obj:
            plist = obj["positives"]
            if not isinstance(plist, list) or not plist:
                raise DataError("expected a non-empty list of strings", file=path, line=lineno, field="positives")
            positives: list[tuple[str, str | None]] = [
                (_check_text(p, path, lineno, f"positives[{j}]"), None) for j, p in enumerate(plist)
            ]
        elif "positive" in obj:
            text = _check_text(obj["positive"], path, lineno, "positive")
            pid = obj.get("positive_id")
            positives = [(text, str(pid) if pid else None)]
        else:
            raise DataError(f"missing ({_fields_found(obj)})", file=path, line=lineno, field="positive")
        qid = str(obj.get("query_id") or obj.get("_id") or _text_id("q", query))
        yield lineno, qid, query, positives


@dataclass(frozen=True)
class PairsSummary:
    """What a pairs file holds, counted without loading it: distinct queries, (query, positive) pairs, documents."""

    queries: int
    pairs: int
    documents: int
    split_buckets: tuple[int, int] = (0, 9_999)  # lowest and highest split bucket of a query (see split_buckets)

    def split_leaves(self, fraction: float) -> tuple[bool, bool]:
        """(any training query, any validation query) that :meth:`RetrievalData.split` with ``fraction`` leaves."""
        cut = int(fraction * 10_000)
        low, high = self.split_buckets
        return high >= cut, low < cut


def split_buckets(queries: Iterable[str], salt: str = VALIDATION_SALT) -> tuple[int, int]:
    """The lowest and highest bucket of these queries in the trainer's validation split (``salt``): enough to
    tell, without the data, whether a hold-out of any fraction leaves queries on both sides."""
    buckets = [_bucket(q, salt) for q in queries]
    return (min(buckets), max(buckets)) if buckets else (0, 9_999)


def scan_pairs(path: str | os.PathLike[str], *, max_line_bytes: int | None = None) -> PairsSummary:
    """Check every line of a pairs JSONL as :func:`load_pairs` does and count what it holds, in memory that grows
    by 8 bytes a line, not with the text: uploads are validated this way, so a multi-million-line file never
    lives in memory as strings. Counts are of distinct texts (64-bit hashes; a collision would undercount by one
    in ~10^19)."""
    import array

    import numpy as np

    path = str(path)
    queries, documents, pairs = array.array("q"), array.array("q"), array.array("q")
    low, high = 10_000, -1
    for _lineno, _qid, query, positives in _pair_lines(path, max_line_bytes):
        bucket = _bucket(query, VALIDATION_SALT)
        low, high = min(low, bucket), max(high, bucket)
        q = hash(query)
        queries.append(q)
        for text, _pid in positives:
            d = hash(text)
            documents.append(d)
            pairs.append(hash((q, d)))
    if not queries:
        raise DataError("no pairs", file=path)

    def distinct(values: array.array[int]) -> int:
        return int(np.unique(np.frombuffer(values, dtype=np.int64)).size)

    return PairsSummary(distinct(queries), distinct(pairs), distinct(documents), (low, high))


def from_hf_dataset(
    dataset: Any,
    anchor_column: str | None = None,
    positive_column: str | None = None,
    corpus: Sequence[str] | None = None,
) -> RetrievalData:
    """Read (anchor, positive) pairs from a ``datasets.Dataset``, like sentence-transformers does.

    Without column names the first two columns are used. ``corpus`` adds extra candidate documents.
    """
    columns = list(dataset.column_names)
    source = f"dataset({', '.join(columns)})"
    if anchor_column is None or positive_column is None:
        if len(columns) < 2:
            raise DataError(f"need at least two columns (anchor, positive), got {columns}", file=source)
        anchor_column = anchor_column or columns[0]
        positive_column = positive_column or columns[1]
    for name in (anchor_column, positive_column):
        if name not in columns:
            raise DataError(f"no such column (columns: {columns})", file=source, field=name)
    docs = _CorpusBuilder()
    for t in corpus or []:
        docs.add(t)
    rows: list[tuple[str, str, list[int]]] = []
    for i, (q, p) in enumerate(zip(dataset[anchor_column], dataset[positive_column])):
        _check_text(q, source, i, anchor_column)
        rows.append((_text_id("q", q), q, [docs.add(_check_text(p, source, i, positive_column))]))
    if not rows:
        raise DataError("empty dataset", file=source)
    return _merge_queries(docs.ids, docs.texts, rows, source)


def load_data(path: str | os.PathLike[str], *, split: str = "train", corpus: str | None = None) -> RetrievalData:
    """Load any supported layout: a BEIR folder, a pairs ``.jsonl`` file, a ``.parquet`` / ``.csv`` file of pairs,
    or a saved ``datasets.Dataset`` folder."""
    p = Path(path)
    if p.is_dir():
        if (p / "corpus.jsonl").exists():
            return load_beir(p, split=split)
        if (p / "dataset_info.json").exists() or (p / "state.json").exists() or (p / "dataset_dict.json").exists():
            from datasets import DatasetDict, load_from_disk

            ds = load_from_disk(str(p))
            if isinstance(ds, DatasetDict):
                if split not in ds:
                    raise DataError(f"no split {split!r} (splits: {list(ds)})", file=str(p))
                ds = ds[split]
            return from_hf_dataset(ds, corpus=None)
        raise DataError("not a BEIR folder (no corpus.jsonl) nor a saved datasets.Dataset", file=str(p))
    if not p.exists():
        raise DataError("file not found", file=str(p))
    if p.suffix.lower() in (".parquet", ".csv"):
        return _load_table(p)
    return load_pairs(p, corpus=corpus)


def _load_table(path: Path) -> RetrievalData:
    """A Parquet or CSV file of (anchor, positive) pairs: columns ``query``/``anchor`` and ``positive``; a file
    of exactly two columns by other names is read by position, as sentence-transformers reads datasets (and says
    so in the log). Other columns are refused, naming them."""
    import pyarrow as pa
    from datasets import Dataset

    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read: {exc}", file=str(path)) from None
    cols = table.column_names
    anchor = next((c for c in _QUERY_KEYS if c in cols), None)
    positive = "positive" if "positive" in cols else None
    if not (anchor and positive):
        if len(cols) != 2:
            found = ", ".join(repr(c) for c in cols[:12]) or "none"
            raise DataError(
                f"columns {found}: need a 'query' (or 'anchor') and a 'positive' column, or exactly two columns "
                "(read in order as query, positive)",
                file=str(path),
            )
        logger.warning(
            "%s: no 'query'/'anchor' and 'positive' columns; reading %r as the query and %r as the positive "
            "(the two columns in order, as sentence-transformers reads a dataset)",
            path,
            cols[0],
            cols[1],
        )
    try:
        data = from_hf_dataset(
            Dataset(table), anchor_column=anchor and positive and anchor, positive_column=anchor and positive
        )
    except DataError as exc:  # row i is line i + 2 of a CSV (after its header), row i + 1 of a Parquet file
        line = None if exc.line is None else exc.line + (2 if path.suffix.lower() == ".csv" else 1)
        raise DataError(exc.message, file=str(path), line=line, field=exc.field) from None
    data.source = str(path)
    return data
