"""``/v1/indexes``: create (202, built in the background), list, inspect, delete, search."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from negminer.index import IndexNotFound
from negminer.mining import MiningConfig
from negminer.service.deps import RegistryDep, SettingsDep, StoreDep
from negminer.service.models import bad_param, inside_data_dir, resolve_model

router = APIRouter(prefix="/v1/indexes", tags=["indexes"])


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)


class CreateIndex(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    model: str | None = Field(None, description="a registered model name (GET /v1/models) or a model folder inside "
                              "the data dir; default: the service's model (from_index: that index's model)")
    documents: list[Document] | None = Field(None, min_length=1, description="inline documents, or corpus_file")
    corpus_file: str | None = Field(None, description="a corpus.jsonl (_id, title, text) inside the data dir")
    from_index: str | None = Field(None, description="copy the documents of this index (its current version)")
    kind: Literal["flat", "ivf", "hnsw"] = "flat"


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[str] | None = Field(None, min_length=1, description="query texts, or give vectors")
    vectors: list[list[float]] | None = Field(None, min_length=1, description="query vectors (unit length)")
    top_k: int = Field(10, ge=1)
    return_text: bool = False


class AddDocuments(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[Document] = Field(min_length=1)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, description="a registered model name (a fine-tuned model or checkpoint) or a "
                       "model folder inside the data dir")


class MineQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    positive_ids: list[str] = Field(default_factory=list, description="ids of positive documents of the index")
    positives: list[str] = Field(default_factory=list, description="positive texts (added to the candidates)")


class MineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[MineQuery] = Field(min_length=1)
    options: MiningConfig = Field(default_factory=MiningConfig)
    output_format: Literal["triplet", "n-tuple", "labeled-pair", "labeled-list"] | None = None
    output_scores: bool = False
    return_text: bool = False


@router.post("", status_code=202)
def create_index(body: CreateIndex, registry: RegistryDep, settings: SettingsDep, models: StoreDep) -> dict[str, Any]:
    """Start building an index from inline documents or a corpus file in the data dir; poll
    ``GET /v1/indexes/{name}`` for its status."""
    from negminer._data import _load_corpus_jsonl

    if sum(x is not None for x in (body.documents, body.corpus_file, body.from_index)) != 1:
        raise bad_param("documents", "give exactly one of documents, corpus_file or from_index")
    copied_model = None  # from_index without a model: keep that index's model
    if body.documents is not None:
        if len(body.documents) > settings.max_documents:
            raise HTTPException(413, f"documents: at most {settings.max_documents} per request")
        ids, texts = [d.id for d in body.documents], [d.text for d in body.documents]
    elif body.from_index is not None:
        try:
            _, current, texts, copied_model = registry.snapshot(body.from_index)
        except IndexNotFound:
            raise bad_param("from_index", f"no index {body.from_index!r}") from None
        ids, texts = list(current.doc_ids), list(texts)
    else:
        ids, texts = _load_corpus_jsonl(str(inside_data_dir(body.corpus_file or "", settings, "corpus_file")))
    model = copied_model if body.model is None and copied_model else resolve_model(body.model, settings, models)
    return registry.create(body.name, model, ids, texts, kind=body.kind).info()


@router.get("")
def list_indexes(registry: RegistryDep) -> dict[str, Any]:
    return {"object": "list", "data": [registry.get(n).info() for n in registry.names()], "has_more": False}


@router.get("/{name}")
def get_index(name: str, registry: RegistryDep) -> dict[str, Any]:
    return registry.get(name).info()


@router.delete("/{name}")
def delete_index(name: str, registry: RegistryDep) -> dict[str, Any]:
    registry.delete(name)
    return {"name": name, "deleted": True}


@router.post("/{name}/search")
def search(name: str, body: SearchRequest, registry: RegistryDep, settings: SettingsDep) -> dict[str, Any]:
    """Top-k documents for each query text; the response names the index version that answered."""
    if (body.queries is None) == (body.vectors is None):
        raise bad_param("queries", "give exactly one of queries or vectors")
    n = len(body.queries or body.vectors or [])
    if n > settings.max_batch:
        raise bad_param("queries" if body.queries else "vectors", f"at most {settings.max_batch} per request")
    if body.top_k > settings.max_top_k:
        raise bad_param("top_k", f"at most {settings.max_top_k}")
    vectors = None
    if body.vectors is not None:
        import numpy as np

        if len({len(v) for v in body.vectors}) != 1:
            raise bad_param("vectors", "all vectors must have the same length")
        vectors = np.asarray(body.vectors, dtype=np.float32)
    version, results = registry.search(name, body.queries, body.top_k, vectors=vectors)
    if not body.return_text:
        results = [[{k: v for k, v in hit.items() if k != "text"} for hit in hits] for hits in results]
    return {"index": name, "version": version, "results": results}


@router.post("/{name}/documents", status_code=202)
def add_documents(name: str, body: AddDocuments, registry: RegistryDep, settings: SettingsDep) -> dict[str, Any]:
    """Add or replace documents by id; the next version is built in the background (only they are encoded)."""
    if len(body.documents) > settings.max_documents:
        raise HTTPException(413, f"documents: at most {settings.max_documents} per request")
    return registry.add_documents(name, [d.id for d in body.documents], [d.text for d in body.documents]).info()


@router.post("/{name}/refresh", status_code=202)
def refresh(name: str, body: RefreshRequest, registry: RegistryDep, settings: SettingsDep,
            models: StoreDep) -> dict[str, Any]:
    """Re-encode the corpus with a newer checkpoint into the next version; the current one serves until the swap.
    ``GET /v1/indexes/{name}`` shows the operation's progress."""
    return registry.refresh(name, resolve_model(body.model, settings, models)).info()


@router.post("/{name}/mine")
def mine(name: str, body: MineRequest, registry: RegistryDep, settings: SettingsDep) -> dict[str, Any]:
    """Hard negatives for the given queries from the index's corpus, with every mining option of the library."""
    if len(body.queries) > settings.max_batch:
        raise bad_param("queries", f"at most {settings.max_batch} per request")
    version, res = registry.mine(name, [q.query for q in body.queries], [q.positive_ids for q in body.queries],
                                 [q.positives for q in body.queries],
                                 body.options.model_dump(exclude_unset=True))
    out: dict[str, Any] = {"index": name, "version": version, "results": [], "report": res.report.to_dict()}
    for i, q in enumerate(res.queries):
        negatives = [{"id": d, "score": s} for d, s in res.negatives_of(i)]
        if body.return_text:
            for neg, row in zip(negatives, (r for r in res.negatives[i] if r >= 0)):
                neg["text"] = res.doc_texts[row]
        out["results"].append({
            "query": q,
            "negatives": negatives,
            "positive_scores": [float(x) for x in res.positive_scores[i]],
        })
    if body.output_format:
        out["rows"] = res.rows(body.output_format, output_scores=body.output_scores)
    return out
