"""Three processes, three disks: the API with its index service, a worker, and a standalone
``negminer train --index-url ... --negatives refresh``, each with its own data directory; the job database is the
one thing the API and the worker both open (as PostgreSQL would be). Models and files travel over HTTP only.

Both trainings refresh through the service several times while each process is killed with SIGKILL in turn: the
trainer resumes from its checkpoint, the worker's job is resumed by the next worker, the service comes back and the
trainings go on. Then the job's model serves ``/v1/embeddings``, and once the leases run out no index and no upload
that nothing uses is left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service._procs import free_port, service_env, start_server, start_worker, stop

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("jobs")]

KEY = "three-disks-key-0123456789"
TERMINAL = ("succeeded", "failed", "cancelled")


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = check()
        except httpx.HTTPError:  # the service is restarting
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _trainer(root: Path, port: int, model: Path, data: Path, *extra: str) -> subprocess.Popen:
    """``negminer train`` on its own disk (``root``), mining through the service at ``port``."""
    args = [
        *("train", str(data), "-o", str(root / "run"), "--model", str(model)),
        *("--index-url", f"http://127.0.0.1:{port}", "--index-name", "cli-run", "--index-lease", "15"),
        *("--negatives", "refresh", "--refresh-every", "8", "--max-steps", "48", "--save-steps", "8"),
        *("--batch-size", "4", "--num-negatives", "2", "--learning-rate", "0.01", *extra),
    ]
    env = service_env(root, None, port, NEGMINER_API_KEY=KEY, NEGMINER_INDEX_RETRY_SECONDS="120")
    with open(root / f"train-{time.monotonic_ns()}.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "negminer.cli", *args], env=env, stdout=log, stderr=log)


def test_api_worker_and_trainer_on_their_own_disks_survive_kill_9_in_turn(tmp_path: Path, lexical_model: Path) -> None:
    from negminer import build_demo

    roots = {name: tmp_path / name for name in ("api", "worker", "trainer", "db")}
    for root in roots.values():
        root.mkdir()
    data = build_demo(150)
    train_file = roots["trainer"] / "train.jsonl"
    with open(train_file, "w", encoding="utf-8") as fh:
        for q, pos in zip(data.queries, data.positives):
            fh.write(json.dumps({"query": q, "positives": [data.corpus_texts[p] for p in pos]}) + "\n")
    shutil.copytree(lexical_model, roots["api"] / "data" / "base")  # the job's model: a folder of the API's disk
    shutil.copytree(lexical_model, roots["trainer"] / "base")  # the trainer's own copy
    port = free_port()
    common = {
        "NEGMINER_API_KEY": KEY,
        "NEGMINER_DATABASE_URL": f"sqlite:///{roots['db'] / 'jobs.db'}",
        "NEGMINER_INDEX_LEASE_SECONDS": "15",
        "NEGMINER_INDEX_RETRY_SECONDS": "120",
        "NEGMINER_JOB_LEASE_SECONDS": "4",
    }
    service = {**common, "NEGMINER_SWEEP_SECONDS": "1", "NEGMINER_UPLOAD_GRACE_SECONDS": "5"}
    server = start_server(roots["api"], lexical_model, port, **service)
    worker = start_worker(roots["worker"], lexical_model, port, **common)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    trainer = None
    try:
        docs = [{"id": d, "text": t} for d, t in zip(data.corpus_ids, data.corpus_texts)]
        assert api.post("/v1/indexes", json={"name": "code", "documents": docs}).status_code == 202
        _wait(lambda: api.get("/v1/indexes/code").json()["status"] == "ready", 60, "the index")
        with open(train_file, "rb") as fh:
            fid = api.post("/v1/files", files={"file": ("train.jsonl", fh)}).json()["id"]
        hp = {
            "max_steps": 48,
            "batch_size": 4,
            "negatives": "refresh",
            "refresh_every": 8,
            "save_steps": 8,
            "num_negatives": 2,
            "learning_rate": 0.01,
        }
        body = {"training_file": fid, "index": "code", "model": "base", "hyperparameters": hp}
        job_id = api.post("/v1/fine_tuning/jobs", json=body).json()["id"]
        url = f"/v1/fine_tuning/jobs/{job_id}"
        trainer = _trainer(roots["trainer"], port, roots["trainer"] / "base", train_file)

        def job_refreshes() -> list[int]:
            events = api.get(f"{url}/events", params={"limit": 1000}).json()["data"]
            return [e["data"]["refresh_version"] for e in events if "refresh_version" in (e["data"] or {})]

        def cli_version() -> int:
            r = api.get("/v1/indexes/cli-run")
            return r.json()["version"] or 0 if r.status_code == 200 else 0

        # 1. the trainer, once its refreshes go through the service: it resumes from its last checkpoint
        checkpoints = roots["trainer"] / "run" / "checkpoints"
        _wait(lambda: cli_version() >= 2 and list(checkpoints.glob("checkpoint-*")), 240, "a CLI refresh, checkpoint")
        _kill(trainer)
        trainer = _trainer(roots["trainer"], port, roots["trainer"] / "base", train_file, "--resume")
        # 2. the worker, once the job refreshed its copy: the next worker resumes the job
        _wait(lambda: len(job_refreshes()) >= 2, 240, "the job's refreshes")
        _kill(worker)
        worker = start_worker(roots["worker"], lexical_model, port, **common)
        # 3. the service, while both train: it comes back with every index, and their calls wait for it
        seen = cli_version()
        _wait(lambda: cli_version() > seen, 240, "a CLI refresh after its restart")
        _kill(server)
        time.sleep(2)
        server = start_server(roots["api"], lexical_model, port, **service)

        done = _wait(lambda: (j := api.get(url).json())["status"] in TERMINAL and j, 400, "the job")
        assert done["status"] == "succeeded", done["error"]
        assert trainer.wait(400) == 0, (roots["trainer"] / "run").as_posix()
        assert len(job_refreshes()) >= 4
        metrics = json.loads((roots["trainer"] / "run" / "metrics.json").read_text(encoding="utf-8"))
        assert len(metrics["refreshes"]) >= 4 and metrics["history"][-1]["step"] == 48  # resumed, refreshed, done
        assert (roots["trainer"] / "run" / "model" / "modules.json").is_file()

        # the job's model serves embeddings, from the files the worker uploaded
        r = api.post("/v1/embeddings", json={"model": done["fine_tuned_model"], "input": ["read a file"]})
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 64, r.text
        registered = api.get(f"/v1/models/{done['fine_tuned_model']}").json()
        assert registered["job"] == job_id
        assert not (roots["api"] / "data" / "jobs").exists()  # nothing of the job was written on the API's disk
        assert (roots["worker"] / "data" / "models-cache").is_dir()  # the base model came over HTTP
        events = api.get(f"{url}/events", params={"limit": 1000}).json()["data"]
        fetched = [e for e in events if e["message"].startswith("Fetched the base model")]
        assert len(fetched) == 1 and any("resuming" in e["message"] for e in events)  # the next worker: 304

        # after the leases run out: only the index someone made by hand, and only the uploads that are models
        _wait(lambda: [i["name"] for i in api.get("/v1/indexes").json()["data"]] == ["code"], 60, "the leases")
        models = [m for m in api.get("/v1/models").json()["data"] if m["kind"] != "default"]

        def uploads() -> int:  # each registered model is one upload; the refresh models go once nothing uses them
            return len(list((roots["api"] / "data" / "uploads").glob("*.json")))

        _wait(lambda: uploads() == len(models), 60, "the unused uploads collected")
        assert not any((roots["api"] / "data" / "uploads" / ".incoming").iterdir())
    finally:
        api.close()
        for proc in (trainer, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        stop(server)
        for log in sorted(tmp_path.rglob("*.log")):
            if os.environ.get("NEGMINER_TEST_LOGS"):
                print(log, log.read_text(errors="replace")[-3000:])
