"""Fine-tuning jobs with a real server and real worker processes on 127.0.0.1: the whole flow, cancel, and a
worker killed with SIGKILL whose job another worker finishes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service._procs import free_port, start_server, start_worker, stop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("jobs"),
]  # real service and worker processes, jobs of tens of steps; leases: one worker, in order

TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def demo_data():  # noqa: ANN201
    from negminer import build_demo

    return build_demo(150)


def _training_file(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "train.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for q, pos in zip(data.queries, data.positives):
            fh.write(json.dumps({"query": q, "positives": [data.corpus_texts[p] for p in pos]}) + "\n")
    return path


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Api:
    def __init__(self, port: int) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.client.request(method, path, **kw)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json()

    def upload(self, path: Path) -> str:
        with open(path, "rb") as fh:
            return self.ok("POST", "/v1/files", files={"file": (path.name, fh)}, data={"purpose": "fine-tune"})["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.ok("GET", f"/v1/fine_tuning/jobs/{job_id}")

    def finished(self, job_id: str, timeout: float = 240) -> dict[str, Any]:
        return _wait(lambda: (j := self.job(job_id))["status"] in TERMINAL and j, timeout, f"{job_id} to finish")

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """All events, oldest first, followed page by page as a client would."""
        out: list[dict[str, Any]] = []
        after = None
        while True:
            params: dict[str, Any] = {"order": "asc", "limit": 50, **({"after": after} if after else {})}
            page = self.ok("GET", f"/v1/fine_tuning/jobs/{job_id}/events", params=params)
            out += page["data"]
            if not page["has_more"]:
                return out
            after = page["data"][-1]["id"]

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        return self.ok("GET", f"/v1/fine_tuning/jobs/{job_id}/checkpoints", params={"limit": 100})["data"]


@pytest.fixture
def server_with_worker(tmp_path: Path, lexical_model: Path) -> Iterator[Api]:
    port = free_port()
    proc = start_server(tmp_path, lexical_model, port, "--with-worker")
    try:
        yield Api(port)
    finally:
        stop(proc)


def test_upload_train_follow_and_refresh_an_index(tmp_path: Path, demo_data: Any, server_with_worker: Api) -> None:
    api = server_with_worker
    docs = [{"id": d, "text": t} for d, t in zip(demo_data.corpus_ids, demo_data.corpus_texts)]
    api.ok("POST", "/v1/indexes", json={"name": "code", "documents": docs})
    _wait(lambda: api.ok("GET", "/v1/indexes/code")["status"] == "ready", 60, "the index")
    file_id = api.upload(_training_file(tmp_path, demo_data))
    job = api.ok(
        "POST",
        "/v1/fine_tuning/jobs",
        json={
            "training_file": file_id,
            "index": "code",
            "suffix": "demo",
            "seed": 7,
            "metadata": {"team": "ir"},
            "hyperparameters": {
                "max_steps": 40,
                "batch_size": 4,
                "learning_rate": 0.01,
                "negatives": "refresh",
                "refresh_every": 20,
                "save_steps": 20,
                "num_negatives": 2,
            },
        },
    )
    assert job["object"] == "fine_tuning.job" and job["status"] == "queued" and job["metadata"] == {"team": "ir"}
    done = api.finished(job["id"])
    assert done["status"] == "succeeded", done
    assert done["fine_tuned_model"] == f"ft:lexical:demo:{job['id']}" and done["trained_steps"] == 40

    events = api.events(job["id"])
    messages = [e["message"] for e in events]
    assert messages[-1] == "The job has successfully completed"
    filters = [e["data"]["mining_filter"] for e in events if e["data"] and "mining_filter" in e["data"]]
    assert [f["name"] for f in filters] == ["training"]  # the job says which filter it mines with, and why
    assert any("the trainer's default" in m for m in messages)
    refreshed = [e["data"]["refresh_version"] for e in events if e["data"] and "refresh_version" in e["data"]]
    assert refreshed == [1, 2]  # the job's copy of the index, built then refreshed with the step-20 checkpoint
    evaluations = [e["data"] for e in events if e["data"] and "evaluation" in e["data"]]
    assert [e["evaluation"] for e in evaluations] == ["start", "refresh", "end"]
    assert evaluations[-1]["ndcg@10"] > evaluations[0]["ndcg@10"]
    assert any(e["type"] == "metrics" and "train_loss" in (e["data"] or {}) for e in events)
    assert "ftjob" not in json.dumps(api.ok("GET", "/v1/indexes"))  # the job's own index copy is gone

    ckpts = api.checkpoints(job["id"])
    assert [c["step_number"] for c in ckpts] == [40, 20]
    models = {m["id"] for m in api.ok("GET", "/v1/models")["data"]}
    assert done["fine_tuned_model"] in models and ckpts[-1]["fine_tuned_model_checkpoint"] in models

    # the fine-tuned model serves like any other: embed with it, and refresh the index with it
    vec = api.ok("POST", "/v1/embed", json={"inputs": "read a file", "model": ckpts[-1]["fine_tuned_model_checkpoint"]})
    assert len(vec[0]) == 64
    api.ok("POST", "/v1/indexes/code/refresh", json={"model": done["fine_tuned_model"]})
    info = _wait(lambda: (i := api.ok("GET", "/v1/indexes/code"))["version"] == 2 and i, 60, "the refresh")
    assert info["model"] == done["fine_tuned_model"]  # by its name, not its folder
    hits = api.ok("POST", "/v1/indexes/code/search", json={"queries": [demo_data.queries[0]], "top_k": 3})
    assert hits["version"] == 2 and len(hits["results"][0]) == 3


def test_cancel_a_running_job_keeps_its_checkpoints(tmp_path: Path, demo_data: Any, server_with_worker: Api) -> None:
    api = server_with_worker
    file_id = api.upload(_training_file(tmp_path, demo_data))
    job = api.ok(
        "POST",
        "/v1/fine_tuning/jobs",
        json={
            "training_file": file_id,
            "hyperparameters": {"max_steps": 5000, "batch_size": 4, "save_steps": 10, "num_negatives": 1},
        },
    )
    _wait(lambda: api.checkpoints(job["id"]), 120, "a first checkpoint")
    t0 = time.time()
    api.ok("POST", f"/v1/fine_tuning/jobs/{job['id']}/cancel")
    done = api.finished(job["id"], timeout=30)
    assert done["status"] == "cancelled" and time.time() - t0 < 15
    assert done["fine_tuned_model"] is None and 10 <= done["trained_steps"] < 5000
    ckpts = api.checkpoints(job["id"])
    assert ckpts and ckpts[0]["step_number"] == done["trained_steps"]  # a checkpoint at the step it stopped
    api.ok("POST", "/v1/embed", json={"inputs": "x", "model": ckpts[0]["fine_tuned_model_checkpoint"]})
    r = api.client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")


def test_worker_killed_mid_job_is_resumed_from_its_checkpoint(
    tmp_path: Path, lexical_model: Path, demo_data: Any
) -> None:
    port = free_port()
    server = start_server(tmp_path, lexical_model, port)
    workers = [start_worker(tmp_path, lexical_model, port)]
    api = Api(port)
    try:
        file_id = api.upload(_training_file(tmp_path, demo_data))
        job = api.ok(
            "POST",
            "/v1/fine_tuning/jobs",
            json={
                "training_file": file_id,
                "hyperparameters": {
                    "max_steps": 400,
                    "batch_size": 4,
                    "save_steps": 20,
                    "num_negatives": 1,
                    "negatives": "refresh",
                    "refresh_every": 100,
                },
            },
        )
        seen = _wait(lambda: api.checkpoints(job["id"]), 120, "a first checkpoint")
        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        before = api.events(job["id"])
        time.sleep(2)  # the training process must die with its worker: no progress now
        frozen = api.checkpoints(job["id"])
        time.sleep(2)
        assert api.checkpoints(job["id"]) == frozen and api.job(job["id"])["status"] == "running"

        workers.append(start_worker(tmp_path, lexical_model, port))
        done = api.finished(job["id"])
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 2 and done["trained_steps"] == 400
        after = api.events(job["id"])
        assert after[: len(before)] == before  # nothing recorded before the kill is lost
        later = [e["message"] for e in after[len(before) :]]
        assert any("stopped responding" in m for m in later)
        resumed = [e["data"]["step"] for e in after[len(before) :] if e["message"].startswith("Resuming from")]
        assert resumed and resumed[0] >= seen[0]["step_number"]
        starts = [e for e in after if (e["data"] or {}).get("evaluation") == "start"]
        assert len(starts) == 1  # the resumed run did not start over
        assert api.checkpoints(job["id"])[0]["step_number"] == 400
    finally:
        for w in workers:
            stop(w)
        stop(server)


def test_a_worker_on_its_own_disk_fetches_the_training_file_through_the_api(
    tmp_path: Path, lexical_model: Path, demo_data: Any
) -> None:
    """The worker shares the job database but not the API's data dir: it fetches the training file through
    ``GET /v1/files/{id}/content``, checks it against the sha256 the API recorded, and trains from its own copy."""
    api_dir, worker_dir = tmp_path / "api", tmp_path / "worker"
    api_dir.mkdir()
    worker_dir.mkdir()
    port = free_port()
    server = start_server(api_dir, lexical_model, port)
    database = f"sqlite:///{(api_dir / 'data' / 'negminer.db').resolve()}"
    worker = start_worker(worker_dir, lexical_model, port, NEGMINER_DATABASE_URL=database)
    api = Api(port)
    try:
        file_id = api.upload(_training_file(tmp_path, demo_data))
        hp = {"max_steps": 2, "batch_size": 4, "negatives": "none"}
        job = api.ok("POST", "/v1/fine_tuning/jobs", json={"training_file": file_id, "hyperparameters": hp})
        done = api.finished(job["id"])
        assert done["status"] == "succeeded", (done, [e["message"] for e in api.events(job["id"])])
        fetched = worker_dir / "data" / "files-cache" / f"{file_id}.jsonl"
        assert fetched.read_bytes() == (tmp_path / "train.jsonl").read_bytes()
        assert api.ok("GET", f"/v1/files/{file_id}")["bytes"] == fetched.stat().st_size
        # bytes that are not what was uploaded (changed on the API's disk) are refused, and no copy is kept
        other = api.upload(_training_file(tmp_path, demo_data))
        stored = next((api_dir / "data" / "files").glob(f"{other}*"))
        stored.write_text(stored.read_text(encoding="utf-8").replace("a", "b"), encoding="utf-8")
        job = api.ok("POST", "/v1/fine_tuning/jobs", json={"training_file": other, "hyperparameters": hp})
        done = api.finished(job["id"])
        assert done["status"] == "failed" and done["error"]["param"] == "training_file", done
        assert "do not match its sha256" in done["error"]["message"]
        assert not list((worker_dir / "data" / "files-cache").glob(f"{other}*"))
        # the job's model was uploaded to the API by the worker, which serves it
        first = api.ok("GET", "/v1/fine_tuning/jobs", params={"limit": 10})["data"][-1]
        vec = api.ok("POST", "/v1/embed", json={"inputs": "read a file", "model": first["fine_tuned_model"]})
        assert len(vec[0]) == 64 and not (api_dir / "data" / "jobs").exists()
    finally:
        stop(worker)
        stop(server)


def test_a_worker_whose_key_the_api_refuses_fails_its_job_saying_so(
    tmp_path: Path, lexical_model: Path, demo_data: Any
) -> None:
    """A worker on its own disk with a wrong key: the API answers 401 to its fetch, and the job fails naming the key
    (nothing of the job is written on either side)."""
    api_dir, worker_dir = tmp_path / "api", tmp_path / "worker"
    api_dir.mkdir()
    worker_dir.mkdir()
    port = free_port()
    key = "the-right-key-0123456789"
    server = start_server(api_dir, lexical_model, port, NEGMINER_API_KEY=key)
    database = f"sqlite:///{(api_dir / 'data' / 'negminer.db').resolve()}"
    worker = start_worker(
        worker_dir, lexical_model, port, NEGMINER_DATABASE_URL=database, NEGMINER_API_KEY="a-wrong-key-0123456789"
    )
    api = Api(port)
    api.client.headers["Authorization"] = f"Bearer {key}"
    try:
        file_id = api.upload(_training_file(tmp_path, demo_data))
        hp = {"max_steps": 2, "batch_size": 4, "negatives": "none"}
        job = api.ok("POST", "/v1/fine_tuning/jobs", json={"training_file": file_id, "hyperparameters": hp})
        done = api.finished(job["id"])
        assert done["status"] == "failed" and done["error"]["param"] == "training_file", done
        assert (
            "refused this worker's key" in done["error"]["message"] and "NEGMINER_API_KEY" in done["error"]["message"]
        )
        assert not list((worker_dir / "data").glob("files-cache/*")) and not (worker_dir / "data" / "models").exists()
    finally:
        stop(worker)
        stop(server)
