"""Every request body and response of the REST API, in one module.

Routes declare these as bodies and ``response_model``s, so the OpenAPI document (``/openapi.json``) says what each
route takes and returns; the service's own HTTP client (:class:`negminer.service.HttpNegativeSource`) parses the
same models, so client and server cannot drift apart. Vocabularies come from ``negminer._vocab``; mining options
are the library's :class:`~negminer.mining.MiningConfig` and training options its
:class:`~negminer.trainer.TrainHyperparameters`.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from negminer._vocab import (
    EventLevel,
    EventType,
    IndexKind,
    IndexStatus,
    JobStatus,
    ModelKind,
    OperationStatus,
    OperationType,
    OutputFormat,
)
from negminer.mining import MiningConfig
from negminer.trainer import TrainHyperparameters

__all__ = [
    "NAME_PATTERN",
    "AddDocuments",
    "Checkpoint",
    "CreateIndex",
    "CreateJob",
    "Deleted",
    "Document",
    "EmbedRequest",
    "Event",
    "FileObject",
    "Health",
    "IndexDeleted",
    "IndexInfo",
    "Job",
    "JobError",
    "ListPage",
    "MineQuery",
    "MineRequest",
    "MineResponse",
    "MineResult",
    "Model",
    "Negative",
    "Operation",
    "Problem",
    "Readiness",
    "RefreshRequest",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # index names

T = TypeVar("T")


class _Request(BaseModel):
    """Request bodies refuse unknown fields, naming them."""

    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    """Responses. A field with ``validation_alias=AliasChoices(name, column)`` also reads the job store's column
    name, so a stored row validates as its schema."""

    model_config = ConfigDict(use_enum_values=True)


# -- shared ------------------------------------------------------------------------------------------------------
class Problem(_Response):
    """RFC 9457 ``application/problem+json``, with ``code`` and the field at fault (``param``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str
    param: str | None = Field(None, description="the request field at fault, dotted for nested fields")
    line: int | None = Field(None, description="line of an uploaded file at fault")


class ListPage(_Response, Generic[T]):
    """One page of a list; the next starts ``after`` the last id of this one."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False


class Deleted(_Response):
    id: str
    object: str
    deleted: bool = True


class Health(_Response):
    status: Literal["ok"] = "ok"


class Readiness(_Response):
    status: Literal["ready", "loading"]


# -- indexes -----------------------------------------------------------------------------------------------------
class Document(_Request):
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)


class CreateIndex(_Request):
    name: str = Field(pattern=NAME_PATTERN)
    model: str | None = Field(
        None,
        description="a registered model name (GET /v1/models) or a model folder inside "
        "the data dir; default: the service's model (from_index: that index's model)",
    )
    documents: list[Document] | None = Field(None, min_length=1, description="inline documents, or corpus_file")
    corpus_file: str | None = Field(None, description="a corpus.jsonl (_id, title, text) inside the data dir")
    from_index: str | None = Field(None, description="copy the documents of this index (its current version)")
    kind: IndexKind = IndexKind.flat


class AddDocuments(_Request):
    documents: list[Document] = Field(min_length=1)


class RefreshRequest(_Request):
    model: str = Field(
        min_length=1,
        description="a registered model name (a fine-tuned model or checkpoint) or a model folder inside the data dir",
    )


class Operation(_Response):
    """The build, documents update or refresh of an index in progress, or the last one done."""

    model_config = ConfigDict(use_enum_values=True, validate_assignment=False)

    type: OperationType
    model: str
    status: OperationStatus = OperationStatus.running
    started_at: int
    documents: int = Field(description="documents of the version being built")
    to_encode: int | None = Field(None, description="texts not in the embedding cache (known once encoding starts)")
    encoded: int = 0
    seconds: float | None = None
    error: str | None = None
    version: int | None = Field(None, description="the version it published")


class IndexInfo(_Response):
    name: str
    status: IndexStatus
    version: int | None = None
    size: int = 0
    model: str
    model_fingerprint: str | None = None
    kind: IndexKind
    error: str | None = None
    build_seconds: float | None = None
    operation: Operation | None = None


class IndexDeleted(_Response):
    name: str
    deleted: bool = True


class SearchRequest(_Request):
    queries: list[str] | None = Field(None, min_length=1, description="query texts, or give vectors")
    vectors: list[list[float]] | None = Field(None, min_length=1, description="query vectors (unit length)")
    top_k: int = Field(10, ge=1)
    return_text: bool = False


class SearchHit(_Response):
    """A document of the index with its score."""

    id: str
    score: float
    text: str | None = Field(None, description="with return_text")


class _IndexAnswer(_Response):
    index: str
    version: int | None = Field(description="the index version that answered")


class SearchResponse(_IndexAnswer):
    results: list[list[SearchHit]]


class MineQuery(_Request):
    query: str = Field(min_length=1)
    positive_ids: list[str] = Field(default_factory=list, description="ids of positive documents of the index")
    positives: list[str] = Field(default_factory=list, description="positive texts (added to the candidates)")


class MineRequest(_Request):
    queries: list[MineQuery] = Field(min_length=1)
    options: MiningConfig = Field(default_factory=MiningConfig)
    output_format: OutputFormat | None = None
    output_scores: bool = False
    return_text: bool = False


class Negative(SearchHit):
    """A mined hard negative: a document of the index with its score."""


class MineResult(_Response):
    query: str
    negatives: list[Negative]
    positive_scores: list[float]


class MineResponse(_IndexAnswer):
    results: list[MineResult]
    report: dict[str, Any] = Field(description="the filter report (negminer.mining.MiningReport.to_dict())")
    rows: dict[str, list[Any]] | None = Field(
        None, description="sentence-transformers' columns (column name -> values), with output_format"
    )


# -- embeddings --------------------------------------------------------------------------------------------------
class EmbedRequest(_Request):
    """Text Embeddings Inference's ``/embed`` body."""

    inputs: str | list[str]
    normalize: bool = True
    truncate: bool = True
    prompt_name: str | None = None
    dimensions: int | None = Field(None, ge=1, description="keep the first N dimensions (Matryoshka models)")
    model: str | None = Field(None, description="a model name from GET /v1/models; default: the service's model")


# -- models ------------------------------------------------------------------------------------------------------
class Model(_Response):
    id: str = Field(validation_alias=AliasChoices("id", "name"))
    object: Literal["model"] = "model"
    created: int = Field(validation_alias=AliasChoices("created", "created_at"))
    owned_by: str = "negminer"
    kind: ModelKind
    job: str | None = Field(None, validation_alias=AliasChoices("job", "job_id"))


# -- files -------------------------------------------------------------------------------------------------------
class FileObject(_Response):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    format: str = Field(description="pairs-jsonl, parquet or csv")
    queries: int
    pairs: int
    documents: int


# -- fine-tuning jobs --------------------------------------------------------------------------------------------
class CreateJob(_Request):
    model: str | None = Field(None, description="model to fine-tune (GET /v1/models); default: the service's model")
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    index: str | None = Field(None, description="mine (and refresh) negatives from a copy of this index's corpus")
    hyperparameters: TrainHyperparameters = Field(
        default_factory=TrainHyperparameters,
        description="training options; unset ones take the trainer's defaults (the job shows the effective ones)",
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    suffix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    metadata: dict[str, str] | None = Field(None, max_length=16)


class JobError(_Response):
    code: str
    message: str
    param: str | None = None


class Job(_Response):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None
    model: str
    fine_tuned_model: str | None = None
    training_file: str
    validation_file: str | None = None
    index: str | None = None
    hyperparameters: TrainHyperparameters = Field(description="the effective training options")
    status: JobStatus
    error: JobError | None = None
    metadata: dict[str, str] | None = Field(None, validation_alias=AliasChoices("metadata", "job_metadata"))
    seed: int
    suffix: str | None = None
    trained_steps: int | None = None
    attempts: int = 0
    cancel_requested: bool = False


class Event(_Response):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: EventLevel
    message: str
    type: EventType
    data: dict[str, Any] | None = None


class Checkpoint(_Response):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str = Field(
        validation_alias=AliasChoices("fine_tuned_model_checkpoint", "model"),
        description="a model name usable by /v1/embed and index refreshes",
    )
    fine_tuning_job_id: str = Field(validation_alias=AliasChoices("fine_tuning_job_id", "job_id"))
    step_number: int = Field(validation_alias=AliasChoices("step_number", "step"))
    metrics: dict[str, Any]
