"""``/v1/indexes``: create (202, built in the background), list, inspect, delete, add documents, search, mine,
refresh."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from negminer import load_corpus
from negminer._settings import ServiceSettings
from negminer.client.schemas import (
    AddDocuments,
    CreateIndex,
    IndexDeleted,
    IndexInfo,
    ListPage,
    MineRequest,
    MineResponse,
    RefreshRequest,
    SearchHit,
    SearchRequest,
    SearchResponse,
)
from negminer.jobs import JobStore
from negminer.service.api.params import bad_param
from negminer.service.deps import RegistryDep, SettingsDep, StoreDep
from negminer.service.errors import problem_responses
from negminer.service.exceptions import IndexNotFound
from negminer.service.mining import check_mining_limits, mine_index
from negminer.service.model_names import public_model_name, resolve_model
from negminer.service.paths import inside_data_dir


def _shown(info: IndexInfo, settings: ServiceSettings, store: JobStore) -> IndexInfo:
    """The index as answers show it: models by the names ``GET /v1/models`` gives them, never server folders."""
    info.model = public_model_name(info.model, settings, store)
    if info.operation is not None:
        info.operation.model = public_model_name(info.operation.model, settings, store)
    for error in (info.error, info.operation.error if info.operation else None):
        if error is not None:
            error.message = settings.without_paths(error.message)
    return info


router = APIRouter(prefix="/v1/indexes", tags=["indexes"], responses=problem_responses(404, 409, 422))


@router.post("", status_code=202, response_model=IndexInfo)
def create_index(body: CreateIndex, registry: RegistryDep, settings: SettingsDep, models: StoreDep) -> IndexInfo:
    """Start building an index from inline documents, a corpus file in the data dir or another index's documents;
    poll ``GET /v1/indexes/{name}`` for its status."""
    if sum(x is not None for x in (body.documents, body.corpus_file, body.from_index)) != 1:
        raise bad_param("documents", "give exactly one of documents, corpus_file or from_index")
    copied_model = None  # from_index without a model: keep that index's model
    ids: Sequence[str]
    texts: Sequence[str]
    if body.documents is not None:
        if len(body.documents) > settings.max_documents:
            raise HTTPException(413, f"documents: at most {settings.max_documents} per request")
        ids, texts = [d.id for d in body.documents], [d.text for d in body.documents]
    elif body.from_index is not None:
        try:
            snap = registry.snapshot(body.from_index)
        except IndexNotFound:
            raise bad_param("from_index", f"no index {body.from_index!r}") from None
        ids, texts, copied_model = snap.corpus.doc_ids, snap.texts, snap.model  # streamed, not copied
    else:
        ids, texts = load_corpus(inside_data_dir(body.corpus_file or "", settings, "corpus_file", suffixes=(".jsonl",)))
    model = copied_model if body.model is None and copied_model else resolve_model(body.model, settings, models)
    state = registry.create(
        body.name, model, ids, texts, kind=body.kind, labels=body.labels, expires_after=body.expires_after
    )
    return _shown(state.info(), settings, models)


@router.get("", response_model=ListPage[IndexInfo])
def list_indexes(
    registry: RegistryDep,
    settings: SettingsDep,
    store: StoreDep,
    label: Annotated[
        list[str] | None, Query(description="KEY=VALUE: only the indexes with this label (repeatable: all of them)")
    ] = None,
) -> ListPage[IndexInfo]:
    """The indexes (listing renews no lease), optionally those carrying every ``label`` given."""
    wanted = dict(x.partition("=")[::2] for x in label or [])
    data = []
    for n in registry.names():
        info = registry.get(n, renew=False).info()
        if all(info.labels.get(k) == v for k, v in wanted.items()):
            data.append(_shown(info, settings, store))
    return ListPage[IndexInfo](data=data)


@router.get("/{name}", response_model=IndexInfo)
def get_index(name: str, registry: RegistryDep, settings: SettingsDep, store: StoreDep) -> IndexInfo:
    """Status, version, size, model, labels, lease, and the running or last operation with its progress (recorded
    on disk: an operation the service was stopped during reads ``failed`` with ``error.code = "interrupted"``).
    Like every call naming the index, it renews the index's lease."""
    return _shown(registry.get(name).info(), settings, store)


@router.delete("/{name}", response_model=IndexDeleted)
def delete_index(name: str, registry: RegistryDep) -> IndexDeleted:
    """Delete an index: its running operation is cancelled and nothing of it comes back, after a restart either."""
    registry.delete(name)
    return IndexDeleted(name=name)


@router.post("/{name}/search", response_model=SearchResponse, response_model_exclude_none=True)
def search(name: str, body: SearchRequest, registry: RegistryDep, settings: SettingsDep) -> SearchResponse:
    """Top-k documents for each query text (or vector); the response names the index version that answered."""
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
        with np.errstate(over="ignore"):
            vectors = np.asarray(body.vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise bad_param("vectors", "values must be finite float32 numbers")
    version, results = registry.search(name, body.queries, body.top_k, vectors=vectors)
    hits = [[SearchHit(id=i, score=s, text=t if body.return_text else None) for i, s, t in r] for r in results]
    return SearchResponse(index=name, version=version, results=hits)


@router.post("/{name}/documents", status_code=202, response_model=IndexInfo)
def add_documents(
    name: str, body: AddDocuments, registry: RegistryDep, settings: SettingsDep, store: StoreDep
) -> IndexInfo:
    """Add or replace documents by id; the next version is built in the background (only they are encoded)."""
    if len(body.documents) > settings.max_documents:
        raise HTTPException(413, f"documents: at most {settings.max_documents} per request")
    state = registry.add_documents(name, [d.id for d in body.documents], [d.text for d in body.documents])
    return _shown(state.info(), settings, store)


@router.post("/{name}/refresh", status_code=202, response_model=IndexInfo)
def refresh(
    name: str, body: RefreshRequest, registry: RegistryDep, settings: SettingsDep, models: StoreDep
) -> IndexInfo:
    """Re-encode the corpus with a newer checkpoint into the next version; the current one serves until the swap.
    ``GET /v1/indexes/{name}`` shows the operation's progress."""
    registry.get(name)  # an unknown index, or one whose lease ran out, before the model is looked at
    return _shown(registry.refresh(name, resolve_model(body.model, settings, models)).info(), settings, models)


@router.post("/{name}/mine", response_model=MineResponse, response_model_exclude_none=True)
def mine(name: str, body: MineRequest, registry: RegistryDep, settings: SettingsDep) -> MineResponse:
    """Hard negatives for the given queries from the index's corpus, with every mining option of the library."""
    if len(body.queries) > settings.max_batch:
        raise bad_param("queries", f"at most {settings.max_batch} per request")
    total = 0
    for i, q in enumerate(body.queries):
        n = len(q.positive_ids) + len(q.positives)
        if n > settings.max_positives_per_query:
            field = "positive_ids" if len(q.positive_ids) >= len(q.positives) else "positives"
            raise bad_param(
                f"queries.{i}.{field}",
                f"{n} known positives; at most {settings.max_positives_per_query} a query "
                "(NEGMINER_MAX_POSITIVES_PER_QUERY)",
            )
        total += n
    if total > settings.max_positives:
        raise bad_param("queries", f"{total} known positives in all; at most {settings.max_positives} a request")
    check_mining_limits(body.options, settings, "options")
    return mine_index(registry, name, body)
