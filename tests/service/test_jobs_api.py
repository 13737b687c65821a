"""Files, fine-tuning jobs and models in process (TestClient): shapes, pagination, and every bad request a 4xx in
problem+json that names the field. The worker runs in its own tests (test_jobs_server.py, test_worker.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from negminer.mining import TRAINING_FILTER
from negminer.service import ServiceSettings, create_app

PAIRS = [
    {"query": f"how to read file number {i}", "positive": f"def read_{i}(path): return open(path).read()"}
    for i in range(30)
]


def _client(tmp_path: Path, model: Path, **kw: Any) -> TestClient:
    settings = ServiceSettings(
        data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", model=str(model), device="cpu", **kw
    )
    return TestClient(create_app(settings))


def _jsonl(rows: list[Any]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def _upload(c: TestClient, content: bytes, name: str = "train.jsonl", **data: str) -> Any:
    return c.post("/v1/files", files={"file": (name, content)}, data={"purpose": "fine-tune", **data})


def _problem(r: Any, status: int, param: str | None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["param"] == param, body
    return body


def test_files_upload_list_get_delete(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        r = _upload(c, _jsonl(PAIRS))
        f = r.json()
        assert r.status_code == 200 and f["object"] == "file" and f["status"] == "processed"
        assert f["queries"] == 30 and f["pairs"] == 30 and f["filename"] == "train.jsonl"
        assert c.get(f"/v1/files/{f['id']}").json() == f
        pq = tmp_path / "pairs.csv"
        pq.write_text("anchor,positive\n" + "".join(f'"{p["query"]}","{p["positive"]}"\n' for p in PAIRS))
        g = _upload(c, pq.read_bytes(), "pairs.csv").json()
        assert g["format"] == "csv" and g["queries"] == 30
        listed = c.get("/v1/files").json()
        assert [x["id"] for x in listed["data"]] == [g["id"], f["id"]] and not listed["has_more"]
        assert c.delete(f"/v1/files/{g['id']}").json()["deleted"]
        assert c.get(f"/v1/files/{g['id']}").status_code == 404
        assert not list((tmp_path / "data" / "files").glob(f"{g['id']}*"))


@pytest.mark.parametrize(
    "rows, name, line, param, words",
    [
        (PAIRS[:3] + [{"query": "q"}], "train.jsonl", 4, "positive", "missing"),
        (PAIRS[:2] + ['{"query": "q", "positive": '], "train.jsonl", 3, None, "JSON"),
        (PAIRS[:1] + [{"query": "", "positive": "p"}], "train.jsonl", 2, "query", "empty"),
    ],
)
def test_a_bad_file_is_refused_with_its_line_and_field(
    tmp_path: Path, lexical_model: Path, rows: list[Any], name: str, line: int, param: str | None, words: str
) -> None:
    with _client(tmp_path, lexical_model) as c:
        body = _problem(_upload(c, _jsonl(rows), name), 422, param)
        assert body["line"] == line and body["detail"].startswith(f"{name}:{line}:") and words in body["detail"]
        assert c.get("/v1/files").json()["data"] == []  # nothing kept, no temporary file left behind
        assert [p.name for p in (tmp_path / "data" / "files").iterdir()] == []


def test_upload_refusals(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model, max_upload_bytes=4096) as c:
        _problem(_upload(c, _jsonl(PAIRS), "train.txt"), 422, "file")
        _problem(_upload(c, _jsonl(PAIRS), purpose="batch"), 422, "purpose")
        _problem(_upload(c, b""), 422, "file")
        big = _jsonl(PAIRS * 20)
        assert c.post("/v1/files", files={"file": ("t.jsonl", big)}).status_code == 413
        _problem(c.post("/v1/files", data={"purpose": "fine-tune"}), 422, "file")
        _problem(c.get("/v1/files", params={"after": "file-nope"}), 422, "after")
        assert c.delete("/v1/files/file-nope").status_code == 404


def test_jobs_create_list_paginate_cancel_and_events(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        fid = _upload(c, _jsonl(PAIRS)).json()["id"]
        ids = []
        for i in range(5):
            r = c.post(
                "/v1/fine_tuning/jobs",
                json={
                    "training_file": fid,
                    "suffix": f"s{i}",
                    "seed": i,
                    "hyperparameters": {"n_epochs": 2, "batch_size": 4},
                },
            )
            assert r.status_code == 200, r.text
            job = r.json()
            ids.append(job["id"])
        assert job["status"] == "queued" and job["model"] == "lexical" and job["fine_tuned_model"] is None
        assert job["hyperparameters"]["epochs"] == 2 and job["hyperparameters"]["loss"] == "infonce"
        assert job["hyperparameters"]["mining"] == {"filter": "training", **TRAINING_FILTER} and job["error"] is None
        pages, after = [], None
        while True:
            page = c.get("/v1/fine_tuning/jobs", params={"limit": 2, **({"after": after} if after else {})}).json()
            assert page["object"] == "list"
            pages.append([j["id"] for j in page["data"]])
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        assert pages == [ids[::-1][:2], ids[::-1][2:4], ids[::-1][4:]]

        cancelled = c.post(f"/v1/fine_tuning/jobs/{ids[0]}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["finished_at"] is not None
        _problem(c.post(f"/v1/fine_tuning/jobs/{ids[0]}/cancel"), 409, None)
        events = c.get(f"/v1/fine_tuning/jobs/{ids[0]}/events").json()["data"]
        assert events[0]["message"] == "Job cancelled" and events[0]["object"] == "fine_tuning.job.event"
        assert [e["message"] for e in events][-1].startswith("Validating training file")
        oldest = c.get(f"/v1/fine_tuning/jobs/{ids[0]}/events", params={"order": "asc", "limit": 1}).json()
        assert oldest["has_more"] and oldest["data"][0]["id"] == events[-1]["id"]
        assert c.get(f"/v1/fine_tuning/jobs/{ids[0]}/checkpoints").json() == {
            "object": "list",
            "data": [],
            "has_more": False,
        }
        _problem(c.delete(f"/v1/files/{fid}"), 409, "file_id")  # queued jobs still read it


@pytest.mark.parametrize(
    "body, status, param",
    [
        ({}, 422, "training_file"),
        ({"training_file": "file-nope"}, 422, "training_file"),
        ({"training_file": "FILE", "validation_file": "file-nope"}, 422, "validation_file"),
        ({"training_file": "FILE", "model": "ft:nope:ftjob-1"}, 422, "model"),
        ({"training_file": "FILE", "model": "../../etc"}, 422, "model"),
        ({"training_file": "FILE", "index": "nope"}, 422, "index"),
        ({"training_file": "FILE", "hyperparameters": {"loss": "mse"}}, 422, "hyperparameters.loss"),
        ({"training_file": "FILE", "hyperparameters": {"batch_size": 1}}, 422, "hyperparameters.batch_size"),
        ({"training_file": "FILE", "hyperparameters": {"lr": 0.1}}, 422, "hyperparameters.lr"),
        (
            {"training_file": "FILE", "hyperparameters": {"mining": {"adaptive_quantile": 2}}},
            422,
            "hyperparameters.mining.adaptive_quantile",
        ),
        (
            {"training_file": "FILE", "hyperparameters": {"mining": {"margin": 0.1}}},
            422,
            "hyperparameters.mining.margin",
        ),
        ({"training_file": "FILE", "hyperparameters": {"epochs": 0}}, 422, "hyperparameters.epochs"),
        ({"training_file": "FILE", "suffix": "has space"}, 422, "suffix"),
        ({"training_file": "FILE", "seed": -1}, 422, "seed"),
        ({"training_file": "FILE", "extra": 1}, 422, "extra"),
    ],
)
def test_bad_job_requests_name_the_field(
    tmp_path: Path, lexical_model: Path, body: dict[str, Any], status: int, param: str
) -> None:
    with _client(tmp_path, lexical_model) as c:
        fid = _upload(c, _jsonl(PAIRS)).json()["id"]
        body = {k: (fid if v == "FILE" else v) for k, v in body.items()}
        _problem(c.post("/v1/fine_tuning/jobs", json=body), status, param)
        assert c.get("/v1/fine_tuning/jobs").json()["data"] == []  # nothing half-created


def test_unknown_jobs_and_cursors(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        for path in ("", "/events", "/checkpoints"):
            assert c.get(f"/v1/fine_tuning/jobs/ftjob-nope{path}").status_code == 404
        assert c.post("/v1/fine_tuning/jobs/ftjob-nope/cancel").status_code == 404
        _problem(c.get("/v1/fine_tuning/jobs", params={"after": "ftjob-nope"}), 422, "after")
        _problem(c.get("/v1/fine_tuning/jobs", params={"limit": 0}), 422, "limit")
        fid = _upload(c, _jsonl(PAIRS)).json()["id"]
        job = c.post("/v1/fine_tuning/jobs", json={"training_file": fid}).json()
        _problem(c.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"after": "ftevent-x"}), 422, "after")
        _problem(c.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"order": "up"}), 422, "order")


def test_models_and_model_names_everywhere(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["lexical"]
        assert c.get("/v1/models/lexical").json()["kind"] == "default"
        assert c.get("/v1/models/ft:x:y").status_code == 404
        _problem(c.post("/v1/embed", json={"inputs": "x", "model": "ft:none:ftjob-1"}), 422, "model")
        _problem(c.post("/v1/embed", json={"inputs": "x", "model": "/etc"}), 422, "model")
        assert len(c.post("/v1/embed", json={"inputs": "x", "model": "lexical"}).json()[0]) == 64
        r = c.post("/v1/indexes", json={"name": "a", "documents": [{"id": "1", "text": "t"}]})
        assert r.status_code == 202
        c.app.state.registry.wait()
        _problem(c.post("/v1/indexes/a/refresh", json={"model": "ft:none:ftjob-1"}), 422, "model")
        _problem(c.post("/v1/indexes", json={"name": "b", "from_index": "nope"}), 422, "from_index")
        r = c.post("/v1/indexes", json={"name": "b", "from_index": "a"})
        assert r.status_code == 202 and r.json()["model"] == "lexical"  # the source index's model, by its name


def test_the_default_model_by_name_or_by_its_own_path(tmp_path: Path) -> None:
    """A trainer hands the service the path of the model it starts from: the bundled default lies outside the data
    dir, and is still accepted (it is the service's own model), while any other outside path is not."""
    from negminer.index import default_model_path
    from negminer.service.model_names import resolve_model

    settings = ServiceSettings(data_dir=tmp_path / "data")
    assert resolve_model(None, settings, None) == default_model_path()
    assert resolve_model("all-MiniLM-L6-v2", settings, None) == default_model_path()
    assert resolve_model(default_model_path(), settings, None) == default_model_path()
    with pytest.raises(Exception, match="model"):
        resolve_model(str(Path(default_model_path()).parent), settings, None)


def test_what_can_be_checked_at_post_is_checked_there(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        fid = _upload(c, _jsonl(PAIRS)).json()["id"]
        one = _upload(c, _jsonl(PAIRS[:1])).json()["id"]  # one query: a held-out split leaves one side empty
        jobs = "/v1/fine_tuning/jobs"
        p = _problem(c.post(jobs, json={"training_file": fid, "model": "."}), 422, "model")
        assert "not a model" in p["detail"] and str(tmp_path) not in p["detail"]
        p = _problem(c.post(jobs, json={"training_file": one}), 422, "training_file")
        assert "validation_fraction" in p["detail"]
        assert c.post(jobs, json={"training_file": one, "validation_file": fid}).status_code == 200
        hp = {"mining": {"corpus_prompt_name": "passage"}}
        r = c.post(jobs, json={"training_file": fid, "hyperparameters": hp})
        p = _problem(r, 422, "hyperparameters.mining.corpus_prompt_name")
        assert "no prompt 'passage'" in p["detail"]
        hp = {"num_negatives": 2, "mining": {"num_negatives": 5}}
        p = c.post(jobs, json={"training_file": fid, "hyperparameters": hp}).json()
        assert p["param"] == "hyperparameters.mining" and "num_negatives" in p["detail"], p
        same = {"num_negatives": 5, "mining": {"num_negatives": 5}}
        assert c.post(jobs, json={"training_file": fid, "hyperparameters": same}).status_code == 200
        assert c.post(jobs, json={"training_file": fid, "hyperparameters": {"max_steps": -5}}).status_code == 422


def test_index_answers_name_the_model_as_v1_models_does(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        r = c.post("/v1/indexes", json={"name": "docs", "documents": [{"id": "a", "text": "alpha"}]})
        assert r.status_code == 202 and r.json()["model"] == "lexical" and r.json()["operation"]["model"] == "lexical"
        c.app.state.registry.wait()
        names = {m["id"] for m in c.get("/v1/models").json()["data"]}
        listed = c.get("/v1/indexes").json()["data"][0]
        assert listed["model"] in names and str(tmp_path) not in json.dumps(listed)


def test_errors_name_the_field_the_caller_sent(tmp_path: Path, lexical_model: Path) -> None:
    """OpenAI's n_epochs is validated as epochs; the error names n_epochs, the caller's word."""
    with _client(tmp_path, lexical_model) as c:
        fid = _upload(c, _jsonl(PAIRS)).json()["id"]
        r = c.post("/v1/fine_tuning/jobs", json={"training_file": fid, "hyperparameters": {"n_epochs": "many"}})
        assert _problem(r, 422, "hyperparameters.n_epochs")["detail"].startswith("hyperparameters.n_epochs:")
        r = c.post("/v1/fine_tuning/jobs", json={"training_file": fid, "hyperparameters": {"epochs": "many"}})
        _problem(r, 422, "hyperparameters.epochs")


def test_trainer_options_the_service_can_refuse_before_a_worker_starts(tmp_path: Path, tiny_model: Path) -> None:
    """Unknown or negminer-owned trainer options, a precision or device count this machine lacks, LoRA modules the
    model's weights lack, and bidirectional attention on a model without it: 422 naming the option, no job."""
    with _client(tmp_path, tiny_model) as c:
        fid = _upload(c, _jsonl(PAIRS)).json()["id"]
        cases = [
            ({"trainer_args": {"max_grad_nrom": 1}}, "hyperparameters.trainer_args", "did you mean 'max_grad_norm'"),
            ({"trainer_args": {"max_steps": 9}}, "hyperparameters.trainer_args", "set max_steps instead"),
            ({"fp16": True}, "hyperparameters.fp16", "CUDA"),
            ({"devices": 64}, "hyperparameters.devices", "processes asked for"),
            ({"lora_r": 4, "lora_target_modules": ["q_proj"]}, "hyperparameters.lora_target_modules", "query"),
            ({"bidirectional": True}, "hyperparameters.bidirectional", "no bidirectional attention"),
        ]
        for hp, param, words in cases:
            body = _problem(
                c.post("/v1/fine_tuning/jobs", json={"training_file": fid, "hyperparameters": hp}), 422, param
            )
            assert words in body["detail"], body
        assert c.get("/v1/fine_tuning/jobs").json()["data"] == []
        hp = {"lora_r": 4, "bf16": True, "weight_decay": 0.1, "trainer_args": {"max_grad_norm": 0.5}}
        job = c.post("/v1/fine_tuning/jobs", json={"training_file": fid, "hyperparameters": hp}).json()
        assert job["hyperparameters"]["lora_r"] == 4 and job["hyperparameters"]["trainer_args"] == {
            "max_grad_norm": 0.5
        }
