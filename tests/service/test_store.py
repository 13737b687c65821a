"""The job store on both backends (SQLite in WAL mode, and PostgreSQL when this machine has its server): the same
tests hold them congruent. Claims are exclusive, leases expire, attempts are bounded, writes are fenced."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from negminer.jobs import JobStore
from tests.service._postgres import PostgresCluster

HP = {"loss": "infonce"}


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port, if the server is installed (skipped otherwise)."""
    with PostgresCluster() as pg:
        yield pg.url


class Clock:
    """A wall clock the test moves: leases expire when the test says, not after a sleep."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])  # a server process
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[JobStore]:
    if request.param == "sqlite":
        s = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock)
    else:
        s = JobStore(request.getfixturevalue("postgres_url"), clock=clock)
        import sqlalchemy as sa

        with s.engine.begin() as c:  # a clean slate per test
            for t in ("events", "checkpoints", "models", "jobs", "files"):
                c.execute(sa.text(f"DELETE FROM {t}"))
    yield s
    s.close()


def _file(store: JobStore, file_id: str = "file-1") -> str:
    if store.get_file(file_id) is None:
        store.add_file(id=file_id, filename="t.jsonl", purpose="fine-tune", nbytes=1, path="/t", sha256="0", info={})
    return file_id


def _job(store: JobStore, **kw: object) -> str:
    _file(store)
    row = store.create_job(model="m", model_path="/m", training_file="file-1", hyperparameters=HP, seed=1, **kw)
    store.set_status(row.id, "queued", expect=("validating_files",))
    return row.id


def test_claims_are_exclusive_under_contention(store: JobStore) -> None:
    ids = {_job(store) for _ in range(6)}
    got: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := store.claim(name, 60, 3)) is not None:
            with lock:
                got.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)  # every job once: none lost, none run twice
    assert store.claim("late", 60, 3) is None


def test_a_file_is_deleted_or_used_by_a_job_never_both(store: JobStore) -> None:
    """A job created while its training file is deleted: either the job exists and the delete was refused
    (FileInUse), or the file is gone and the job was refused (FileGone). 20 races, both backends."""
    from negminer.jobs import FileGone, FileInUse

    outcomes = set()
    for i in range(20):
        fid = _file(store, f"file-race-{i}")
        results: dict[str, object] = {}
        barrier = threading.Barrier(2)

        def create(fid: str = fid, results: dict = results, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                results["job"] = store.create_job(
                    model="m", model_path="/m", training_file=fid, hyperparameters=HP, seed=1
                ).id
            except FileGone as exc:
                results["job"] = exc

        def delete(fid: str = fid, results: dict = results, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                results["deleted"] = store.delete_file(fid)
            except FileInUse as exc:
                results["deleted"] = exc

        threads = [threading.Thread(target=create), threading.Thread(target=delete)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        job_made, deleted = isinstance(results["job"], str), results["deleted"] is True
        assert job_made != deleted, results  # exactly one of them won
        assert (store.get_file(fid) is None) == deleted
        outcomes.add("job" if job_made else "delete")
    with pytest.raises(FileGone, match="no file 'nope'"):
        store.create_job(model="m", model_path="/m", training_file="nope", hyperparameters=HP, seed=1)


def test_expired_lease_is_claimed_again_then_fails_after_max_attempts(store: JobStore, clock: Clock) -> None:
    job_id = _job(store)
    assert store.claim("w1", 60, 2).attempts == 1
    clock.advance(59)
    assert store.claim("w2", 60, 2) is None  # w1's lease still runs
    clock.advance(2)
    again = store.claim("w2", 60, 2)
    assert again.id == job_id and again.worker_id == "w2" and again.attempts == 2
    assert store.renew(job_id, "w1", 60) == (False, False)  # the old worker is fenced off
    assert not store.set_status(job_id, "succeeded", expect=("running",), worker_id="w1")
    clock.advance(61)
    assert store.claim("w3", 60, 2) is None
    job = store.get_job(job_id)
    assert job.status == "failed" and job.error.code == "worker_lost"
    events, _ = store.list_events(job_id, None, 100, descending=False)
    assert [e.level for e in events] == ["info", "warn", "error"]


def test_release_requeues_without_spending_an_attempt(store: JobStore) -> None:
    job_id = _job(store)
    store.claim("w1", 60, 1)
    assert store.release(job_id, "w1", "shutting down")
    job = store.claim("w2", 60, 1)
    assert job.id == job_id and job.attempts == 1


def test_cancel_queued_running_and_orphaned(store: JobStore, clock: Clock) -> None:
    queued = _job(store)
    assert store.request_cancel(queued).status == "cancelled"
    running = _job(store)
    store.claim("w1", 60, 3)
    job = store.request_cancel(running)
    assert job.status == "running" and job.cancel_requested
    assert store.renew(running, "w1", 60) == (True, True)
    orphan = _job(store)
    store.claim("w2", 60, 3)
    clock.advance(61)
    assert store.request_cancel(orphan).status == "cancelled"  # nobody renews it: cancelled at once
    assert store.request_cancel("ftjob-nope") is None


def test_pagination_newest_first_and_oldest_first(store: JobStore) -> None:
    ids = [_job(store) for _ in range(5)]
    page, more = store.list_jobs(None, 2)
    assert [j.id for j in page] == ids[::-1][:2] and more
    page2, more2 = store.list_jobs(page[-1].id, 2)
    page3, more3 = store.list_jobs(page2[-1].id, 2)
    assert [j.id for j in page + page2 + page3] == ids[::-1] and more2 and not more3
    for i in range(3):
        store.add_event(ids[0], f"e{i}")
    asc, _ = store.list_events(ids[0], None, 10, descending=False)
    after, _ = store.list_events(ids[0], asc[0].id, 10, descending=False)
    assert [e.message for e in asc] == ["e0", "e1", "e2"]
    assert [e.message for e in after] == ["e1", "e2"]
    with pytest.raises(KeyError):
        store.list_jobs("ftjob-unknown", 2)


def test_checkpoints_and_models(store: JobStore) -> None:
    job_id = _job(store)
    store.add_checkpoint(job_id, 5, "ft:m:x:ckpt-step-5", "/p5", {"step": 5})
    store.add_checkpoint(job_id, 10, "ft:m:x:ckpt-step-10", "/p10", {"step": 10})
    rows, more = store.list_checkpoints(job_id, None, 10)
    assert [r.step for r in rows] == [10, 5] and not more
    assert store.get_model("ft:m:x:ckpt-step-5").path == "/p5"
    store.drop_checkpoint(job_id, "ft:m:x:ckpt-step-5")
    assert store.get_model("ft:m:x:ckpt-step-5") is None
    store.register_model("ft:m:x", "/final", job_id)
    assert [m.name for m in store.list_models()] == ["ft:m:x:ckpt-step-10", "ft:m:x"]


def test_event_retention_drops_the_oldest_metrics_first(store: JobStore) -> None:
    store.events_kept = 5
    job = _job(store)
    store.add_event(job, "started")
    for i in range(8):
        store.add_event(job, f"step {i}", type="metrics")
    store.add_event(job, "done")
    rows, _ = store.list_events(job, None, 100, descending=False)
    assert [r.message for r in rows] == ["started", "step 5", "step 6", "step 7", "done"]


def test_migrations_build_the_schema_the_store_queries(store: JobStore) -> None:
    """Alembic's autogenerate comparison (what ``alembic check`` runs) of the migrated database against the
    store's tables (``target_metadata``) finds nothing to change, on SQLite and PostgreSQL: the hand-written
    revisions cannot drift from the queries; the database is at the newest revision."""
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from negminer.jobs._store import METADATA

    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), METADATA)
        assert diff == []
        assert c.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0001"


def test_a_drifted_schema_is_seen(tmp_path: Path) -> None:
    """The comparison is not blind: a column the revisions lack shows up."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from negminer.jobs._store import METADATA

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        with store.engine.begin() as c:
            c.exec_driver_sql("ALTER TABLE jobs DROP COLUMN estimated_finish")
        with store.engine.connect() as c:
            diff = compare_metadata(MigrationContext.configure(c), METADATA)
        assert [(d[0], d[3].name) for d in diff if isinstance(d, tuple)] == [("add_column", "estimated_finish")]
    finally:
        store.close()


def test_jobs_are_filtered_by_metadata_in_the_database(store: JobStore) -> None:
    """Every given key must hold its value (JSON in SQL on both backends); pages and cursors work as unfiltered."""
    ids = [_job(store, job_metadata={"team": "ir" if i % 2 else "nlp", "run": str(i)}) for i in range(7)]
    _job(store)  # no metadata at all
    ir = [i for n, i in enumerate(ids) if n % 2]
    rows, more = store.list_jobs(None, 10, {"team": "ir"})
    assert [r.id for r in rows] == ir[::-1] and not more
    first, more = store.list_jobs(None, 2, {"team": "ir"})
    rest, again = store.list_jobs(first[-1].id, 2, {"team": "ir"})
    assert more and not again and [r.id for r in first + rest] == ir[::-1]
    assert [r.id for r in store.list_jobs(None, 10, {"team": "ir", "run": "3"})[0]] == [ids[3]]
    assert store.list_jobs(None, 10, {"team": "nobody"}) == ([], False)
    assert store.list_jobs(None, 10, {"team'; DROP TABLE jobs; --": "x"}) == ([], False)  # a key is data
    assert len(store.list_jobs(None, 20)[0]) == 8
