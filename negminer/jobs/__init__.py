"""The fine-tuning job queue: the job database (:class:`JobStore`, SQLite or PostgreSQL), the job's state
transitions (:func:`submit_job`, :func:`cancel_job`) and the :class:`Worker` that claims and runs jobs in training
processes. Used by the service's routes and by ``negminer worker``; importing it loads neither FastAPI nor
uvicorn."""

from negminer.jobs._queue import JobAlreadyEnded, cancel_job, submit_job
from negminer.jobs._rows import CheckpointRow, EventRow, FileRow, JobRow, ModelRow
from negminer.jobs._store import TERMINAL, FileGone, FileInUse, JobStore, StoreUnavailable
from negminer.jobs._worker import Worker, model_name

__all__ = [
    "TERMINAL",
    "CheckpointRow",
    "EventRow",
    "FileGone",
    "FileRow",
    "JobRow",
    "ModelRow",
    "FileInUse",
    "JobAlreadyEnded",
    "JobStore",
    "StoreUnavailable",
    "Worker",
    "cancel_job",
    "model_name",
    "submit_job",
]
