"""The fine-tuning worker: claims queued jobs from the job database and runs the trainer, one job at a time.

Each job runs in a child process (spawned), so that the worker can renew the job's lease, watch for a cancel and
kill a job that does not stop, while the child trains. The child records events, checkpoints and the final state
itself; every write is fenced by the worker id, so a worker that lost its lease can no longer touch the job.

Failure model:

- worker killed (SIGKILL, machine lost): the child notices its parent is gone and exits; the job's lease runs out
  and the next worker to look claims it again and resumes from the last complete checkpoint, up to
  ``job_max_attempts`` claims (then it fails with ``worker_lost``). Events and checkpoints already recorded stay.
- worker stopped (SIGTERM / SIGINT): the job goes back to the queue at once, to be resumed the same way.
- cancel: the child stops after the current step and saves a checkpoint; if it is busy elsewhere (encoding, an
  evaluation) for more than ``cancel_grace_seconds`` the worker kills it. Its checkpoints stay registered.
- the trainer fails (bad data, bad options, a crash): the job fails with the error; it is not retried.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from negminer import DataError, NegminerError, NonFiniteError, load_data
from negminer._io import atomic_dir, atomic_open, sha256_file, write_json
from negminer._retry import retrying
from negminer._settings import ServiceSettings
from negminer._vocab import EventLevel, EventType, JobStatus, new_id
from negminer.client import HttpNegativeSource, ServiceError
from negminer.client.schemas import JobError
from negminer.index._internal import pinned_models
from negminer.jobs._rows import FileRow
from negminer.jobs._store import TERMINAL, JobStore, StoreUnavailable
from negminer.trainer import (
    CheckpointEvent,
    EvaluationEvent,
    LogEvent,
    RefreshEvent,
    ResumeEvent,
    TrainConfig,
    TrainListener,
    check_devices,
    current_process,
    launch,
)

S = JobStatus
T = TypeVar("T")

__all__ = ["Worker", "model_name"]

logger = logging.getLogger("negminer.worker")


def model_name(base: str, suffix: str | None, job_id: str) -> str:
    """OpenAI-style name of a fine-tuned model: ``ft:<base>:<suffix>:<job id>`` (no suffix: ``ft:<base>:<job>``)."""
    if base.startswith("ft:"):
        base = base.split(":")[1]
    base = Path(base).name or base
    return ":".join(["ft", base, *([suffix] if suffix else []), job_id])


class Worker:
    """Claims and runs jobs until :meth:`stop`. ``run_forever`` in the foreground (``negminer worker``) or in a
    thread of the API process (``negminer serve --with-worker``)."""

    def __init__(self, settings: ServiceSettings, worker_id: str | None = None) -> None:
        self.settings = settings
        self.store = JobStore(
            settings.database, events_kept=settings.job_events_kept, retry_seconds=settings.store_retry_seconds
        )
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run_forever(self) -> None:
        logger.info("worker %s polling %s", self.id, self.store.engine.url.render_as_string(hide_password=True))
        while not self._stop.is_set():
            try:
                job = self.store.claim(self.id, self.settings.job_lease_seconds, self.settings.job_max_attempts)
            except Exception:  # the database is unreachable for a while: keep trying
                logger.exception("claiming a job failed")
                job = None
            if job is None:
                self._stop.wait(self.settings.worker_poll_seconds)
                continue
            try:
                self.run_job(job.id)
            except StoreUnavailable:  # down longer than store_retry_seconds: the lease runs out, the job is resumed
                logger.exception("lost the job database while running %s", job.id)
        self.store.close()

    def run_once(self) -> str | None:
        """Claim and run one job, if any is waiting (tests, cron-style use). Returns its id."""
        job = self.store.claim(self.id, self.settings.job_lease_seconds, self.settings.job_max_attempts)
        if job is None:
            return None
        self.run_job(job.id)
        return job.id

    def run_job(self, job_id: str) -> None:
        """Run a claimed job in a child process; renew its lease, pass on cancels, handle the child's end."""
        s = self.settings
        logger.info("running %s", job_id)
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_child_main, args=(s, job_id, self.id), name=f"negminer-{job_id}")
        proc.start()
        renew_every = max(0.2, min(s.job_lease_seconds / 4, 5.0))
        claimed = self.store.get_job(job_id)
        started_at = claimed.started_at if claimed else None
        last_renew, cancel_seen, outcome = time.monotonic(), None, ""
        while proc.is_alive():
            proc.join(timeout=min(renew_every, 0.5))
            if not proc.is_alive():
                break
            if self._stop.is_set():
                _kill(proc)
                self.store.release(
                    job_id,
                    self.id,
                    f"Worker {self.id} is shutting down; the job is queued again "
                    "and will resume from its last checkpoint",
                )
                outcome = "released"
                break
            if time.monotonic() - last_renew >= renew_every:
                last_renew = time.monotonic()
                try:
                    ours, cancel = self.store.renew(job_id, self.id, s.job_lease_seconds)
                except Exception:
                    logger.exception("renewing the lease of %s failed", job_id)
                    continue
                if not ours:
                    job = self.store.get_job(job_id)
                    if job and job.worker_id == self.id and job.status in TERMINAL:
                        proc.join()  # the child has just ended the job itself and is exiting
                        break
                    logger.warning("%s is no longer ours (lease lost); stopping it", job_id)
                    _kill(proc)
                    outcome = "lost"
                    break
                if cancel and cancel_seen is None:
                    cancel_seen = time.monotonic()
            if started_at and time.time() - started_at > s.job_max_seconds + s.cancel_grace_seconds + 30:
                _kill(proc)  # the child should have stopped itself at the limit (see _JobRun.should_stop)
                limit = _time_limit_error(s)
                if self.store.set_status(job_id, S.failed, expect=(S.running,), worker_id=self.id, error=limit):
                    self.store.add_event(job_id, limit.message, level=EventLevel.error)
                outcome = "timed out"
                break
            if cancel_seen is not None and time.monotonic() - cancel_seen > s.cancel_grace_seconds:
                _kill(proc)
                if self.store.set_status(job_id, S.cancelled, expect=(S.running,), worker_id=self.id):
                    self.store.add_event(
                        job_id, f"Job cancelled (stopped after {s.cancel_grace_seconds:g} s); its checkpoints are kept"
                    )
                outcome = "cancelled"
                break
        proc.join()
        try:
            self._finish(job_id, proc, outcome)
        finally:
            self._tidy(job_id)

    def _tidy(self, job_id: str) -> None:
        """Once a job has ended, drop what only a resume needed: the trainer's checkpoints (weights plus optimizer
        state; the checkpoints registered as models were uploaded to the API or hard-linked apart) and the refresh
        models (the index service holds its own uploaded copies), unless ``keep_trainer_state`` is set."""
        job = self.store.get_job(job_id)
        if self.settings.keep_trainer_state or not job or job.status not in TERMINAL:
            return
        out = Path(self.settings.data_dir) / "jobs" / job_id
        for folder in (out / "checkpoints", out / "refresh"):
            shutil.rmtree(folder, ignore_errors=True)

    def _finish(self, job_id: str, proc: Any, outcome: str) -> None:
        """Record the end of a job whose training process ended without recording it."""
        if outcome:
            return
        job = self.store.get_job(job_id)
        if job and job.status == S.running and job.worker_id == self.id:  # the child died without a word
            code = proc.exitcode
            how = (
                f"was killed by signal {-code}" + (" (out of memory?)" if code == -signal.SIGKILL else "")
                if code and code < 0
                else f"exited with code {code} (the worker's log has its output)"
            )
            error = JobError(code="training_process_died", message=f"the training process {how}")
            if job.cancel_requested:
                self.store.set_status(job_id, S.cancelled, expect=(S.running,), worker_id=self.id)
            else:
                self.store.set_status(job_id, S.failed, expect=(S.running,), worker_id=self.id, error=error)
                self.store.add_event(job_id, error.message, level=EventLevel.error)


def _refused_key(url: str) -> str:
    return f"the API at {url} refused this worker's key: set NEGMINER_API_KEY to the API's key"


def _time_limit_error(s: ServiceSettings) -> JobError:
    return JobError(
        code="time_limit_exceeded",
        message=f"the job ran past its wall-clock limit of {s.job_max_seconds:g} s (NEGMINER_JOB_MAX_SECONDS); "
        "its checkpoints are kept: start a new job from the last one to go on",
    )


def job_error(exc: BaseException, settings: ServiceSettings) -> JobError:
    """What a failed training process records: the error's code, its message without the server's folders, the
    parameter at fault (and the step, for a non-finite loss)."""
    step = None
    if isinstance(exc, NonFiniteError):
        code, param, step = exc.code, None, exc.step
    elif isinstance(exc, ServiceError):
        unreachable = exc.status is None or exc.status >= 500
        code, param = ("index_service_unavailable" if unreachable else "index_service_error"), exc.param or "index"
    elif isinstance(exc, DataError):
        code, param = "invalid_file", exc.param
    elif isinstance(exc, NegminerError):
        code, param = "invalid_request", exc.param
    else:
        return JobError(code="internal_error", message=settings.without_paths(f"{type(exc).__name__}: {exc}"))
    return JobError(code=code, message=settings.without_paths(str(exc)), param=param, step=step)


def _kill(proc: Any, grace: float = 5.0) -> None:
    proc.terminate()
    proc.join(grace)
    if proc.is_alive():
        proc.kill()
        proc.join()


# -- the child process -----------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Exit when the worker that started us is gone (SIGKILL leaves no chance to tell us)."""
    parent = os.getppid()
    try:  # Linux: the kernel sends SIGKILL when the parent dies
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _rank_main(settings: ServiceSettings, job_id: str, worker_id: str) -> None:
    """One of a job's data-parallel processes (``devices`` > 1): rank 0 is the job's run (events, status, model),
    the others train beside it."""
    _child_main(settings, job_id, worker_id)


def _child_main(settings: ServiceSettings, job_id: str, worker_id: str) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the worker, which decides
    # negminer's own progress at INFO; the libraries' INFO lines (alembic's migration context, faiss's loader
    # trying its AVX builds) say nothing a user acts on
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("negminer").setLevel(logging.INFO)
    store = JobStore(
        settings.database, events_kept=settings.job_events_kept, retry_seconds=settings.store_retry_seconds
    )
    try:
        _JobRun(settings, store, job_id, worker_id).run()
    except BaseException as exc:  # noqa: BLE001 - every failure ends up in the job, never lost
        error = job_error(exc, settings)
        if error.code == "internal_error":
            logger.error("job %s failed:\n%s", job_id, traceback.format_exc())
        if store.set_status(job_id, S.failed, expect=(S.running,), worker_id=worker_id, error=error):
            store.add_event(job_id, f"Job failed: {error.message}", level=EventLevel.error)
        raise SystemExit(0) from None
    finally:
        store.close()


class _JobRun(TrainListener):
    """One attempt at one job, inside the child process; it hears of the training run as its listener."""

    def __init__(self, settings: ServiceSettings, store: JobStore, job_id: str, worker_id: str) -> None:
        self.s, self.store, self.job_id, self.worker_id = settings, store, job_id, worker_id
        job = store.get_job(job_id)
        if job is None:
            raise RuntimeError(f"job {job_id} vanished")
        self.job = job
        self.data_dir = Path(settings.data_dir).resolve()
        self.out = self.data_dir / "jobs" / job_id
        self.models_dir = self.data_dir / "models" / job_id
        self.name = model_name(job.model, job.suffix, job_id)
        self.last_log: dict[str, Any] = {}
        self.last_eval: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []  # one row per logged step / evaluation, for step_metrics.csv
        self._checked = 0.0
        self._pace: tuple[float, int] | None = None  # (time, step) where this attempt's training began
        self.timed_out = False
        self.shared = True  # one data dir with the API (learnt from where its training file lies)

    def event(
        self,
        message: str,
        *,
        level: str = EventLevel.info,
        type: str = EventType.message,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.store.add_event(self.job_id, message, level=level, type=type, data=data)

    def load(self, file_id: str, param: str) -> Any:
        row = self.store.get_file(file_id)
        try:
            if row is None:
                raise DataError(f"file {file_id} is gone")
            return load_data(self.over_http(self.local_copy, row, param, what=f"fetching {param}"))
        except DataError as exc:
            raise DataError(
                exc.message, file=row.filename if row else file_id, line=exc.line, field=exc.field, param=param
            ) from None

    def local_copy(self, row: FileRow, param: str) -> Path:
        """The file's bytes on this machine: the API's own copy when this worker shares its data dir, else fetched
        from the API (``GET /v1/files/{id}/content``, streamed) into this worker's data dir, cached by id and checked
        against the sha256 the API recorded at upload; written under a temporary name, so a cut download is never
        read."""
        import httpx

        path = Path(row.path)
        self.shared = path.resolve().is_relative_to(self.data_dir)
        if self.shared:  # one data dir with the API: its copy is the file
            if not path.is_file():
                raise DataError(f"file {row.id} is gone")
            return path
        cached = self.data_dir / "files-cache" / f"{row.id}{Path(row.filename).suffix}"
        if cached.is_file() and sha256_file(cached) == row.sha256:
            return cached
        digest = hashlib.sha256()
        try:
            with self._api(timeout=60) as api, api.stream("GET", f"/v1/files/{row.id}/content") as r:
                self._refused(r.status_code, param)
                if r.status_code != 200:
                    raise DataError(f"file {row.id} is gone (the API answered {r.status_code})")
                with atomic_open(cached, "wb") as fh:
                    for chunk in r.iter_bytes(1 << 20):
                        digest.update(chunk)
                        fh.write(chunk)
                    if digest.hexdigest() != row.sha256:
                        raise DataError(f"file {row.id}: the bytes fetched from the API do not match its sha256")
        except httpx.HTTPError as exc:
            raise ServiceError(
                f"fetching file {row.id} from the API at {self.s.service_url}: {exc}", param=param
            ) from None
        return cached

    def run(self) -> None:
        from negminer.trainer import train  # torch and transformers load in the training process only

        job = self.job
        data = self.load(job.training_file, "training_file")
        validation = self.load(job.validation_file, "validation_file") if job.validation_file else None
        cfg = TrainConfig(
            output_dir=str(self.out),
            model=self.base_model(),
            resume="auto",
            seed=job.seed,
            show_progress=False,
            cache_dir=str(self.s.cache_dir),
            device=self.s.device,
            encode_batch_size=self.s.batch_size,
            ray=self.s.ray_address,
            **job.hyperparameters,
        )
        here = current_process()
        if cfg.devices > 1 and not here.active:  # start the job's processes; rank 0 goes on as this run
            check_devices(cfg.devices)
            self.event(f"Training data-parallel on {cfg.devices} processes")
            launch(cfg.devices, _rank_main, self.s, self.job_id, self.worker_id, run_id=self.job_id)
            return
        source = None  # mined in the training process, unless the job mines from an index of the service
        if job.index and here.main:
            assert cfg.model is not None
            source = HttpNegativeSource.factory(
                self.s.service_url,
                self.job_id,
                api_key=self.s.api_key,
                from_index=job.index,
                delete_on_close=True,
                labels={"job": self.job_id},
                expires_after=self.s.index_lease_seconds,
                known_models={cfg.model: job.model},  # the API has the job's model: the first build names it
                retry_seconds=self.s.index_retry_seconds,
            )
        if here.main:
            self.event(
                f"Training on {len(data)} queries ({data.num_pairs} pairs), {len(data.corpus_texts)} documents"
                + (f"; validating on {len(validation)} queries" if validation is not None else "")
            )
            if cfg.negatives != "none":
                self.event(_filter_message(cfg.mining_config()), data={"mining_filter": cfg.mining.describe_filter()})
        result = train(data, cfg, validation=validation, source=source, listener=self)
        if not here.main:
            return  # rank 0 reports the job's end
        done = {"trained_steps": result.steps, "trained_tokens": result.tokens, "result_files": self.results_file()}
        if result.stopped and self.timed_out:
            error = _time_limit_error(self.s)
            if self.store.set_status(
                self.job_id, S.failed, expect=(S.running,), worker_id=self.worker_id, error=error, **done
            ):
                self.event(error.message, level=EventLevel.error)
            return
        if result.stopped:
            if self.store.set_status(self.job_id, S.cancelled, expect=(S.running,), worker_id=self.worker_id, **done):
                self.event(f"Job cancelled at step {result.steps}; its checkpoints are kept")
            return
        trained = result.model_summary()
        self.event(trained[:1].upper() + trained[1:])
        final = self.keep_model(Path(result.model_path), self.models_dir / "final", "the fine-tuned model")
        self.store.register_model(self.name, final, self.job_id)
        after = result.after
        self.event(
            f"New fine-tuned model created: {self.name}",
            type=EventType.metrics,
            data={
                "step": result.steps,
                "fine_tuned_model": self.name,
                **{k: after[k] for k in ("ndcg@10", "recall@100", "mrr@10") if k in after},
            },
        )
        if self.store.set_status(
            self.job_id,
            S.succeeded,
            expect=(S.running,),
            worker_id=self.worker_id,
            fine_tuned_model=self.name,
            **done,
        ):
            self.event("The job has successfully completed")

    def results_file(self) -> list[str]:
        """Write the job's step metrics as ``step_metrics.csv`` (a file of purpose ``fine-tune-results``, as
        OpenAI's jobs have); its id goes in the job's ``result_files``."""
        if not self.history:
            return []
        columns = ["step", "epoch", "train_loss", "learning_rate", "ndcg@10", "recall@100", "mrr@10"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        raw = buf.getvalue().encode()
        file_id = new_id("file")
        dest = self.data_dir / "files" / f"{file_id}.csv"
        with atomic_open(dest, "wb") as fh:
            fh.write(raw)
        info = {"format": "csv", "job": self.job_id}
        self.store.add_file(
            id=file_id,
            filename="step_metrics.csv",
            purpose="fine-tune-results",
            nbytes=len(raw),
            path=str(dest),
            sha256=hashlib.sha256(raw).hexdigest(),
            info=info,
        )
        return [file_id]

    # -- models over HTTP ------------------------------------------------------------------------------------------
    def _api(self, timeout: float = 600) -> Any:
        """An HTTP client of the API, with this worker's key."""
        import httpx

        key = self.s.api_key
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        return httpx.Client(base_url=self.s.service_url, headers=headers, timeout=timeout)

    def _refused(self, status: int, param: str) -> None:
        """Raise for an answer of the API that is about this worker, not the thing asked for: its key refused, or
        the API restarting (a :class:`ServiceError` that :meth:`over_http` tries again)."""
        if status in (401, 403):
            raise ServiceError(_refused_key(self.s.service_url), status=status, param=param)
        error = ServiceError(f"the API answered {status}", status=status, param=param)
        if error.retryable:
            raise error

    def base_model(self) -> str:
        """The folder of the model the job starts from: the API's own on one disk with it, this machine's copy of
        the default model when the job's is the same folder, or else the API's files fetched once
        (``GET /v1/models/{name}/content``) into ``models-cache/`` under their content id."""
        from negminer.index import default_model_path

        path = self.job.model_path
        if self.shared:
            return str(path)
        try:  # this machine's default model: the same install as the API's
            own = self.s.model or default_model_path()
        except ImportError:  # no bundled model here: the API's files it is
            own = None
        if own is not None and os.path.realpath(path) == os.path.realpath(own):
            return str(path)
        return self.over_http(self.fetch_model, self.job.model, what="fetching the job's model")

    def over_http(self, call: Callable[..., T], *args: Any, what: str, **kwargs: Any) -> T:
        """``call`` retried while the API cannot be reached or answers 502 / 503 / 504 (restarting), for
        ``index_retry_seconds`` (negminer's retry policy); then its error."""
        policy = retrying(
            self.s.index_retry_seconds,
            retry_on=lambda exc: isinstance(exc, ServiceError) and exc.retryable,
            initial=0.5,
            maximum=10.0,
            logger=logger,
            what=f"{what} from the API failed",
        )
        return policy(call, *args, **kwargs)

    def fetch_model(self, name: str) -> str:
        """The API's files of model ``name`` in ``models-cache/<content id>``: fetched once, then asked for with
        ``If-None-Match`` (304: nothing is sent)."""
        import httpx

        from negminer.client.uploads import is_upload_id, unpack_model

        cache = self.data_dir / "models-cache"
        cache.mkdir(parents=True, exist_ok=True)
        names_file = cache / "names.json"
        try:
            names = json.loads(names_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            names = {}
        known = names.get(name)
        if known and not (cache / str(known).removeprefix("sha256:")).is_dir():
            known = None
        headers = {"If-None-Match": f'"{known}"'} if known else {}
        try:
            with self._api() as api, api.stream("GET", f"/v1/models/{name}/content", headers=headers) as r:
                uid = r.headers.get("x-negminer-upload-id", "")
                self._refused(r.status_code, "model")
                if r.status_code not in (200, 304) or not is_upload_id(uid):
                    why = f"fetching model {name!r} from the API: it answered {r.status_code}"
                    raise ServiceError(why, status=r.status_code, param="model")
                if names.get(name) != uid:  # the name's content id now (a folder only counts once it is there)
                    write_json(names_file, {**names, name: uid})
                dest = cache / uid.removeprefix("sha256:")
                if r.status_code == 304 or dest.is_dir():
                    return str(dest)
                archive = cache / f".{secrets.token_hex(6)}.tar"
                try:
                    with open(archive, "wb") as fh:
                        for chunk in r.iter_bytes(1 << 20):
                            fh.write(chunk)
                    with atomic_dir(dest) as tmp:
                        tmp.rmdir()
                        unpack_model(archive, tmp, max_bytes=self.s.max_model_bytes, max_files=self.s.max_model_files)
                finally:
                    archive.unlink(missing_ok=True)
        except httpx.HTTPError as exc:
            why = f"fetching model {name!r} from the API at {self.s.service_url}: {exc}"
            raise ServiceError(why, param="model") from None
        self.event(f"Fetched the base model {name} from the API")
        return str(dest)

    def keep_model(self, src: Path, dest: Path, what: str, skip: frozenset[str] = frozenset()) -> str:
        """Keep a trained model for the API to serve, and return what the job database records of it: on one disk
        with the API, a folder of hard links ``dest``; else the id of its upload to the API
        (``POST /v1/models/uploads``; a LoRA model sends its adapter, based on the job's model)."""
        if self.shared:
            _link_model(src, dest, skip=set(skip))
            return str(dest)
        from negminer.client.uploads import adapter_base, upload_model

        base = self.job.model if adapter_base(src) is not None else None
        with self._api() as api:
            transfer = self.over_http(upload_model, api, src, base=base, what=what, exclude=skip)
        logger.info("%s uploaded to the API: %s (%d bytes)", what, transfer.id, transfer.bytes_sent)
        return transfer.id

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return False
        self._checked = now
        job = self.store.get_job(self.job_id)
        if job is not None and job.started_at and time.time() - job.started_at > self.s.job_max_seconds:
            self.timed_out = True
            return True
        return job is None or bool(job.cancel_requested) or job.worker_id != self.worker_id

    # -- TrainListener --------------------------------------------------------------------------------------------
    def on_resume(self, event: ResumeEvent) -> None:
        self.event(f"Resuming from checkpoint at step {event.step}", data={"step": event.step})

    def metrics(self, message: str, **data: Any) -> None:
        self.event(message, type=EventType.metrics, data=data)

    def on_log(self, event: LogEvent) -> None:
        self.progress(event.step, event.max_steps)
        self.last_log = {"train_loss": event.loss, "learning_rate": event.learning_rate}
        self.history.append({"step": event.step, "epoch": event.epoch, **self.last_log})
        loss, lr = event.loss, event.learning_rate
        self.metrics(
            f"Step {event.step}: training loss={loss:.4f}",
            step=event.step,
            train_loss=loss,
            learning_rate=lr,
            epoch=event.epoch,
            max_steps=event.max_steps,
        )

    def progress(self, step: int, max_steps: int) -> None:
        """The job's ``trained_steps`` so far and ``estimated_finish``: the steps left at this attempt's pace since
        its training began (the start evaluation's end; evaluations and refreshes included as they recur)."""
        now = time.time()
        if self._pace is None:  # no start evaluation seen (resumed): pace from this first log on
            self._pace = (now, step)
        t0, s0 = self._pace
        when = int(now + (max_steps - step) * (now - t0) / (step - s0)) if max_steps > step > s0 else None
        self.store.set_progress(self.job_id, self.worker_id, step, when)

    def on_evaluation(self, event: EvaluationEvent) -> None:
        scores: dict[str, float] = {
            k: event.metrics[k] for k in ("ndcg@10", "recall@100", "mrr@10") if k in event.metrics
        }
        self.last_eval = {"step": event.step, **scores}
        if event.event == "start":
            self._pace = (time.time(), event.step)  # training begins: the first log can estimate the finish
        self.history.append({"step": event.step, **scores})
        said = ", ".join(f"{k}={v:.4f}" for k, v in scores.items())
        self.metrics(f"Step {event.step} ({event.event}): {said}", step=event.step, evaluation=event.event, **scores)

    def on_refresh(self, event: RefreshEvent) -> None:
        said = f"Step {event.step}: hard negatives refreshed (index version {event.version})"
        self.metrics(
            said,
            step=event.step,
            refresh_version=event.version,
            queries_short=event.queries_short,
            filled_randomly=event.filled_randomly,
        )

    def on_checkpoint(self, event: CheckpointEvent) -> None:
        self.checkpoint(event.step, Path(event.path))

    def checkpoint(self, step: int, path: Path) -> None:
        """Register a complete trainer checkpoint as a model (hard links: the trainer may rotate its copy)."""
        from negminer.trainer import finite_weights

        name = f"{self.name}:ckpt-step-{step}"
        dest = self.models_dir / f"checkpoint-step-{step}"
        if not finite_weights(path):  # never offered as a model, served or used to refresh an index
            self.event(
                f"Checkpoint at step {step} holds NaN or infinite weights; it is not registered",
                level=EventLevel.warn,
                data={"step": step},
            )
            return
        kept = self.keep_model(path, dest, f"checkpoint {step}", skip=TRAINER_STATE)
        self.store.drop_checkpoint(self.job_id, name)  # a resumed run may save the same step again
        scores = {k: v for k, v in self.last_eval.items() if k != "step"} if self.last_eval.get("step") == step else {}
        self.store.add_checkpoint(self.job_id, step, name, kept, {"step": step, **self.last_log, **scores})
        self.event(f"Checkpoint saved at step {step}: {name}", data={"step": step, "checkpoint": name})
        keep = self.s.checkpoints_kept
        if keep:
            rows, _ = self.store.list_checkpoints(self.job_id, None, 1000)
            # on one disk with the API, an index built or refreshed with a checkpoint keeps it; uploaded ones are
            # kept by the API's sweep while an index uses them
            pinned = pinned_models(self.data_dir / "indexes") if self.shared else {}
            for old in rows[keep:]:
                folder = self.models_dir / f"checkpoint-step-{old.step}"
                if str(folder.resolve()) in pinned:
                    continue
                self.store.drop_checkpoint(self.job_id, old.model)
                shutil.rmtree(folder, ignore_errors=True)


TRAINER_STATE = frozenset(
    {"optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt", "trainer_state.json", "training_args.bin"}
)  # what a trainer checkpoint holds besides the model


def _filter_message(mining: Any) -> str:
    """Which false-negative filter the job mines with, and where it came from."""
    f = mining.describe_filter()
    rules = ", ".join(f"{k}={v:g}" for k, v in f["rules"].items()) or "no rule"
    why = {
        "training": "the trainer's default (negminer.mining.TRAINING_FILTER)",
        "recommended": "the mining default (negminer.mining.RECOMMENDED_FILTER)",
        "none": "no filter, as sentence-transformers' mine_hard_negatives",
        "custom": "the options given",
    }[f["name"]]
    return f"Hard negatives are mined with the {f['name']} filter ({rules}): {why}"


def _link_model(src: Path, dest: Path, skip: set[str] | None = None) -> None:
    """Copy a model folder by hard links where possible, into a temporary folder swapped in atomically."""
    skip = skip or set()

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    with atomic_dir(dest) as tmp:
        shutil.copytree(
            src, tmp, copy_function=link, ignore=lambda _d, names: [n for n in names if n in skip], dirs_exist_ok=True
        )
