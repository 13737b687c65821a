"""The job database's rows, typed: what :class:`~negminer.jobs.JobStore` returns (one frozen dataclass per table,
its fields the table's columns). ``as_dict()`` gives the columns by name, which the wire schemas read (their
``validation_alias`` names the columns)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from negminer.client.schemas import JobError

__all__ = ["CheckpointRow", "EventRow", "FileRow", "JobRow", "ModelRow", "row_of"]

R = TypeVar("R", bound="_Row")


@dataclass(frozen=True)
class _Row:
    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class FileRow(_Row):
    seq: int
    id: str
    created_at: int
    filename: str
    purpose: str
    bytes: int
    path: str
    sha256: str
    info: dict[str, Any]


@dataclass(frozen=True)
class JobRow(_Row):
    seq: int
    id: str
    created_at: int
    started_at: int | None
    finished_at: int | None
    status: str
    model: str
    model_path: str
    fine_tuned_model: str | None
    training_file: str
    validation_file: str | None
    index: str | None
    hyperparameters: dict[str, Any]
    seed: int
    suffix: str | None
    job_metadata: dict[str, str] | None
    error: JobError | None
    trained_steps: int | None
    trained_tokens: int | None
    result_files: list[str] | None
    estimated_finish: int | None
    attempts: int
    worker_id: str | None
    lease_until: float | None
    cancel_requested: bool


@dataclass(frozen=True)
class EventRow(_Row):
    seq: int
    id: str
    job_id: str
    created_at: int
    level: str
    message: str
    type: str
    data: dict[str, Any] | None


@dataclass(frozen=True)
class CheckpointRow(_Row):
    seq: int
    id: str
    job_id: str
    created_at: int
    step: int
    model: str
    metrics: dict[str, Any]


@dataclass(frozen=True)
class ModelRow(_Row):
    seq: int
    name: str
    created_at: int
    path: str
    job_id: str | None
    kind: str


def row_of(cls: type[R], mapping: Mapping[Any, Any]) -> R:
    """A row of table ``cls`` from the database's mapping of it (a job's error becomes a :class:`JobError`)."""
    values = dict(mapping)
    if cls is JobRow and values.get("error") is not None:
        values["error"] = JobError.model_validate(values["error"])
    return cls(**values)
