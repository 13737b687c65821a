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

from tests.conftest import make_lexical_model
from tests.service._postgres import PostgresCluster
from tests.service._procs import free_port, start_server, start_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("jobs"),
]  # server processes, each loading the model; leases: one worker, in order


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


def _wait_exit(proc: subprocess.Popen, timeout: float = 120) -> int:
    """Wait for a server that a fault point stops (SIGKILL from itself)."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the fault point was never reached") from None


def test_kill_9_at_each_point_of_each_index_operation_leaves_a_record_that_agrees_with_what_is_served(
    tmp_path: Path, lexical_model: Path
) -> None:
    """Each index operation (build, documents update, refresh) killed at each named point (negminer._faults:
    accepted, encoded, published, recorded) by the server itself. After the restart the operation record agrees
    with what is served: killed before ``CURRENT`` moved, it is ``failed: interrupted`` and the previous version
    serves; killed after, it is ``succeeded`` with the new version, which serves. No temporary files remain, nor
    the scratch vectors of a killed build."""
    from negminer._faults import FAULT_POINTS

    make_lexical_model(tmp_path / "data" / "models" / "other", seed=1)  # a refresh re-encodes with it
    port = free_port()
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    cases = [(op, point) for op in ("build", "documents", "refresh") for point in FAULT_POINTS]
    server = start_server(tmp_path, lexical_model, port)
    for op, point in cases:  # the bases of the documents updates and refreshes, built first without faults
        if op != "build":
            name = f"{op}-{point.split('.')[1]}"
            assert api.post("/v1/indexes", json={"name": name, "documents": _docs(name, 20)}).status_code == 202
    for op, point in cases:
        if op != "build":
            name = f"{op}-{point.split('.')[1]}"
            _wait(lambda n=name: api.get(f"/v1/indexes/{n}").json()["status"] == "ready", 60, f"{name} ready", 0.1)
    _kill(server)

    def check(op: str, point: str, name: str, accepted: str | None) -> None:
        """After the restart: the record agrees with what is served."""
        info = api.get(f"/v1/indexes/{name}").json()
        operation = info["operation"]
        assert operation["type"] == op and operation["id"] == (accepted or operation["id"]), (name, info)
        if point in ("index.published", "index.recorded"):
            assert operation["status"] == "succeeded" and operation["error"] is None, (name, info)
            assert info["status"] == "ready" and info["version"] == operation["version"], (name, info)
            assert info["version"] == (1 if op == "build" else 2), (name, info)
            assert info["size"] == {"build": 50, "documents": 50, "refresh": 20}[op], (name, info)
            if op == "refresh":
                assert info["model"].endswith("other"), (name, info)
        else:
            assert operation["status"] == "failed" and operation["error"]["code"] == "interrupted", (name, info)
            if op == "build":
                assert info["status"] == "failed" and info["version"] is None, (name, info)
            else:
                assert info["status"] == "ready" and info["version"] == 1 and info["size"] == 20, (name, info)
        if info["status"] == "ready":
            hits = api.post(f"/v1/indexes/{name}/search", json={"queries": ["subject 3"], "top_k": 3}).json()
            assert len(hits["results"][0]) == 3, hits
        assert _leftovers(tmp_path / "data" / "indexes") == [], (name, _leftovers(tmp_path / "data" / "indexes"))
        assert not list((tmp_path / "cache").glob("negminer-vectors-*")), name  # the killed one's scratch vectors

    previous: tuple[str, str, str, str | None] | None = None
    try:
        for op, point in cases:  # each server checks the case before it, then runs its own to its fault point
            name = f"{op}-{point.split('.')[1]}"
            server = start_server(tmp_path, lexical_model, port, NEGMINER_FAULT_POINT=f"{point}@{op}")
            if previous is not None:
                check(*previous)
            try:  # at index.accepted the server may die before it answers: the record says what was accepted
                if op == "build":
                    r = api.post("/v1/indexes", json={"name": name, "documents": _docs(name, 50)})
                elif op == "documents":
                    r = api.post(f"/v1/indexes/{name}/documents", json={"documents": _docs(f"{name}-new", 30)})
                else:
                    r = api.post(f"/v1/indexes/{name}/refresh", json={"model": "models/other"})
                assert r.status_code == 202, r.text
                accepted: str | None = r.json()["operation"]["id"]
            except httpx.TransportError:
                assert point == "index.accepted", (name, "no answer")
                accepted = None
            assert _wait_exit(server) == -signal.SIGKILL, name
            if point == "index.encoded":  # killed with its vectors on disk: the next start removes them
                assert list((tmp_path / "cache").glob("negminer-vectors-*")), name
            previous = (op, point, name, accepted)
        server = start_server(tmp_path, lexical_model, port)
        assert previous is not None
        check(*previous)
        for op, point in cases:  # every record stays as the restarts wrote it
            name = f"{op}-{point.split('.')[1]}"
            status = api.get(f"/v1/indexes/{name}").json()["operation"]["status"]
            assert status == ("succeeded" if point in ("index.published", "index.recorded") else "failed"), name
            assert api.delete(f"/v1/indexes/{name}").status_code == 200  # a failed one is deletable too
    finally:
        _kill(server)
        api.close()


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
    again, the job succeeds, and its index copy (labelled with the job, under a lease) is gone."""
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
        assert copy["labels"] == {"job": job_id} and copy["expires_after"] == 600  # its lease covers a dead worker
        assert api.get("/v1/indexes", params={"label": f"job={job_id}"}).json()["data"][0]["name"] == job_id
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
