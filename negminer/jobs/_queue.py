"""A job's state transitions that happen outside a worker: submitted (``validating_files`` -> ``queued``) and
cancelled. The routes call these; the worker and its training process make the others (``running``, and the end)."""

from __future__ import annotations

from typing import Any

from negminer._errors import NegminerError
from negminer._vocab import TERMINAL_JOB_STATUSES, JobStatus
from negminer.jobs._rows import JobRow
from negminer.jobs._store import JobStore

__all__ = ["JobAlreadyEnded", "cancel_job", "submit_job"]


class JobAlreadyEnded(NegminerError):
    """A cancel asked of a job that has already succeeded, failed or been cancelled."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id!r} has already {status}", param="job_id")
        self.job_id, self.status = job_id, status


def submit_job(store: JobStore, **fields: Any) -> JobRow:
    """Record a job whose request has been checked, and queue it for a worker; returns its row."""
    row = store.create_job(**fields)
    training, validation = fields["training_file"], fields.get("validation_file")
    store.add_event(
        row.id,
        f"Validating training file: {training}" + (f" and validation file: {validation}" if validation else ""),
    )
    store.set_status(row.id, JobStatus.queued, expect=(JobStatus.validating_files,))
    store.add_event(row.id, "Files validated; job queued for a worker")
    return store.get_job(row.id) or row


def cancel_job(store: JobStore, job: JobRow) -> JobRow:
    """Cancel a job: a queued one at once, a running one when its worker sees the request (within seconds)."""
    if job.status in TERMINAL_JOB_STATUSES:
        raise JobAlreadyEnded(job.id, job.status)
    return store.request_cancel(job.id) or job
