"""The worker in this process (its jobs still run in spawned training processes): a job that cannot run fails with
the reason, and a worker stopped mid-job gives the job back to the queue, to be resumed from its checkpoint."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from negminer.jobs import Worker
from negminer.service import ServiceSettings, create_app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("jobs"),
]  # workers spawn a training process per job; leases: one worker, in order


def _setup(tmp_path: Path, model: Path) -> tuple[ServiceSettings, TestClient]:
    settings = ServiceSettings(
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        model=str(model),
        device="cpu",
        job_lease_seconds=5,
        worker_poll_seconds=0.2,
    )
    return settings, TestClient(create_app(settings))


def _file(c: TestClient, data: Any) -> str:
    rows = "".join(
        json.dumps({"query": q, "positive": data.corpus_texts[p[0]]}) + "\n"
        for q, p in zip(data.queries, data.positives)
    )
    return c.post("/v1/files", files={"file": ("train.jsonl", rows.encode())}).json()["id"]


def test_a_job_whose_file_is_gone_fails_with_the_reason(tmp_path: Path, lexical_model: Path, demo_small: Any) -> None:
    settings, c = _setup(tmp_path, lexical_model)
    with c:
        fid = _file(c, demo_small)
        job = c.post("/v1/fine_tuning/jobs", json={"training_file": fid}).json()
        for f in (tmp_path / "data" / "files").iterdir():
            f.unlink()
        assert Worker(settings).run_once() == job["id"]
        done = c.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
        assert done["status"] == "failed" and done["finished_at"]
        assert done["error"]["code"] == "invalid_file" and done["error"]["param"] == "training_file"
        assert "is gone" in done["error"]["message"]
        events = c.get(f"/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]
        assert events[0]["level"] == "error" and events[0]["message"].startswith("Job failed")
        assert Worker(settings).run_once() is None  # a failed job is not retried


def test_a_stopped_worker_requeues_its_job_and_the_next_one_resumes(
    tmp_path: Path, lexical_model: Path, demo_small: Any
) -> None:
    settings, c = _setup(tmp_path, lexical_model)
    with c:
        fid = _file(c, demo_small)
        job = c.post(
            "/v1/fine_tuning/jobs",
            json={
                "training_file": fid,
                "hyperparameters": {"max_steps": 300, "batch_size": 4, "save_steps": 10, "num_negatives": 1},
            },
        ).json()
        w = Worker(settings)
        th = threading.Thread(target=w.run_forever)
        th.start()
        deadline = time.time() + 120
        while not c.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]:
            assert time.time() < deadline
            time.sleep(0.2)
        w.stop()
        th.join(60)
        assert not th.is_alive()
        queued = c.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
        assert queued["status"] == "queued" and queued["attempts"] == 0
        first = c.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"][-1]["fine_tuned_model_checkpoint"]
        r = c.delete(f"/v1/models/{first}")  # the job will resume from it: refused, nothing deleted
        assert r.status_code == 409 and "may resume from it" in r.json()["detail"], r.text
        assert Worker(settings).run_once() == job["id"]
        done = c.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
        assert done["status"] == "succeeded" and done["trained_steps"] == 300 and done["attempts"] == 1
        out = tmp_path / "data" / "jobs" / job["id"]
        assert not list(out.rglob("optimizer.pt")) and not (out / "checkpoints").exists()  # only a resume needed it
        ckpts = c.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
        name = ckpts[0]["fine_tuned_model_checkpoint"]
        assert c.delete(f"/v1/models/{name}").status_code == 200  # the job has ended: deleted for real
        assert name not in [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert not any(p.name.endswith(f"-step-{ckpts[0]['step_number']}") for p in tmp_path.rglob("checkpoint-*"))

        messages = [
            e["message"]
            for e in c.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 1000, "order": "asc"}).json()[
                "data"
            ]
        ]
        assert any("shutting down" in m for m in messages)
        assert any(m.startswith("Resuming from checkpoint") for m in messages)


def test_a_job_past_its_wall_clock_limit_fails_and_keeps_its_checkpoint(
    tmp_path: Path, lexical_model: Path, demo_small: Any
) -> None:
    """A job asking for far more steps than it can run in NEGMINER_JOB_MAX_SECONDS stops, with a clear error. The
    limit is an hour; once the job has shown its pace, the test moves its start an hour and more into the past (the
    job's own record is its clock), so nothing depends on how fast this machine imports or trains."""
    settings, c = _setup(tmp_path, lexical_model)
    settings = settings.model_copy(update={"job_max_seconds": 3600.0})
    with c:
        fid = _file(c, demo_small)
        hp = {"max_steps": 100000, "batch_size": 4, "num_negatives": 1, "save_steps": 100000, "logging_steps": 2}
        job = c.post("/v1/fine_tuning/jobs", json={"training_file": fid, "hyperparameters": hp}).json()
        worker = threading.Thread(target=Worker(settings).run_once)
        worker.start()
        estimates, moved = [], False
        store = c.app.state.store
        while worker.is_alive():
            running = c.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
            if running["status"] == "running" and running["estimated_finish"]:
                estimates.append(running["estimated_finish"] - time.time())
                if not moved:
                    from negminer.jobs._store import jobs as table

                    with store.engine.begin() as conn:  # the job "started" more than its limit ago
                        conn.execute(
                            table.update()
                            .where(table.c.id == job["id"])
                            .values(started_at=running["started_at"] - 3700)
                        )
                    moved = True
            time.sleep(0.3)
        assert estimates and min(estimates) > 60  # 100000 steps at its pace: far beyond what it ran
        done = c.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
        assert done["estimated_finish"] is None
        assert done["status"] == "failed" and done["error"]["code"] == "time_limit_exceeded", done
        assert "NEGMINER_JOB_MAX_SECONDS" in done["error"]["message"] and 0 < done["trained_steps"] < 100000
        assert done["trained_tokens"] > 0 and len(done["result_files"]) == 1
        ckpts = c.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
        assert ckpts and ckpts[0]["step_number"] == done["trained_steps"]
        events = [
            e["message"] for e in c.get(f"/v1/fine_tuning/jobs/{job['id']}/events?order=asc&limit=5").json()["data"]
        ]
        assert any("NEGMINER_JOB_LEASE_SECONDS" in m for m in events)  # the retake time is told


def test_a_job_whose_loss_turns_non_finite_fails_and_publishes_no_model(
    tmp_path: Path, lexical_model: Path, demo_small: Any
) -> None:
    settings, c = _setup(tmp_path, lexical_model)
    with c:
        fid = _file(c, demo_small)
        hp = {"temperature": 1e-45, "negatives": "none", "max_steps": 3, "batch_size": 8}
        job = c.post("/v1/fine_tuning/jobs", json={"training_file": fid, "hyperparameters": hp}).json()
        assert Worker(settings).run_once() == job["id"]
        done = c.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
        assert done["status"] == "failed" and done["error"]["code"] == "non_finite_loss", done
        assert done["error"]["step"] == 1 and done["fine_tuned_model"] is None
        assert [m["id"] for m in c.get("/v1/models").json()["data"] if m["id"].startswith("ft:")] == []


def test_a_decoder_job_with_lora_prompts_trainer_options_and_two_processes(
    tmp_path: Path, tiny_decoder: Path, demo_small: Any
) -> None:
    """The round trip a user of decoder embedders makes: a job asking for LoRA, prompts, trainer options and two
    processes; the worker starts them; the fine-tuned model (an adapter) is served by /v1/embeddings with its
    prompts."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    settings, c = _setup(tmp_path, tiny_decoder)
    with c:
        fid = _file(c, demo_small)
        hp = {
            "max_steps": 3,
            "batch_size": 4,
            "num_negatives": 1,
            "negatives": "refresh",
            "refresh_every": 2,
            "lora_r": 2,
            "devices": 2,
            "weight_decay": 0.01,
            "lr_scheduler_type": "constant",
            "trainer_args": {"max_grad_norm": 0.5},
            "mining": {"query_prompt": "Instruct: find the code\nQuery: "},
        }
        r = c.post("/v1/fine_tuning/jobs", json={"training_file": fid, "hyperparameters": hp})
        assert r.status_code == 200, r.text
        job = r.json()
        assert Worker(settings).run_once() == job["id"]
        done = c.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
        events = [e["message"] for e in c.get(f"/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]]
        assert done["status"] == "succeeded", (done, events)
        assert "Training data-parallel on 2 processes" in events
        assert any(e.startswith("Trained ") and "LoRA r=2" in e and "saved the adapter" in e for e in events), events
        model = c.get(f"/v1/models/{done['fine_tuned_model']}").json()
        path = Path(model["path"]) if "path" in model else next((tmp_path / "data" / "models").rglob("final"))
        assert (path / "adapter_config.json").is_file()
        loaded = SentenceTransformer(str(path), device="cpu")
        assert loaded.prompts["query"] == "Instruct: find the code\nQuery: "
        q = ["how to read a file"]
        r = c.post(
            "/v1/embeddings",
            json={"input": q, "model": done["fine_tuned_model"], "input_type": "query", "encoding_format": "float"},
        )
        assert r.status_code == 200, r.text
        served = np.array(r.json()["data"][0]["embedding"])
        np.testing.assert_allclose(served, loaded.encode_query(q, normalize_embeddings=True)[0], atol=1e-5)
