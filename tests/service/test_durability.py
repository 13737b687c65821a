"""What the API accepted is done or visibly failed: real server processes killed with SIGKILL during index
operations, and a real PostgreSQL stopped during a fine-tuning job."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_tiny_model
from tests.service._postgres import PostgresCluster
from tests.service._procs import free_port, start_server, start_worker

pytestmark = pytest.mark.slow  # server processes, each loading the model


def _wait(check: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _docs(tag: str, n: int) -> list[dict[str, str]]:
    return [
        {"id": f"{tag}-{i}", "text": f"{tag} note {i}: a paragraph on subject {i % 37} and {i % 11}"} for i in range(n)
    ]


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*") if p.name.endswith((".tmp", ".old"))]


def _kill(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGKILL)
    server.wait(30)


# what the test waits for before it kills the server
POINTS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "accepted": lambda info: True,
    "encoding": lambda info: (info.get("operation") or {}).get("encoded", 0) > 0,
    "late": lambda info: (
        (info.get("operation") or {}).get("stage") in ("indexing", "saving")
        or (info.get("operation") or {}).get("status") != "running"
    ),
    "published": lambda info: (info.get("operation") or {}).get("status") == "succeeded",
}


def test_kill_9_during_index_operations_leaves_each_ready_or_failed_interrupted(tmp_path: Path) -> None:
    """SIGKILL at several points of a build, a documents update and a refresh. After each restart every accepted
    operation is ``succeeded`` or ``failed`` with ``interrupted``, no temporary files remain, and an index that had
    a version still serves it. The slow model (the bundled all-MiniLM-L6-v2) makes encoding last seconds; a tiny
    random model in the data dir builds the bases fast."""
    make_tiny_model(tmp_path / "data" / "models" / "tiny", seed=0)
    port = free_port()
    server = start_server(tmp_path, None, port)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    cases = [
        ("build", "accepted"),
        ("build", "encoding"),
        ("build", "published"),
        ("documents", "encoding"),
        ("refresh", "encoding"),
        ("refresh", "late"),
    ]
    try:
        for i, (op, point) in enumerate(cases):
            name = f"{op}-{i}"
            served_before: int | None = None
            if op == "build":
                r = api.post("/v1/indexes", json={"name": name, "documents": _docs(name, 300)})
            else:
                base = {"name": name, "documents": _docs(f"{name}-base", 20 if op == "documents" else 300)}
                if op == "refresh":
                    base["model"] = "models/tiny"
                assert api.post("/v1/indexes", json=base).status_code == 202
                _wait(lambda n=name: api.get(f"/v1/indexes/{n}").json()["status"] == "ready", 120, f"{name} ready", 0.2)
                served_before = 1
                if op == "documents":
                    r = api.post(f"/v1/indexes/{name}/documents", json={"documents": _docs(name, 300)})
                else:
                    r = api.post(f"/v1/indexes/{name}/refresh", json={"model": "all-MiniLM-L6-v2"})
            assert r.status_code == 202, r.text
            accepted = r.json()["operation"]
            assert accepted["id"].startswith("op-") and accepted["stage"] is not None
            at = POINTS[point]
            _wait(lambda n=name, at=at: at(api.get(f"/v1/indexes/{n}").json()), 120, f"{name} at {point}")
            _kill(server)
            server = start_server(tmp_path, None, port)
            info = api.get(f"/v1/indexes/{name}").json()
            operation = info["operation"]
            assert operation["id"] == accepted["id"], (name, info)
            assert operation["status"] in ("succeeded", "failed"), (name, info)
            if operation["status"] == "failed":
                assert operation["error"]["code"] == "interrupted", (name, info)
            if op == "build":
                expect = "ready" if operation["status"] == "succeeded" else "failed"
                assert info["status"] == expect, (name, info)
                if point == "published":
                    assert info["status"] == "ready" and info["size"] == 300
            else:
                assert info["status"] == "ready" and info["version"] >= (served_before or 1), (name, info)
                hits = api.post(f"/v1/indexes/{name}/search", json={"queries": ["subject 3"], "top_k": 3}).json()
                assert len(hits["results"][0]) == 3, hits
            assert _leftovers(tmp_path / "data" / "indexes") == [], (name, _leftovers(tmp_path / "data" / "indexes"))
            assert api.delete(f"/v1/indexes/{name}").status_code == 200  # a failed one is deletable too
    finally:
        _kill(server)


def _train_file(tmp_path: Path) -> Path:
    from negminer import build_demo

    data = build_demo(120)
    path = tmp_path / "train.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for q, pos in zip(data.queries, data.positives):
            fh.write(json.dumps({"query": q, "positive": data.corpus_texts[pos[0]]}) + "\n")
    return path


def test_a_postgresql_outage_during_a_job_is_survived(tmp_path: Path, lexical_model: Path) -> None:
    """PostgreSQL stopped for 15 s while a job trains: the worker process survives and the job finishes; the API
    answers 503 problem+json with Retry-After meanwhile and /readyz is not ready."""
    with PostgresCluster() as pg:
        port = free_port()
        env = {"NEGMINER_DATABASE_URL": pg.url}
        server = start_server(tmp_path, lexical_model, port, **env)
        worker = start_worker(tmp_path, lexical_model, port, **env, NEGMINER_JOB_LEASE_SECONDS="30")
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        try:
            with open(_train_file(tmp_path), "rb") as fh:
                fid = api.post("/v1/files", files={"file": ("train.jsonl", fh)}).json()["id"]
            hp = {"max_steps": 60, "batch_size": 8, "negatives": "none", "logging_steps": 5}
            job = api.post("/v1/fine_tuning/jobs", json={"training_file": fid, "hyperparameters": hp}).json()
            url = f"/v1/fine_tuning/jobs/{job['id']}"
            _wait(lambda: api.get(url).json()["status"] == "running", 120, "the job running", 0.2)
            pg.stop()
            t0 = time.time()
            r = api.get(url)
            assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json"), r.text
            assert int(r.headers["retry-after"]) > 0 and r.json()["code"] == "store_unavailable"
            ready = api.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
            time.sleep(max(0.0, 15 - (time.time() - t0)))
            assert worker.poll() is None, "the worker died during the outage"
            pg.start()
            assert api.get("/readyz").status_code == 200
            done = _wait(
                lambda: (j := api.get(url).json())["status"] in ("succeeded", "failed", "cancelled") and j,
                300,
                "the job",
            )
            assert done["status"] == "succeeded", done["error"]
            assert done["trained_steps"] == 60 and done["fine_tuned_model"]
            assert done["finished_at"] >= t0 + 14  # its last writes waited for the database, none was lost
            assert worker.poll() is None
            logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
            assert "job database unreachable" in logs  # the worker (or its training process) hit the outage
        finally:
            for p in (worker, server):
                p.terminate()
                p.wait(30)


def test_an_index_backed_job_survives_an_api_restart_and_its_copy_is_removed(
    tmp_path: Path, lexical_model: Path
) -> None:
    """The API is killed (SIGKILL) after the job's first refresh and is down for seconds (3 s, then its start): the
    job's calls to the index service wait and retry (index_retry_seconds), an interrupted refresh is asked for
    again, the job succeeds, and its private index copy is gone."""
    from negminer import build_demo

    port = free_port()
    server = start_server(tmp_path, lexical_model, port)
    worker = start_worker(tmp_path, lexical_model, port, NEGMINER_JOB_LEASE_SECONDS="30")
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        data = build_demo(120)
        docs = [{"id": d, "text": t} for d, t in zip(data.corpus_ids, data.corpus_texts)]
        assert api.post("/v1/indexes", json={"name": "code", "documents": docs}).status_code == 202
        _wait(lambda: api.get("/v1/indexes/code").json()["status"] == "ready", 60, "the index", 0.2)
        with open(_train_file(tmp_path), "rb") as fh:
            fid = api.post("/v1/files", files={"file": ("train.jsonl", fh)}).json()["id"]
        hp = {"max_steps": 40, "batch_size": 4, "negatives": "refresh", "refresh_every": 10, "num_negatives": 2}
        job = api.post("/v1/fine_tuning/jobs", json={"training_file": fid, "index": "code", "hyperparameters": hp})
        job_id = job.json()["id"]
        url = f"/v1/fine_tuning/jobs/{job_id}"

        def refreshed() -> bool:
            events = api.get(f"{url}/events", params={"limit": 100}).json()["data"]
            return any((e["data"] or {}).get("refresh_version") for e in events)

        _wait(refreshed, 240, "the job's first refresh", 0.3)
        copy = api.get(f"/v1/indexes/{job_id}").json()
        assert copy["owner_job"] == job_id
        assert api.delete(f"/v1/indexes/{job_id}").status_code == 409  # protected while the job runs
        assert api.post("/v1/indexes", json={"name": "ftjob-mine", "documents": docs[:2]}).status_code == 422
        _kill(server)
        time.sleep(3)
        server = start_server(tmp_path, lexical_model, port)
        ended = ("succeeded", "failed", "cancelled")
        done = _wait(lambda: (j := api.get(url).json())["status"] in ended and j, 300, "the job", 0.5)
        assert done["status"] == "succeeded", done["error"]
        _wait(lambda: api.get(f"/v1/indexes/{job_id}").status_code == 404, 30, "the copy removed", 0.3)
        assert [i["name"] for i in api.get("/v1/indexes").json()["data"]] == ["code"]
        logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("worker-*.log"))
        assert "retrying" in logs  # the job did call the service while it was down
    finally:
        _kill(server)
        worker.terminate()
        worker.wait(30)
