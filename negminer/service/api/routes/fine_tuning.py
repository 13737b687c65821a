"""``/v1/fine_tuning/jobs`` in the shapes of OpenAI's fine-tuning API; a worker process runs the jobs."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from negminer._errors import ConfigError
from negminer.index import IndexNotFound
from negminer.mining import MiningConfig
from negminer.service.deps import RegistryDep, SettingsDep, StoreDep
from negminer.service.models import bad_param, default_model, list_page, resolve_model
from negminer.service.store import JobStore
from negminer.service.worker import train_config_args

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


class Hyperparameters(BaseModel):
    """Training options (unset: the trainer's defaults, shown in the job object)."""

    model_config = ConfigDict(extra="forbid")
    loss: Literal["infonce", "decoupled", "dcl"] | None = None
    epochs: float | None = Field(None, gt=0, validation_alias=AliasChoices("epochs", "n_epochs"))
    max_steps: int | None = Field(None, description="stop after this many steps (-1: epochs decide)")
    batch_size: int | None = Field(None, ge=2)
    learning_rate: float | None = Field(None, gt=0)
    temperature: float | None = Field(None, gt=0)
    negatives: Literal["none", "mined", "refresh"] | None = None
    num_negatives: int | None = Field(None, ge=1)
    refresh_every: int | None = Field(None, ge=1, description="steps between refreshes of the negatives")
    save_steps: int | None = Field(None, ge=1, description="steps between checkpoints (default: refresh_every)")
    mining: MiningConfig | None = Field(None, description="mining options (default: adaptive_margin 1.0)")
    warmup_ratio: float | None = Field(None, ge=0, le=1)
    max_seq_length: int | None = Field(None, ge=8)
    loss_filter: Literal["absolute", "relative", "adaptive"] | None = None
    loss_filter_margin: float | None = None
    validation_fraction: float | None = Field(None, gt=0, lt=1)
    logging_steps: int | None = Field(None, ge=1)


class CreateJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="model to fine-tune (GET /v1/models); default: the service's model")
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    index: str | None = Field(None, description="mine (and refresh) negatives from a copy of this index's corpus")
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    suffix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    metadata: dict[str, str] | None = Field(None, max_length=16)


def job_object(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "object": "fine_tuning.job", "created_at": row["created_at"],
        "started_at": row["started_at"], "finished_at": row["finished_at"], "model": row["model"],
        "fine_tuned_model": row["fine_tuned_model"], "training_file": row["training_file"],
        "validation_file": row["validation_file"], "index": row["index"],
        "hyperparameters": row["hyperparameters"], "status": row["status"], "error": row["error"],
        "metadata": row["job_metadata"], "seed": row["seed"], "suffix": row["suffix"],
        "trained_steps": row["trained_steps"], "attempts": row["attempts"],
        "cancel_requested": bool(row["cancel_requested"]),
    }


def _job(store: JobStore, job_id: str) -> dict[str, Any]:
    row = store.get_job(job_id)
    if row is None:
        raise HTTPException(404, f"no fine-tuning job {job_id!r}")
    return row


def _file(store: JobStore, file_id: str | None, param: str) -> None:
    if file_id is None:
        return
    row = store.get_file(file_id)
    if row is None:
        raise bad_param(param, f"no file {file_id!r} (upload it with POST /v1/files)")


@router.post("")
def create_job(body: CreateJob, store: StoreDep, settings: SettingsDep, registry: RegistryDep) -> dict[str, Any]:
    """Check the request (files, model, index, hyperparameters), then queue the job for a worker."""
    from negminer.trainer import TrainConfig

    _file(store, body.training_file, "training_file")
    _file(store, body.validation_file, "validation_file")
    model_path = resolve_model(body.model, settings, store)
    if body.index is not None:
        try:
            registry.get(body.index)
        except IndexNotFound:
            raise bad_param("index", f"no index {body.index!r}") from None
    hp = body.hyperparameters.model_dump(exclude_none=True)
    if body.hyperparameters.mining is not None:
        hp["mining"] = body.hyperparameters.mining.model_dump(exclude_unset=True)
    try:
        cfg = TrainConfig(**train_config_args(hp))
    except ConfigError as exc:
        field = str(exc).split(":", 1)[0]
        raise bad_param(f"hyperparameters.{field}", str(exc).split(":", 1)[-1].strip()) from None
    effective = {k: getattr(cfg, k) for k in Hyperparameters.model_fields}
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    row = store.create_job(model=body.model or default_model(settings)[0], model_path=model_path,
                           training_file=body.training_file, validation_file=body.validation_file, index=body.index,
                           hyperparameters=effective, seed=seed, suffix=body.suffix, job_metadata=body.metadata)
    store.add_event(row["id"], f"Validating training file: {body.training_file}"
                    + (f" and validation file: {body.validation_file}" if body.validation_file else ""))
    store.set_status(row["id"], "queued", expect=("validating_files",))
    store.add_event(row["id"], "Files validated; job queued for a worker")
    return job_object(_job(store, row["id"]))


@router.get("")
def list_jobs(store: StoreDep, after: str | None = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    """Jobs, newest first; the next page starts ``after`` the last id of this one."""
    return list_page(lambda: store.list_jobs(after, limit), job_object, f"fine-tuning job {after!r}")


@router.get("/{job_id}")
def get_job(job_id: str, store: StoreDep) -> dict[str, Any]:
    return job_object(_job(store, job_id))


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, store: StoreDep) -> dict[str, Any]:
    """Cancel a job: a queued one at once, a running one within seconds (its checkpoints are kept)."""
    job = _job(store, job_id)
    if job["status"] in ("succeeded", "failed", "cancelled"):
        raise HTTPException(409, f"job {job_id!r} has already {job['status']}")
    return job_object(store.request_cancel(job_id) or job)


@router.get("/{job_id}/events")
def list_events(job_id: str, store: StoreDep, after: str | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 20,
                order: Annotated[Literal["desc", "asc"], Query(description="desc: newest first (OpenAI's order); "
                                                               "asc: oldest first, to follow a job")] = "desc",
                ) -> dict[str, Any]:
    _job(store, job_id)
    return list_page(lambda: store.list_events(job_id, after, limit, descending=order == "desc"),
                     lambda r: {"id": r["id"], "object": "fine_tuning.job.event", "created_at": r["created_at"],
                                "level": r["level"], "message": r["message"], "type": r["type"], "data": r["data"]},
                     f"event {after!r} in job {job_id!r}")


@router.get("/{job_id}/checkpoints")
def list_checkpoints(job_id: str, store: StoreDep, after: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, Any]:
    """The job's checkpoints, newest first; each is a model name usable by /v1/embed and index refreshes."""
    _job(store, job_id)
    return list_page(lambda: store.list_checkpoints(job_id, after, limit),
                     lambda r: {"id": r["id"], "object": "fine_tuning.job.checkpoint", "created_at": r["created_at"],
                                "fine_tuned_model_checkpoint": r["model"], "fine_tuning_job_id": job_id,
                                "step_number": r["step"], "metrics": r["metrics"]},
                     f"checkpoint {after!r} in job {job_id!r}")
