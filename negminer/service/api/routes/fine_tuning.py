"""``/v1/fine_tuning/jobs`` in the shapes of OpenAI's fine-tuning API; a worker process runs the jobs."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from negminer import jobs
from negminer._data import PairsSummary
from negminer._errors import ConfigError
from negminer._settings import ServiceSettings
from negminer.client.schemas import Checkpoint, CreateJob, Event, Job, ListPage
from negminer.jobs import FileRow, JobAlreadyEnded, JobRow, JobStore, submit_job
from negminer.service.api.params import bad_param, list_page
from negminer.service.deps import RegistryDep, SettingsDep, StoreDep
from negminer.service.errors import problem_responses
from negminer.service.exceptions import IndexNotFound
from negminer.service.mining import check_mining_limits
from negminer.service.model_names import default_model, model_prompts, resolve_model
from negminer.trainer import TrainHyperparameters, check_devices, check_hardware, check_model_options

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"], responses=problem_responses(404, 409, 422))


def job_object(row: JobRow) -> Job:
    return Job.model_validate(row.as_dict())


def _job(store: JobStore, job_id: str) -> JobRow:
    row = store.get_job(job_id)
    if row is None:
        raise HTTPException(404, f"no fine-tuning job {job_id!r}")
    return row


def _file(store: JobStore, file_id: str | None, param: str) -> FileRow | None:
    if file_id is None:
        return None
    row = store.get_file(file_id)
    if row is None:
        raise bad_param(param, f"no file {file_id!r} (upload it with POST /v1/files)")
    if row.purpose != "fine-tune":
        raise bad_param(param, f"file {file_id!r} is a {row.purpose} file, not training data")
    return row


def _check_split(training: FileRow, hp: TrainHyperparameters) -> None:
    """Without a validation file the trainer holds out ``validation_fraction`` of the queries (by a hash of their
    text): refuse now a file whose split would leave either side empty, instead of failing in the worker."""
    info = training.info or {}
    buckets = info.get("split_buckets")
    if not buckets:
        return
    summary = PairsSummary(info.get("queries") or 0, info.get("pairs") or 0, 0, (buckets[0], buckets[1]))
    has_train, has_validation = summary.split_leaves(hp.validation_fraction)
    if not (has_train and has_validation):
        side = "validation" if not has_validation else "training"
        raise bad_param(
            "training_file",
            f"holding out validation_fraction={hp.validation_fraction:g} of its {summary.queries} queries leaves no "
            f"{side} queries: give a validation_file, more queries, or another validation_fraction",
        )


def _check_prompts(hp: TrainHyperparameters, model_path: str, where: str) -> None:
    """Prompt names must be prompts of the model (sentence-transformers ignores an unknown one when encoding)."""
    names = {n for n in (hp.mining.query_prompt_name, hp.mining.corpus_prompt_name) if n}
    if not names:
        return
    prompts = model_prompts(model_path)
    for field in ("query_prompt_name", "corpus_prompt_name"):
        name = getattr(hp.mining, field)
        if name and name not in prompts:
            have = ", ".join(sorted(prompts)) or "none"
            raise bad_param(f"{where}.mining.{field}", f"the model has no prompt {name!r} (its prompts: {have})")


def _hyperparameters(body: CreateJob, settings: ServiceSettings) -> TrainHyperparameters:
    """The job's recipe: the top-level hyperparameters or OpenAI's method.supervised.hyperparameters (one of
    them), within the service's caps."""
    hp, where = body.hyperparameters, "hyperparameters"
    nested = body.method.supervised.hyperparameters if body.method and body.method.supervised else None
    if nested is not None:
        if "hyperparameters" in body.model_fields_set:
            raise bad_param("method.supervised.hyperparameters", "give hyperparameters here or at the top, not both")
        hp, where = nested, "method.supervised.hyperparameters"
    caps = (
        ("max_steps", hp.max_steps, settings.max_train_steps, "NEGMINER_MAX_TRAIN_STEPS"),
        ("epochs", hp.epochs, settings.max_train_epochs, "NEGMINER_MAX_TRAIN_EPOCHS"),
        ("batch_size", hp.batch_size, settings.max_train_batch_size, "NEGMINER_MAX_TRAIN_BATCH_SIZE"),
        ("max_seq_length", hp.max_seq_length or 0, settings.max_train_seq_length, "NEGMINER_MAX_TRAIN_SEQ_LENGTH"),
    )
    for name, value, cap, env in caps:
        if value > cap:
            raise bad_param(f"{where}.{name}", f"at most {cap:g} on this service ({env}), got {value:g}")
    if hp.num_negatives > settings.max_top_k:
        raise bad_param(f"{where}.num_negatives", f"at most {settings.max_top_k} on this service (NEGMINER_MAX_TOP_K)")
    check_mining_limits(hp.mining_config(), settings, f"{where}.mining")
    return hp


@router.post("", response_model=Job)
def create_job(body: CreateJob, store: StoreDep, settings: SettingsDep, registry: RegistryDep) -> Job:
    """Check the request (files, model, index, hyperparameters within the service's caps), then queue the job
    for a worker."""
    hp = _hyperparameters(body, settings)
    training = _file(store, body.training_file, "training_file")
    validation = _file(store, body.validation_file, "validation_file")
    if validation is None and training is not None:
        _check_split(training, hp)
    model_path = resolve_model(body.model, settings, store)
    where = "method.supervised.hyperparameters" if body.method and body.method.supervised else "hyperparameters"
    _check_prompts(hp, model_path, where)
    try:  # what the hardware and the model's files can tell before a worker loads anything
        check_devices(hp.devices)
        check_hardware(hp.bf16, hp.fp16, settings.device)
        check_model_options(hp, model_path)
    except ConfigError as exc:
        raise bad_param(f"{where}.{exc.param}", exc.message) from None
    if body.index is not None:
        try:
            registry.get(body.index)
        except IndexNotFound:
            raise bad_param("index", f"no index {body.index!r}") from None
    effective = hp.model_dump(mode="json")  # every option, defaults included
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    row = submit_job(
        store,
        model=body.model or default_model(settings)[0],
        model_path=model_path,
        training_file=body.training_file,
        validation_file=body.validation_file,
        index=body.index,
        hyperparameters=effective,
        seed=seed,
        suffix=body.suffix,
        job_metadata=body.metadata,
    )
    return job_object(row)


@router.get("", response_model=ListPage[Job])
def list_jobs(
    request: Request, store: StoreDep, after: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> ListPage[Job]:
    """Jobs, newest first; the next page starts ``after`` the last id of this one. ``metadata[KEY]=VALUE`` query
    parameters (what OpenAI's SDK sends for ``metadata={...}``) keep the jobs whose metadata holds them all."""
    metadata = {
        k[len("metadata[") : -1]: v
        for k, v in request.query_params.multi_items()
        if k.startswith("metadata[") and k.endswith("]")
    }
    return list_page(lambda: store.list_jobs(after, limit, metadata), job_object, f"fine-tuning job {after!r}")


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: str, store: StoreDep) -> Job:
    return job_object(_job(store, job_id))


@router.post("/{job_id}/cancel", response_model=Job)
def cancel_job(job_id: str, store: StoreDep) -> Job:
    """Cancel a job: a queued one at once, a running one within seconds (its checkpoints are kept)."""
    try:
        return job_object(jobs.cancel_job(store, _job(store, job_id)))
    except JobAlreadyEnded as exc:
        raise HTTPException(409, str(exc)) from None


@router.post("/{job_id}/pause", response_model=Job, responses=problem_responses(400))
def pause_job(job_id: str, store: StoreDep) -> Job:
    """Not supported: negminer's jobs cannot be paused. Cancel the job instead (its checkpoints stay usable as
    models) and start a new one from a checkpoint (``model``: the checkpoint's name)."""
    _job(store, job_id)
    raise HTTPException(400, _NO_PAUSE)


@router.post("/{job_id}/resume", response_model=Job, responses=problem_responses(400))
def resume_job(job_id: str, store: StoreDep) -> Job:
    """Not supported (see pause). A job whose worker died is resumed from its last checkpoint by itself."""
    _job(store, job_id)
    raise HTTPException(400, _NO_PAUSE)


_NO_PAUSE = (
    "pausing and resuming jobs is not supported; cancel the job (its checkpoints are kept as models) and create "
    "a new job with model=<checkpoint name> to go on from one"
)


@router.get("/{job_id}/events", response_model=ListPage[Event])
def list_events(
    job_id: str,
    store: StoreDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    order: Annotated[
        Literal["desc", "asc"],
        Query(description="desc: newest first (OpenAI's order); asc: oldest first, to follow a job"),
    ] = "desc",
) -> ListPage[Event]:
    """The job's events, newest first (or oldest first, to follow a job)."""
    _job(store, job_id)
    return list_page(
        lambda: store.list_events(job_id, after, limit, descending=order == "desc"),
        lambda row: Event.model_validate(row.as_dict()),
        f"event {after!r} in job {job_id!r}",
    )


@router.get("/{job_id}/checkpoints", response_model=ListPage[Checkpoint])
def list_checkpoints(
    job_id: str, store: StoreDep, after: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 10
) -> ListPage[Checkpoint]:
    """The job's checkpoints, newest first; each is a model name usable by /v1/embed and index refreshes."""
    _job(store, job_id)
    return list_page(
        lambda: store.list_checkpoints(job_id, after, limit),
        lambda row: Checkpoint.model_validate(row.as_dict()),
        f"checkpoint {after!r} in job {job_id!r}",
    )
