"""Every request body and response of the REST API, in one module.

Routes declare these as bodies and ``response_model``s, so the OpenAPI document (``/openapi.json``) says what each
route takes and returns; the service's own HTTP client (:class:`negminer.client.HttpNegativeSource`) parses the
same models, so client and server cannot drift apart. Vocabularies come from ``negminer._vocab``; mining options
are the library's :class:`~negminer.mining.MiningConfig` and training options its
:class:`~negminer.trainer.TrainHyperparameters`.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
    model_validator,
)

from negminer._model import StrictModel
from negminer._vocab import (
    INDEX_NAME_PATTERN,
    EventLevel,
    EventType,
    IndexChoice,
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
    "LABEL_PATTERN",
    "NAME_PATTERN",
    "AddDocuments",
    "Checkpoint",
    "CreateIndex",
    "CreateJob",
    "Deleted",
    "Document",
    "EmbedRequest",
    "EmbeddingObject",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "Event",
    "FileObject",
    "Health",
    "IndexDeleted",
    "IndexInfo",
    "Job",
    "JobError",
    "JobHyperparameters",
    "Method",
    "MethodIn",
    "OPENAI_HYPERPARAMETERS",
    "OperationError",
    "BASE_LEARNING_RATE",
    "ListPage",
    "MineQuery",
    "MineRequest",
    "MineResponse",
    "MineResult",
    "Model",
    "ModelUpload",
    "Negative",
    "Operation",
    "Problem",
    "ProblemError",
    "Readiness",
    "RefreshRequest",
    "SearchHit",
    "SearchRequest",
    "SearchResponse",
    "Supervised",
    "SupervisedIn",
    "TeiInfo",
    "TeiToken",
    "TokenizeRequest",
    "Usage",
]

NAME_PATTERN = INDEX_NAME_PATTERN  # index names
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$"  # label keys

TruncationDirection = Literal["right", "left"]

T = TypeVar("T")


class _Request(StrictModel):
    """Request bodies refuse unknown fields, naming them, non-finite numbers, and NUL characters or lone
    surrogates in any text (no file name, model, id or text needs one; PostgreSQL and UTF-8 cannot store them):
    :class:`negminer._model.StrictModel`'s one rule."""


class _Response(BaseModel):
    """Responses. A field with ``validation_alias=AliasChoices(name, column)`` also reads the job store's column
    name, so a stored row validates as its schema."""

    model_config = ConfigDict(use_enum_values=True)


# -- shared ------------------------------------------------------------------------------------------------------
class ProblemError(_Response):
    """The OpenAI-shaped ``error`` member of a problem: OpenAI's SDKs build their exception from it."""

    message: str
    type: str
    code: str
    param: str | None = None


class Problem(_Response):
    """RFC 9457 ``application/problem+json``, with ``code`` and the field at fault (``param``).

    ``message`` (= ``detail``) and ``error`` repeat it in the shape OpenAI's clients read, so their exceptions say
    what went wrong (``Error code: 422 - hyperparameters.batch_size: ...``) instead of the bare status."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str
    param: str | None = Field(None, description="the request field at fault, dotted for nested fields")
    line: int | None = Field(None, description="line of an uploaded file at fault")
    message: str = Field(description="the same as detail")
    error: ProblemError


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
    status: Literal["ready", "loading", "unavailable"]


# -- indexes -----------------------------------------------------------------------------------------------------
class Document(_Request):
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)


class CreateIndex(_Request):
    name: str = Field(pattern=NAME_PATTERN)
    model: str | None = Field(
        None,
        description="a model name (GET /v1/models), an upload id (sha256:..., POST /v1/models/uploads) or a "
        "model folder inside the data dir; default: the service's model (from_index: that index's model)",
    )
    documents: list[Document] | None = Field(None, min_length=1, description="inline documents, or corpus_file")
    corpus_file: str | None = Field(None, description="a corpus.jsonl (_id, title, text) inside the data dir")
    from_index: str | None = Field(None, description="copy the documents of this index (its current version)")
    labels: dict[Annotated[str, StringConstraints(pattern=LABEL_PATTERN)], Annotated[str, Field(max_length=256)]] = (
        Field(default_factory=dict, max_length=16, description="the caller's own key/value tags, shown back and kept")
    )
    expires_after: int | None = Field(
        None,
        ge=1,
        le=30 * 24 * 3600,
        description="a lease, in seconds: the index is deleted when no call names it for this long (any call on "
        "the index renews it; the service's sweep reclaims an expired one). None: kept until deleted",
    )
    kind: IndexChoice = Field(
        IndexChoice.auto,
        description="auto (exact up to 100,000 documents, HNSW up to 4,000,000, IVF above, IVF-PQ past the memory "
        "budget), flat, ivf, ivfpq or hnsw; approximate ones are tuned to recall@10 >= 0.95 vs exact search and "
        "report it",
    )


class AddDocuments(_Request):
    documents: list[Document] = Field(min_length=1)


class RefreshRequest(_Request):
    model: str = Field(
        min_length=1,
        description="a model name (a fine-tuned model or checkpoint), an upload id (sha256:..., "
        "POST /v1/models/uploads) or a model folder inside the data dir",
    )


class OperationError(_Response):
    """Why an index operation failed: ``code`` (``interrupted``: the service stopped while it ran;
    ``build_failed``; ``non_finite_embeddings``) and a message."""

    code: str
    message: str


class Operation(_Response):
    """The build, documents update or refresh of an index in progress, or the last one done. Recorded on disk
    before the request that started it is answered, so it survives a restart: a running one found at start-up is
    marked ``failed`` with ``error.code = "interrupted"``."""

    model_config = ConfigDict(use_enum_values=True, validate_assignment=False)

    id: str = Field("", description="the operation's id (op-...)")
    type: OperationType
    model: str
    status: OperationStatus = OperationStatus.running
    started_at: int
    documents: int = Field(description="documents of the version being built")
    to_encode: int | None = Field(None, description="texts not in the embedding cache (known once encoding starts)")
    encoded: int = 0
    stage: str | None = Field(None, description="encoding, indexing (training, adding, tuning) or saving")
    eta_seconds: float | None = Field(None, description="estimated seconds left in the current stage")
    seconds: float | None = None
    error: OperationError | None = None
    version: int | None = Field(None, description="the version it published")


class IndexInfo(_Response):
    name: str
    status: IndexStatus
    version: int | None = None
    size: int = 0
    model: str
    model_fingerprint: str | None = None
    kind: IndexChoice = Field(description="the structure of the current version (what was asked for until then)")
    recall: float | None = Field(None, description="recall@k vs exact search measured at build (1 for flat)")
    error: OperationError | None = Field(None, description="why the index has no version to serve (status failed)")
    build_seconds: float | None = None
    operation: Operation | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    expires_after: int | None = Field(None, description="the lease in seconds (None: kept until deleted)")
    expires_at: int | None = Field(None, description="when the lease runs out unless a call renews it")


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
_INPUT_TYPE = (
    "query or document: picks the model's query or document prompt (models with prompts, e.g. "
    "E5 or BGE; all-MiniLM-L6-v2 has none, so both give the same vectors)"
)
_PROMPT_NAME = "a prompt of the model by name (overrides input_type's); unknown: 422"


class EmbedRequest(_Request):
    """Text Embeddings Inference's ``/embed`` body."""

    inputs: str | list[str]
    normalize: bool = Field(True, description="false: the model's raw vectors")
    truncate: bool = Field(True, description="false: texts over the model's maximum length are refused")
    truncation_direction: TruncationDirection = Field("right", description="left: keep the end of long texts")
    prompt_name: str | None = Field(None, description=_PROMPT_NAME)
    input_type: Literal["query", "document"] = Field("document", description=_INPUT_TYPE)
    dimensions: int | None = Field(None, ge=1, description="keep the first N dimensions (Matryoshka models)")
    model: str | None = Field(None, description="a model name from GET /v1/models; default: the service's model")

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v  # TEI says Left / Right, huggingface_hub left / right


class TokenizeRequest(_Request):
    """Text Embeddings Inference's ``/tokenize`` body."""

    inputs: str | list[str]
    add_special_tokens: bool = True


class TeiToken(_Response):
    """One token as TEI's ``/tokenize`` answers it: its id, text, whether it is special, and its character span."""

    id: int
    text: str
    special: bool
    start: int | None = None
    stop: int | None = None


class TeiInfo(_Response):
    """Text Embeddings Inference's ``GET /info`` (the fields its clients read), with the model's dimensions."""

    model_id: str
    model_sha: str | None = None
    model_dtype: str = "float32"
    model_type: dict[str, Any] = Field(default_factory=lambda: {"embedding": {"pooling": "mean"}})
    dimensions: int
    max_concurrent_requests: int = 512
    max_input_length: int = Field(description="tokens a text may have before it is truncated (0: no limit)")
    max_batch_tokens: int | None = None
    max_batch_requests: int | None = None
    max_client_batch_size: int = Field(description="texts per request (NEGMINER_MAX_BATCH)")
    tokenization_workers: int = 1
    version: str


class EmbeddingsRequest(_Request):
    """OpenAI's ``/embeddings`` body (``user`` is accepted and ignored)."""

    input: str | list[str] | list[int] | list[list[int]] = Field(description="a text or a list of texts")
    model: str | None = Field(None, description="a model name from GET /v1/models; default: the service's model")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="keep the first N dimensions, normalized again")
    user: str | None = None
    input_type: Literal["query", "document"] = Field("document", description=_INPUT_TYPE)
    prompt_name: str | None = Field(None, description=_PROMPT_NAME)


class EmbeddingObject(_Response):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32 (encoding_format)")


class Usage(_Response):
    prompt_tokens: int = Field(description="tokens the model read, counted by its tokenizer after truncation")
    total_tokens: int


class EmbeddingsResponse(_Response):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: Usage


# -- models ------------------------------------------------------------------------------------------------------
class Model(_Response):
    id: str = Field(validation_alias=AliasChoices("id", "name"))
    object: Literal["model"] = "model"
    created: int = Field(validation_alias=AliasChoices("created", "created_at"))
    owned_by: str = "negminer"
    kind: ModelKind
    job: str | None = Field(None, validation_alias=AliasChoices("job", "job_id"))


class ModelUpload(_Response):
    """A model folder (or LoRA adapter) uploaded to the service, by its content id: name it as ``model`` in index
    builds and refreshes. Uploads that no index version, registered model or other upload uses are deleted after
    ``NEGMINER_UPLOAD_GRACE_SECONDS``."""

    id: str = Field(description="sha256: and the sha256 of the files' manifest (and of the base, for an adapter)")
    object: Literal["model.upload"] = "model.upload"
    created: int
    bytes: int = Field(description="the files' total size")
    files: int
    base: str | None = Field(None, description="the model an adapter applies to (a model name the service knows)")


# -- files -------------------------------------------------------------------------------------------------------
class FileObject(_Response):
    """OpenAI's ``file`` object; training files also say what negminer read from them."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: Literal["fine-tune", "fine-tune-results"]
    status: Literal["processed"] = "processed"
    format: str = Field(description="pairs-jsonl, parquet or csv (results: csv)")
    queries: int | None = Field(None, description="training files: queries read")
    pairs: int | None = Field(None, description="training files: (query, positive) pairs read")
    documents: int | None = Field(None, description="training files: distinct documents read")
    job: str | None = Field(None, description="results files: the job that wrote it")


# -- fine-tuning jobs --------------------------------------------------------------------------------------------
BASE_LEARNING_RATE: float = TrainHyperparameters.model_fields["learning_rate"].default
"""learning_rate = learning_rate_multiplier x this (the trainer's default learning rate)."""

OPENAI_HYPERPARAMETERS = {
    "n_epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate_multiplier": f"learning_rate (x {BASE_LEARNING_RATE:g})",
}
"""OpenAI's hyperparameter names -> negminer's; ``"auto"`` takes negminer's default."""


def _from_openai(raw: Any) -> Any:
    """OpenAI's hyperparameters (``n_epochs``, ``batch_size``, ``learning_rate_multiplier``, ``"auto"``) as
    negminer's; negminer's own names pass unchanged."""
    if not isinstance(raw, dict):
        return raw
    out = {k: v for k, v in raw.items() if not (k in OPENAI_HYPERPARAMETERS and v == "auto")}
    if "learning_rate_multiplier" in out:
        m = out.pop("learning_rate_multiplier")
        if "learning_rate" in out:
            raise ValueError("give learning_rate or learning_rate_multiplier, not both")
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 0 or m == float("inf"):
            raise ValueError(f"learning_rate_multiplier must be a positive number or 'auto', got {m!r}")
        out["learning_rate"] = float(m) * BASE_LEARNING_RATE
    if "n_epochs" in out and "epochs" in out:
        raise ValueError("give epochs or n_epochs, not both")
    return out


JobHyperparametersIn = Annotated[TrainHyperparameters, BeforeValidator(_from_openai)]


class JobHyperparameters(TrainHyperparameters):
    """The effective training options of a job, with OpenAI's names beside negminer's."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_epochs(self) -> int | None:
        """OpenAI's name for epochs (when whole)."""
        return int(self.epochs) if float(self.epochs).is_integer() and self.epochs > 0 else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def learning_rate_multiplier(self) -> float:
        """learning_rate / BASE_LEARNING_RATE."""
        return self.learning_rate / BASE_LEARNING_RATE


class SupervisedIn(_Request):
    hyperparameters: JobHyperparametersIn | None = None


class MethodIn(_Request):
    """OpenAI's ``method``: negminer trains contrastively on (query, positive) pairs, which is ``supervised``."""

    type: Literal["supervised"]
    supervised: SupervisedIn | None = None


class CreateJob(_Request):
    model: str | None = Field(None, description="model to fine-tune (GET /v1/models); default: the service's model")
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    index: str | None = Field(None, description="mine (and refresh) negatives from a copy of this index's corpus")
    hyperparameters: JobHyperparametersIn = Field(
        default_factory=TrainHyperparameters,
        description="training options; unset ones take the trainer's defaults (the job shows the effective ones). "
        "OpenAI's names are accepted: n_epochs, batch_size, learning_rate_multiplier (x the default learning "
        "rate), each also 'auto' (the default)",
    )
    method: MethodIn | None = Field(
        None, description="OpenAI's method: only supervised; its hyperparameters or the top-level ones, not both"
    )
    integrations: list[dict[str, Any]] | None = Field(None, max_length=0, description="none are supported")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    suffix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    metadata: (
        dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]] | None
    ) = Field(
        None,
        max_length=16,
        description="up to 16 pairs: keys of at most 64 characters, values of at most 512 (OpenAI's limits)",
    )


class JobError(_Response):
    code: str
    message: str
    param: str | None = None
    step: int | None = Field(None, description="the training step at fault (non_finite_loss)")


class Supervised(_Response):
    hyperparameters: JobHyperparameters


class Method(_Response):
    type: Literal["supervised"] = "supervised"
    supervised: Supervised


class Job(_Response):
    """OpenAI's ``fine_tuning.job`` (every field its SDK requires), with negminer's additions."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None
    model: str
    fine_tuned_model: str | None = None
    organization_id: str = "negminer"
    training_file: str
    validation_file: str | None = None
    result_files: list[str] = Field(
        default_factory=list, description="the job's step_metrics.csv file (GET /v1/files/{id}/content), when done"
    )
    index: str | None = None
    hyperparameters: JobHyperparameters = Field(description="the effective training options")
    method: Method
    status: JobStatus
    error: JobError | None = None
    metadata: dict[str, str] | None = Field(None, validation_alias=AliasChoices("metadata", "job_metadata"))
    seed: int
    suffix: str | None = None
    trained_steps: int | None = None
    trained_tokens: int | None = Field(None, description="input tokens trained on (padding excluded), when done")
    estimated_finish: int | None = Field(
        None, description="when a running job should be done (Unix time), at its pace so far; null otherwise"
    )
    integrations: list[dict[str, Any]] | None = None
    attempts: int = 0
    cancel_requested: bool = False

    @model_validator(mode="before")
    @classmethod
    def _method(cls, row: Any) -> Any:
        if isinstance(row, dict) and "method" not in row:
            row = {**row, "method": {"supervised": {"hyperparameters": row.get("hyperparameters")}}}
        if isinstance(row, dict) and row.get("result_files") is None:
            row = {**row, "result_files": []}
        return row


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
