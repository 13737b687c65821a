"""Job state in a database: files, fine-tuning jobs, their events and checkpoints, and registered models.

SQLite (WAL) under the data dir by default; PostgreSQL through ``NEGMINER_DATABASE_URL`` when several workers share
the queue. Every change is one transaction. Claiming a job is the only contended write: on PostgreSQL it takes the
row with ``SELECT ... FOR UPDATE SKIP LOCKED``; on SQLite every transaction starts with ``BEGIN IMMEDIATE``, which
serializes writers, so two workers can never claim the same row. A claimed job carries a lease that its worker
renews; a job whose lease ran out (its worker was killed) is claimed again and resumes from its last checkpoint,
until ``max_attempts`` claims have been spent.

Ordering (lists, cursors) uses an integer ``seq`` column, ids are opaque strings (``ftjob-…``, ``file-…``).

When the database cannot be reached (a PostgreSQL restart, a network cut, a locked SQLite file), every public
method retries with backoff for up to ``retry_seconds`` and then raises :class:`StoreUnavailable`: a worker keeps
its writes waiting instead of losing them, and the API (``retry_seconds=0``) answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from negminer._errors import NegminerError
from negminer._retry import retrying
from negminer._vocab import TERMINAL_JOB_STATUSES as TERMINAL
from negminer._vocab import EventLevel, EventType, JobStatus, ModelKind, new_id
from negminer.client.schemas import JobError
from negminer.jobs._rows import CheckpointRow, EventRow, FileRow, JobRow, ModelRow, R, row_of

__all__ = ["FileGone", "FileInUse", "JobStore", "StoreUnavailable", "TERMINAL"]

logger = logging.getLogger("negminer")


class StoreUnavailable(NegminerError):
    """The job database could not be reached (after retrying for ``retry_seconds``)."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError)


def _unreachable(exc: BaseException) -> bool:
    """A lost or refused connection (worth retrying), as opposed to a bad statement or a constraint."""
    if isinstance(exc, _UNREACHABLE):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and bool(exc.connection_invalidated)


P = ParamSpec("P")
T = TypeVar("T")


def _retrying(method: Callable[Concatenate[JobStore, P], T]) -> Callable[Concatenate[JobStore, P], T]:
    """The store's methods retry an unreachable database for ``retry_seconds`` (negminer's one retry policy), then
    raise :class:`StoreUnavailable`; a full disk is an ``OSError`` (ENOSPC: 507), never retried."""

    @functools.wraps(method)
    def call(self: JobStore, *args: P.args, **kwargs: P.kwargs) -> T:
        policy = retrying(
            self.retry_seconds,
            retry_on=lambda exc: isinstance(exc, sa.exc.DBAPIError) and _unreachable(exc) and not _disk_full(exc),
            logger=logger,
            what="job database unreachable",
        )
        try:
            return policy(method, self, *args, **kwargs)
        except sa.exc.DBAPIError as exc:
            if _disk_full(exc):
                raise OSError(28, "the job database's disk is full") from exc  # ENOSPC: 507, not a retry
            if not _unreachable(exc):
                raise
            raise StoreUnavailable(
                f"the job database is unreachable ({type(exc.orig).__name__}); try again shortly"
            ) from exc

    return call


def _stored(error: JobError) -> dict[str, Any]:
    """A job's error as the database keeps it (JSON)."""
    return error.model_dump(mode="json")


def _disk_full(exc: sa.exc.DBAPIError) -> bool:
    said = str(exc.orig).lower()
    return "disk" in said and "full" in said


S = JobStatus

METADATA = sa.MetaData()  # the tables the store queries; Alembic's target_metadata (migrations/env.py)

files = sa.Table(
    "files",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), unique=True, nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("info", sa.JSON, nullable=False),
)

jobs = sa.Table(
    "jobs",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), unique=True, nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Integer),
    sa.Column("finished_at", sa.Integer),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("model", sa.String(512), nullable=False),
    sa.Column("model_path", sa.String(1024), nullable=False),
    sa.Column("fine_tuned_model", sa.String(512)),
    sa.Column("training_file", sa.String(64), nullable=False),
    sa.Column("validation_file", sa.String(64)),
    sa.Column("index", sa.String(64)),
    sa.Column("hyperparameters", sa.JSON, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("suffix", sa.String(64)),
    sa.Column("job_metadata", sa.JSON),
    sa.Column("error", sa.JSON),
    sa.Column("trained_steps", sa.Integer),
    sa.Column("trained_tokens", sa.BigInteger),
    sa.Column("result_files", sa.JSON),
    sa.Column("estimated_finish", sa.Integer),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker_id", sa.String(128)),
    sa.Column("lease_until", sa.Float),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
)

events = sa.Table(
    "events",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), unique=True, nullable=False),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("data", sa.JSON),
)

checkpoints = sa.Table(
    "checkpoints",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), unique=True, nullable=False),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("model", sa.String(512), nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
)

models = sa.Table(
    "models",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(512), unique=True, nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("job_id", sa.String(64)),
    sa.Column("kind", sa.String(16), nullable=False),  # fine_tuned | checkpoint
)


def _sqlite_engine(url: str) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class FileInUse(NegminerError):
    """A file that an unfinished job reads cannot be deleted."""

    def __init__(self, file_id: str, job_id: str) -> None:
        super().__init__(f"file {file_id!r} is used by job {job_id}, which has not finished", param="file_id")
        self.file_id, self.job_id = file_id, job_id


class FileGone(NegminerError):
    """A job named a file that does not exist (any more: deleted while the job was being created)."""

    def __init__(self, file_id: str, param: str) -> None:
        super().__init__(f"no file {file_id!r} (upload it with POST /v1/files)", param=param)
        self.file_id = file_id


class JobStore:
    """All job state, behind one small interface, on SQLite or PostgreSQL (the same code and tests for both)."""

    def __init__(
        self,
        url: str,
        *,
        events_kept: int = 0,
        retry_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock  # wall-clock seconds; leases and timestamps read it (tests pass a clock they move)
        self.url = url
        self.events_kept = events_kept  # per job; 0 = all
        self.retry_seconds = retry_seconds
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = (
            _sqlite_engine(url)
            if url.startswith("sqlite")
            else sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
        )
        self.is_sqlite = url.startswith("sqlite")
        self._migrate()

    @_retrying
    def _migrate(self) -> None:
        """Upgrade the database to the newest schema with Alembic (``negminer/jobs/migrations``), in one
        transaction, under a lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so an API and its
        workers starting together upgrade it once."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(727274)"))  # "negminer" on a phone keypad
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def _now(self) -> int:
        return int(self.clock())

    @_retrying
    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers (``/readyz``)."""
        with self.engine.connect() as c:
            c.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- files ----------------------------------------------------------------------------------------------
    @_retrying
    def add_file(
        self, *, id: str, filename: str, purpose: str, nbytes: int, path: str, sha256: str, info: dict[str, Any]
    ) -> FileRow:
        row = dict(id=id, filename=filename, purpose=purpose, bytes=nbytes, path=path, sha256=sha256, info=info)
        with self._tx() as c:
            c.execute(files.insert().values(created_at=self._now(), **row))
        added = self.get_file(id)
        assert added is not None
        return added

    @_retrying
    def get_file(self, file_id: str) -> FileRow | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(files).where(files.c.id == file_id)).mappings().first()
        return row_of(FileRow, row) if row else None

    @_retrying
    def list_files(
        self, after: str | None, limit: int, *, purpose: str | None = None, descending: bool = True
    ) -> tuple[list[FileRow], bool]:
        where = files.c.purpose == purpose if purpose is not None else None
        return self._page(FileRow, files, where, after, limit, descending=descending)

    @_retrying
    def delete_file(self, file_id: str) -> bool:
        """Delete a file's row unless an unfinished job reads it (:class:`FileInUse`), in one transaction that
        locks the row, so a job created at the same moment either sees the file and keeps it or finds it gone."""
        with self._tx() as c:
            c.execute(sa.select(files.c.id).where(files.c.id == file_id).with_for_update())
            job = self._file_in_use(c, file_id)
            if job is not None:
                raise FileInUse(file_id, job)
            return c.execute(files.delete().where(files.c.id == file_id)).rowcount > 0

    @staticmethod
    def _file_in_use(c: Connection, file_id: str) -> str | None:
        """The id of an unfinished job reading this file, if any (inside the caller's transaction)."""
        return c.execute(
            sa.select(jobs.c.id)
            .where(
                sa.or_(jobs.c.training_file == file_id, jobs.c.validation_file == file_id),
                jobs.c.status.not_in(TERMINAL),
            )
            .limit(1)
        ).scalar()

    # -- jobs -----------------------------------------------------------------------------------------------
    @_retrying
    def create_job(self, **values: Any) -> JobRow:
        """Insert a job; its ``training_file`` and ``validation_file`` must exist, checked under a shared lock on
        their rows in the same transaction (:class:`FileGone` otherwise), so a delete cannot slip between."""
        job_id = new_id("ftjob")
        with self._tx() as c:
            for param in ("training_file", "validation_file"):
                file_id = values.get(param)
                if file_id is None:
                    continue
                found = c.execute(
                    sa.select(files.c.id).where(files.c.id == file_id).with_for_update(read=True)
                ).scalar()
                if found is None:
                    raise FileGone(file_id, param)
            c.execute(
                jobs.insert().values(
                    id=job_id,
                    created_at=self._now(),
                    status=S.validating_files,
                    attempts=0,
                    cancel_requested=False,
                    **values,
                )
            )
        created = self.get_job(job_id)
        assert created is not None
        return created

    @_retrying
    def get_job(self, job_id: str) -> JobRow | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return row_of(JobRow, row) if row else None

    @_retrying
    def list_jobs(
        self, after: str | None, limit: int, metadata: dict[str, str] | None = None
    ) -> tuple[list[JobRow], bool]:
        """Jobs newest first; with ``metadata``, only those whose metadata holds every given key and value (a JSON
        condition in SQL: ``json_extract`` on SQLite, ``->>`` on PostgreSQL)."""
        if not metadata:
            return self._page(JobRow, jobs, None, after, limit, descending=True)
        where = sa.and_(*(jobs.c.job_metadata[k].as_string() == v for k, v in metadata.items()))
        return self._page(JobRow, jobs, where, after, limit, descending=True, cursor_filtered=False)

    @_retrying
    def set_status(
        self,
        job_id: str,
        status: str,
        *,
        expect: tuple[str, ...] | None = None,
        worker_id: str | None = None,
        **values: Any,
    ) -> bool:
        """Move a job to ``status`` if it is in one of ``expect`` (and held by ``worker_id``, when given)."""
        q = jobs.update().where(jobs.c.id == job_id)
        if expect is not None:
            q = q.where(jobs.c.status.in_(expect))
        if worker_id is not None:
            q = q.where(jobs.c.worker_id == worker_id)
        if isinstance(values.get("error"), JobError):
            values["error"] = _stored(values["error"])
        if status in TERMINAL:
            values.setdefault("finished_at", self._now())
            values.setdefault("lease_until", None)
            values.setdefault("estimated_finish", None)
        with self._tx() as c:
            return c.execute(q.values(status=status, **values)).rowcount > 0

    @_retrying
    def request_cancel(self, job_id: str) -> JobRow | None:
        """Cancel a job: at once when no worker runs it (queued, or its worker is gone), else flag it for its
        worker, which stops within seconds. Returns the job, or None if it does not exist."""
        now = self.clock()
        with self._tx() as c:
            job = c.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
            if job is None:
                return None
            if job["status"] in TERMINAL:
                return row_of(JobRow, job)
            if job["status"] in (S.validating_files, S.queued) or (job["lease_until"] or 0) < now:
                c.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id)
                    .values(status=S.cancelled, finished_at=self._now(), lease_until=None, cancel_requested=True)
                )
                self._event(c, job_id, EventLevel.info, "Job cancelled")
            elif not job["cancel_requested"]:
                c.execute(jobs.update().where(jobs.c.id == job_id).values(cancel_requested=True))
                self._event(c, job_id, EventLevel.info, "Cancellation requested; stopping at the next step")
        return self.get_job(job_id)

    @_retrying
    def claim(self, worker_id: str, lease_seconds: float, max_attempts: int) -> JobRow | None:
        """Take the oldest queued job, or one whose worker stopped renewing its lease, for ``worker_id``.

        A job that has been claimed ``max_attempts`` times already fails instead, with the reason in its error."""
        while True:
            now = self.clock()
            with self._tx() as c:
                q = (
                    sa.select(jobs)
                    .where(
                        sa.or_(jobs.c.status == S.queued, sa.and_(jobs.c.status == S.running, jobs.c.lease_until < now))
                    )
                    .order_by(jobs.c.seq)
                    .limit(1)
                )
                if not self.is_sqlite:
                    q = q.with_for_update(skip_locked=True)
                job = c.execute(q).mappings().first()
                if job is None:
                    return None
                job_id, lost = job["id"], job["status"] == S.running
                if lost and job["cancel_requested"]:
                    c.execute(
                        jobs.update()
                        .where(jobs.c.id == job_id)
                        .values(status=S.cancelled, finished_at=self._now(), lease_until=None)
                    )
                    self._event(c, job_id, EventLevel.info, "Job cancelled (its worker had stopped)")
                    continue
                if lost and job["attempts"] >= max_attempts:
                    error = JobError(
                        code="worker_lost",
                        message=f"the job's worker stopped {job['attempts']} times (last: "
                        f"{job['worker_id']}); giving up after {max_attempts} attempts",
                    )
                    c.execute(
                        jobs.update()
                        .where(jobs.c.id == job_id)
                        .values(status=S.failed, finished_at=self._now(), lease_until=None, error=_stored(error))
                    )
                    self._event(c, job_id, EventLevel.error, error.message)
                    continue
                attempt = job["attempts"] + 1
                c.execute(
                    jobs.update()
                    .where(jobs.c.id == job_id)
                    .values(
                        status=S.running,
                        worker_id=worker_id,
                        lease_until=now + lease_seconds,
                        attempts=attempt,
                        started_at=job["started_at"] or self._now(),
                    )
                )
                if lost:
                    msg = (
                        f"Worker {job['worker_id']} stopped responding; resuming on {worker_id} "
                        f"(attempt {attempt} of {max_attempts})"
                    )
                    self._event(
                        c, job_id, EventLevel.warn, msg, data={"lease_seconds": lease_seconds, "attempt": attempt}
                    )
                else:
                    self._event(
                        c,
                        job_id,
                        EventLevel.info,
                        f"Fine-tuning job started on {worker_id} (should the worker go silent for "
                        f"{lease_seconds:g} s, NEGMINER_JOB_LEASE_SECONDS, another worker resumes the job from its "
                        "last checkpoint)",
                        data={"lease_seconds": lease_seconds, "attempt": attempt},
                    )
            return self.get_job(job_id)

    @_retrying
    def renew(self, job_id: str, worker_id: str, lease_seconds: float) -> tuple[bool, bool]:
        """Extend the lease; (still ours, cancel requested). Not ours any more means: stop at once."""
        with self._tx() as c:
            n = c.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.worker_id == worker_id, jobs.c.status == S.running)
                .values(lease_until=self.clock() + lease_seconds)
            ).rowcount
            cancel = c.execute(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar()
        return n > 0, bool(cancel)

    @_retrying
    def set_progress(self, job_id: str, worker_id: str, step: int, when: int | None) -> None:
        """The running job's steps trained so far and when it should be done (Unix time; None: not known yet),
        as its worker says."""
        with self._tx() as c:
            c.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.worker_id == worker_id, jobs.c.status == S.running)
                .values(estimated_finish=when, trained_steps=step)
            )

    @_retrying
    def release(self, job_id: str, worker_id: str, message: str) -> bool:
        """Give a running job back to the queue (a worker shutting down); the claim is not counted."""
        with self._tx() as c:
            n = c.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.worker_id == worker_id, jobs.c.status == S.running)
                .values(status=S.queued, lease_until=None, worker_id=None, attempts=jobs.c.attempts - 1)
            ).rowcount
            if n:
                self._event(c, job_id, EventLevel.warn, message)
        return n > 0

    # -- events ---------------------------------------------------------------------------------------------
    def _event(
        self,
        c: Connection,
        job_id: str,
        level: str,
        message: str,
        type: str = EventType.message,
        data: dict[str, Any] | None = None,
    ) -> None:
        row = dict(job_id=job_id, level=level, message=message, type=type, data=data)
        c.execute(events.insert().values(id=new_id("ftevent"), created_at=self._now(), **row))
        if self.events_kept:  # retention: the oldest metrics events go first, then the oldest of any type
            n = c.execute(sa.select(sa.func.count()).select_from(events).where(events.c.job_id == job_id)).scalar()
            excess = int(n or 0) - self.events_kept
            for kind in (EventType.metrics, None):
                if excess <= 0:
                    break
                q = sa.select(events.c.seq).where(events.c.job_id == job_id)
                if kind is not None:
                    q = q.where(events.c.type == kind)
                old = [r for (r,) in c.execute(q.order_by(events.c.seq).limit(excess))]
                c.execute(events.delete().where(events.c.seq.in_(old)))
                excess -= len(old)

    @_retrying
    def add_event(
        self,
        job_id: str,
        message: str,
        *,
        level: str = EventLevel.info,
        type: str = EventType.message,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self._tx() as c:
            self._event(c, job_id, level, message, type, data)

    @_retrying
    def list_events(
        self,
        job_id: str,
        after: str | None,
        limit: int,
        *,
        descending: bool = True,
    ) -> tuple[list[EventRow], bool]:
        return self._page(EventRow, events, events.c.job_id == job_id, after, limit, descending=descending)

    # -- checkpoints and models -----------------------------------------------------------------------------
    @_retrying
    def add_checkpoint(self, job_id: str, step: int, model: str, path: str, metrics: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute(
                models.insert().values(
                    name=model, created_at=self._now(), path=path, job_id=job_id, kind=ModelKind.checkpoint
                )
            )
            c.execute(
                checkpoints.insert().values(
                    id=new_id("ftckpt"), job_id=job_id, created_at=self._now(), step=step, model=model, metrics=metrics
                )
            )

    @_retrying
    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> tuple[list[CheckpointRow], bool]:
        return self._page(CheckpointRow, checkpoints, checkpoints.c.job_id == job_id, after, limit, descending=True)

    @_retrying
    def drop_checkpoint(self, job_id: str, model: str) -> None:
        with self._tx() as c:
            c.execute(checkpoints.delete().where(checkpoints.c.job_id == job_id, checkpoints.c.model == model))
            c.execute(models.delete().where(models.c.name == model))

    @_retrying
    def register_model(self, name: str, path: str, job_id: str | None, kind: str = ModelKind.fine_tuned) -> None:
        with self._tx() as c:
            c.execute(models.delete().where(models.c.name == name))
            c.execute(models.insert().values(name=name, created_at=self._now(), path=path, job_id=job_id, kind=kind))

    @_retrying
    def delete_model(self, name: str) -> None:
        """Forget a model (a fine-tuned model: also the job's name for it; a checkpoint: its checkpoint row)."""
        with self._tx() as c:
            c.execute(models.delete().where(models.c.name == name))
            c.execute(checkpoints.delete().where(checkpoints.c.model == name))

    @_retrying
    def get_model(self, name: str) -> ModelRow | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(models).where(models.c.name == name)).mappings().first()
        return row_of(ModelRow, row) if row else None

    @_retrying
    def model_named_by_path(self, path: str) -> str | None:
        """The registered name of the model in folder ``path``, if any."""
        with self.engine.connect() as c:
            return c.execute(sa.select(models.c.name).where(models.c.path == path).limit(1)).scalar()

    @_retrying
    def models_in_use(self) -> list[str]:
        """The folders (or upload ids) that registered models and unfinished jobs' base models stand on: what the
        service's sweep must not collect."""
        with self.engine.connect() as c:
            registered = list(c.execute(sa.select(models.c.path)).scalars())
            unfinished = jobs.c.status.not_in([str(s) for s in TERMINAL])
            bases = list(c.execute(sa.select(jobs.c.model_path).where(unfinished)).scalars())
        return registered + bases

    @_retrying
    def list_models(self) -> list[ModelRow]:
        with self.engine.connect() as c:
            return [row_of(ModelRow, r) for r in c.execute(sa.select(models).order_by(models.c.seq)).mappings()]

    # -- pagination -----------------------------------------------------------------------------------------
    def _page(
        self,
        cls: type[R],
        table: sa.Table,
        where: Any,
        after: str | None,
        limit: int,
        *,
        descending: bool,
        cursor_filtered: bool = True,
    ) -> tuple[list[R], bool]:
        """One page after the row with id ``after`` (newest first when ``descending``), and whether more follow;
        ``cursor_filtered``: ``after`` must itself match ``where`` (else any row of the table may be the cursor).

        An unknown ``after`` raises KeyError."""
        key = table.c.id
        q = sa.select(table)
        if where is not None:
            q = q.where(where)
        with self.engine.connect() as c:
            if after is not None:
                cur = sa.select(table.c.seq).where(key == after)
                if where is not None and cursor_filtered:
                    cur = cur.where(where)
                seq = c.execute(cur).scalar()
                if seq is None:
                    raise KeyError(after)
                q = q.where(table.c.seq < seq if descending else table.c.seq > seq)
            q = q.order_by(table.c.seq.desc() if descending else table.c.seq).limit(limit + 1)
            rows = [row_of(cls, r) for r in c.execute(q).mappings()]
        return rows[:limit], len(rows) > limit
