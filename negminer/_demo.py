"""The built-in demo dataset, made at run time from the Python standard library's own source.

Query = the first line of a public function's or method's docstring; document = that function's source with the
docstring removed. Functions that share a docstring line are several positives of one query: natural false
negatives for a miner that only knows one of them. The *harsh* variant makes a module's docstring line the query
and every public function of that module a positive (the many-positives regime). Nothing is downloaded and the
result is deterministic for a given Python build.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

from negminer._data import RetrievalData, _CorpusBuilder, _merge_queries

__all__ = ["build_demo", "export_demo", "stdlib_functions"]

_SKIP_DIRS = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idlelib",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "__pycache__",
    "pydoc_data",
    "__phello__",
}


def _stdlib_files() -> Iterator[tuple[str, Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        parts = rel.parts
        if any(p in _SKIP_DIRS or p.startswith(("_", "config-", ".")) for p in parts[:-1]):
            continue
        if parts[-1].startswith("_") and parts[-1] != "__init__.py":
            continue
        mod = ".".join(parts[:-1] + ((rel.stem,) if rel.stem != "__init__" else ()))
        if not mod:
            continue
        yield mod, path


def _first_line(doc: str | None) -> str:
    if not doc:
        return ""
    for line in doc.strip().splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def _strip_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> str:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    end = node.end_lineno or node.lineno
    body = getattr(node, "body", [])
    drop: set[int] = set()
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        drop = set(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    kept = [lines[i - 1] for i in range(start, end + 1) if i not in drop]
    return textwrap.dedent("\n".join(kept)).strip("\n")


def stdlib_functions() -> tuple[tuple[str, str, str, str], ...]:
    """(module, qualified name, docstring first line, source without docstring) of public functions, in file order."""
    return _stdlib_functions()


@functools.lru_cache(maxsize=1)
def _stdlib_functions() -> tuple[tuple[str, str, str, str], ...]:
    return tuple(_iter_functions())


def _iter_functions() -> Iterator[tuple[str, str, str, str]]:
    for mod, path in _stdlib_files():
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = source.splitlines()
        items: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                items.append((node.name, node))
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_"):
                        items.append((f"{node.name}.{sub.name}", sub))
        for qualname, fn in items:
            query = _first_line(ast.get_docstring(fn))
            if len(query.split()) < 3:
                continue
            doc = _strip_docstring(fn, lines)
            if doc.count("\n") < 1:
                continue
            yield mod, qualname, query, doc


@functools.lru_cache(maxsize=1)
def _module_docs() -> dict[str, str]:
    out: dict[str, str] = {}
    for mod, path in _stdlib_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        line = _first_line(ast.get_docstring(tree))
        if len(line.split()) >= 3:
            out[mod] = line
    return out


def _rank(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def build_demo(max_docs: int | None = 1500, *, harsh: bool = False) -> RetrievalData:
    """Build the demo data set.

    ``max_docs`` keeps whole query groups, in a fixed pseudo-random order (hash of the query text), until the
    corpus holds about that many documents; None keeps everything. ``harsh=True`` builds the many-positives
    variant (module docstring -> all public functions of the module).
    """
    funcs = stdlib_functions()
    docs = _CorpusBuilder()
    groups: dict[str, list[int]] = {}
    module_docs = dict(_module_docs()) if harsh else {}
    for mod, qualname, query, doc in funcs:
        row = docs.add(doc, f"{mod}.{qualname}")
        key = module_docs.get(mod, "") if harsh else query
        if not key:
            continue
        lst = groups.setdefault(key, [])
        if row not in lst:
            lst.append(row)
    if harsh:
        groups = {q: d for q, d in groups.items() if len(d) >= 2}
    ordered = sorted(groups, key=_rank)
    chosen: list[str] = []
    used: set[int] = set()
    for q in ordered:
        if max_docs is not None and len(used) >= max_docs:
            break
        chosen.append(q)
        used.update(groups[q])
    # Re-number the corpus to the documents in use, keeping their original order.
    keep = sorted(used)
    remap = {old: new for new, old in enumerate(keep)}
    ids = [docs.ids[i] for i in keep]
    texts = [docs.texts[i] for i in keep]
    rows = [("q" + hashlib.sha1(q.encode()).hexdigest()[:12], q, [remap[d] for d in groups[q]]) for q in chosen]
    return _merge_queries(ids, texts, rows, "demo:stdlib" + (":harsh" if harsh else ""))


def export_demo(folder: str | Path, max_docs: int | None = 1500, *, harsh: bool = False, index: str = "demo") -> None:
    """Write the demo data as files, for the README's tour: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``,
    ``qrels/train.tsv`` and ``qrels/test.tsv``, the same 80/20 query split as ``negminer demo``), the training
    and test splits as pairs (``train.jsonl`` and ``test.jsonl``, what ``POST /v1/files`` takes for fine-tuning;
    the test split is the validation file: the training split holds none of the queries a held-out split would
    take, since both splits are drawn by the same hash of the query text), and two request bodies:
    ``index.json`` (``POST /v1/indexes``: the corpus as index ``index``) and ``mine.json`` (``POST
    /v1/indexes/{index}/mine``: the first 20 test queries with their positives' ids, no options). Written to a
    temporary folder and renamed, so a folder that exists is complete."""
    import json

    from negminer._io import atomic_dir

    data = build_demo(max_docs, harsh=harsh)
    train, test = data.split(0.2)
    with atomic_dir(folder) as tmp:
        with open(tmp / "corpus.jsonl", "w", encoding="utf-8") as fh:
            for doc_id, text in zip(data.corpus_ids, data.corpus_texts):
                fh.write(json.dumps({"_id": doc_id, "text": text}) + "\n")
        with open(tmp / "queries.jsonl", "w", encoding="utf-8") as fh:
            for qid, query in zip(data.query_ids, data.queries):
                fh.write(json.dumps({"_id": qid, "text": query}) + "\n")
        (tmp / "qrels").mkdir()
        for name, part in (("train", train), ("test", test)):
            with open(tmp / "qrels" / f"{name}.tsv", "w", encoding="utf-8") as fh:
                fh.write("query-id\tcorpus-id\tscore\n")
                for qid, pos in zip(part.query_ids, part.positives):
                    for p in pos:
                        fh.write(f"{qid}\t{part.corpus_ids[p]}\t1\n")
        for name, part in (("train", train), ("test", test)):
            with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as fh:
                for query, pos in zip(part.queries, part.positives):
                    fh.write(json.dumps({"query": query, "positives": [part.corpus_texts[p] for p in pos]}) + "\n")
        documents = [{"id": d, "text": t} for d, t in zip(data.corpus_ids, data.corpus_texts)]
        (tmp / "index.json").write_text(json.dumps({"name": index, "documents": documents}), encoding="utf-8")
        queries = [
            {"query": q, "positive_ids": [test.corpus_ids[p] for p in pos]}
            for q, pos in list(zip(test.queries, test.positives))[:20]
        ]
        (tmp / "mine.json").write_text(json.dumps({"queries": queries}, indent=1), encoding="utf-8")
