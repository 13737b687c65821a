"""OpenAI's official Python SDK, unchanged, against a real ``negminer serve --with-worker`` on 127.0.0.1.

Every object the SDK returns is validated strictly against the SDK's own pydantic types
(``Type.model_validate(obj.to_dict())``), not through the SDK's lenient parsing, so a missing or mistyped field
fails here before it fails a user."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.service._procs import free_port, start_server, stop

openai = pytest.importorskip("openai")
from openai.types import (  # noqa: E402
    CreateEmbeddingResponse,
    FileDeleted,
    FileObject,
    Model,
    ModelDeleted,
)
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent  # noqa: E402
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint  # noqa: E402

pytestmark = pytest.mark.slow  # a real server and worker, a short training job

TERMINAL = ("succeeded", "failed", "cancelled")


def strict(cls: Any, obj: Any) -> Any:
    """The SDK's type, validated from the plain dict (fails on a missing required field or a wrong type)."""
    return cls.model_validate(obj.to_dict())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lexical_model: Path) -> Iterator[tuple[Any, Path]]:
    tmp = tmp_path_factory.mktemp("sdk")
    port = free_port()
    proc = start_server(
        tmp,
        lexical_model,
        port,
        "--with-worker",
        NEGMINER_API_KEY="sdk-test-key-0123456789",
        NEGMINER_MAX_UPLOAD_BYTES=str(2 << 20),
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sdk-test-key-0123456789", max_retries=0)
    try:
        yield client, tmp
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def training_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from negminer import build_demo

    data = build_demo(120)
    path = tmp_path_factory.mktemp("sdk-data") / "train.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for q, pos in zip(data.queries, data.positives):
            fh.write(json.dumps({"query": q, "positives": [data.corpus_texts[p] for p in pos]}) + "\n")
    return path


def _finished(client: Any, job_id: str, timeout: float = 240) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in TERMINAL:
            return job
        time.sleep(0.5)
    raise AssertionError(f"{job_id} did not finish")


def test_files(server: tuple[Any, Path], training_file: Path) -> None:
    client, _ = server
    raw = training_file.read_bytes()
    by_tuple = strict(FileObject, client.files.create(file=("pairs.jsonl", raw), purpose="fine-tune"))
    by_path = strict(FileObject, client.files.create(file=training_file, purpose="fine-tune"))
    assert by_tuple.filename == "pairs.jsonl" and by_tuple.bytes == len(raw) and by_tuple.purpose == "fine-tune"
    assert by_path.filename == "train.jsonl" and by_path.status == "processed"

    assert strict(FileObject, client.files.retrieve(by_path.id)).id == by_path.id
    assert client.files.content(by_path.id).content == raw
    page = client.files.list(limit=1)
    assert len(page.data) == 1 and page.has_more
    ids = [f.id for f in client.files.list(limit=1)]  # auto-pagination follows `after` page by page
    assert {by_tuple.id, by_path.id} <= set(ids) and len(ids) == len(set(ids))
    for f in client.files.list(limit=1):
        strict(FileObject, f)

    gone = strict(FileDeleted, client.files.delete(by_tuple.id))
    assert gone.deleted and gone.id == by_tuple.id
    with pytest.raises(openai.NotFoundError, match="no file"):
        client.files.retrieve(by_tuple.id)
    with pytest.raises(openai.UnprocessableEntityError, match="purpose"):
        client.files.create(file=("x.jsonl", raw), purpose="assistants")


def test_a_fine_tuning_job_from_create_to_model_delete(server: tuple[Any, Path], training_file: Path) -> None:
    client, tmp = server
    file_id = client.files.create(file=training_file, purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model=client.models.list().data[0].id,
        training_file=file_id,
        suffix="sdk",
        seed=3,
        metadata={"team": "ir", "run": "sdk"},
        method={
            "type": "supervised",
            "supervised": {
                # OpenAI's names and "auto", with negminer's own beside them
                "hyperparameters": {
                    "n_epochs": "auto",
                    "batch_size": 4,
                    "learning_rate_multiplier": 2,
                    "max_steps": 12,
                    "save_steps": 6,
                    "num_negatives": 1,
                }  # fmt: skip
            },
        },
    )
    strict(FineTuningJob, job)
    assert job.status == "queued" and job.method and job.method.type == "supervised"
    hp = job.hyperparameters
    assert hp.batch_size == 4 and hp.n_epochs == 1 and hp.learning_rate_multiplier == pytest.approx(2.0)
    assert job.to_dict()["hyperparameters"]["learning_rate"] == pytest.approx(4e-5)
    # a second job waits behind the first (one worker); cancelled while queued
    waiting = client.fine_tuning.jobs.create(
        model=job.model,
        training_file=file_id,
        hyperparameters={"n_epochs": 2, "batch_size": "auto"},
        metadata={"team": "other"},
    )
    cancelled = strict(FineTuningJob, client.fine_tuning.jobs.cancel(waiting.id))
    assert cancelled.status == "cancelled" and cancelled.hyperparameters.n_epochs == 2
    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.fine_tuning.jobs.pause(job.id)
    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.fine_tuning.jobs.resume(job.id)

    done = strict(FineTuningJob, _finished(client, job.id))
    assert done.status == "succeeded" and done.fine_tuned_model == f"ft:lexical:sdk:{job.id}"
    assert done.organization_id and done.trained_tokens and done.trained_tokens > 12 * 4
    assert len(done.result_files) == 1
    results = strict(FileObject, client.files.retrieve(done.result_files[0]))
    assert results.purpose == "fine-tune-results" and results.filename == "step_metrics.csv"
    rows = list(csv.DictReader(io.StringIO(client.files.content(results.id).text)))
    assert rows and {"step", "train_loss"} <= set(rows[0]) and any(r["ndcg@10"] for r in rows)

    ids = [j.id for j in client.fine_tuning.jobs.list(limit=1)]  # pages of one
    assert ids[:2] == [waiting.id, job.id]
    for j in client.fine_tuning.jobs.list(limit=1):
        strict(FineTuningJob, j)
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "ir"})] == [job.id]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "ir", "run": "x"})] == []

    events = [strict(FineTuningJobEvent, e) for e in client.fine_tuning.jobs.list_events(job.id, limit=5)]
    assert events[0].message == "The job has successfully completed"
    assert any(e.type == "metrics" for e in events)
    ckpts = [strict(FineTuningJobCheckpoint, c) for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    assert [c.step_number for c in ckpts] == [12, 6] and all(c.fine_tuning_job_id == job.id for c in ckpts)

    models = [strict(Model, m) for m in client.models.list()]
    names = {m.id for m in models}
    assert done.fine_tuned_model in names and ckpts[0].fine_tuned_model_checkpoint in names
    assert strict(Model, client.models.retrieve(done.fine_tuned_model)).id == done.fine_tuned_model
    # the fine-tuned model embeds, through OpenAI's embeddings API
    emb = strict(CreateEmbeddingResponse, client.embeddings.create(input="read a file", model=done.fine_tuned_model))
    assert len(emb.data[0].embedding) == 64

    folder = tmp / "data" / "models" / job.id / "final"
    assert folder.is_dir()
    deleted = strict(ModelDeleted, client.models.delete(done.fine_tuned_model))
    assert deleted.deleted and deleted.id == done.fine_tuned_model and not folder.exists()
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(done.fine_tuned_model)
    with pytest.raises(openai.PermissionDeniedError):
        client.models.delete(client.models.list().data[0].id)  # the service's default model
    log = "".join(p.read_text(errors="replace") for p in tmp.glob("serve-*.log"))
    assert "lease lost" not in log  # the worker does not mistake a job that ended for one taken from it


def test_errors_read_as_messages(server: tuple[Any, Path], training_file: Path) -> None:
    """The SDK builds its exception text from problem+json's ``message``: it says what is wrong, not only 422."""
    client, _ = server
    model = client.models.list().data[0].id
    file_id = client.files.create(file=training_file, purpose="fine-tune").id
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.fine_tuning.jobs.create(model=model, training_file=file_id, hyperparameters={"max_steps": 10**20})
    assert "hyperparameters.max_steps: at most" in str(err.value) and err.value.param == "hyperparameters.max_steps"
    with pytest.raises(openai.UnprocessableEntityError, match="method.type"):
        client.fine_tuning.jobs.create(model=model, training_file=file_id, method={"type": "dpo"})
    with pytest.raises(openai.UnprocessableEntityError, match="training_file: no file"):
        client.fine_tuning.jobs.create(training_file="file-nope", model="all-MiniLM-L6-v2")
    with pytest.raises(openai.AuthenticationError, match="bearer"):
        openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0).models.list()


def test_embeddings(server: tuple[Any, Path], lexical_model: Path) -> None:
    client, _ = server
    model = client.models.list().data[0].id
    texts = ["open a file for reading", "sort a list in place", "parse a date string"]
    b64 = strict(CreateEmbeddingResponse, client.embeddings.create(input=texts, model=model))  # SDK asks base64
    floats = strict(
        CreateEmbeddingResponse, client.embeddings.create(input=texts, model=model, encoding_format="float")
    )
    a = np.array([d.embedding for d in b64.data])
    b = np.array([d.embedding for d in floats.data])
    assert a.shape == (3, 64) and np.allclose(a, b, atol=1e-6) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert [d.index for d in b64.data] == [0, 1, 2] and b64.model == model
    from negminer.index import Encoder

    enc = Encoder(lexical_model, device="cpu")
    assert b64.usage.prompt_tokens == b64.usage.total_tokens == sum(enc.token_counts(texts))
    cut = client.embeddings.create(input="open a file", model=model, dimensions=16)
    assert len(cut.data[0].embedding) == 16 and abs(np.linalg.norm(cut.data[0].embedding) - 1) < 1e-5
    raw = client.embeddings.with_raw_response.create(input="x", model=model, encoding_format="base64").http_response
    assert isinstance(raw.json()["data"][0]["embedding"], str)
    assert len(base64.b64decode(raw.json()["data"][0]["embedding"])) == 64 * 4
    with pytest.raises(openai.UnprocessableEntityError, match="token arrays"):
        client.embeddings.create(input=[[1, 2, 3]], model=model)


def test_a_chunked_upload_is_refused_at_the_cap_not_after(server: tuple[Any, Path]) -> None:
    """No Content-Length (chunked): the body is counted as it streams and refused once past the 2 MiB cap."""
    import httpx

    client, tmp = server
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
        for _ in range(64):  # 64 MiB offered
            sent += 1
            yield b'{"query": "q", "positive": "p"}\n' * (1 << 15)

    headers = {"Authorization": "Bearer sdk-test-key-0123456789", "Content-Type": "multipart/form-data; boundary=b"}
    try:
        r = httpx.post(f"{client.base_url}files", content=body(), headers=headers, timeout=60)
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large", r.text
    except httpx.HTTPError:  # the server may close the connection while the client still sends
        pass
    assert sent < 16  # stopped reading near the cap
    assert not [p for p in (tmp / "data" / "files").glob("*") if p.stat().st_size > 2 << 20]


def test_huggingface_hubs_inference_client_on_the_server_root(server: tuple[Any, Path], monkeypatch) -> None:
    """``InferenceClient(model=base_url)`` posts to the URL itself, as to a Text Embeddings Inference server: the
    root's ``POST /`` and ``POST /embed`` answer like ``/v1/embed``; ``GET /info`` and ``POST /tokenize`` have TEI's
    shapes."""
    import httpx
    import numpy as np
    from huggingface_hub import InferenceClient, constants

    # the tests run with HF_HUB_OFFLINE=1, and huggingface_hub's offline mode blocks its requests to any URL, a
    # local server's too; a user of InferenceClient against negminer runs without it
    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)
    client, _ = server
    base = str(client.base_url).rstrip("/").removesuffix("/v1")
    key = "sdk-test-key-0123456789"
    hf = InferenceClient(model=base, token=key)
    both = np.asarray(hf.feature_extraction(["hello world", "another text"]))
    one = np.asarray(hf.feature_extraction("hello world")).reshape(-1)
    assert both.shape == (2, 64) and np.allclose(both[0], one, atol=1e-6)
    auth = {"Authorization": f"Bearer {key}"}
    v1 = httpx.post(f"{base}/v1/embed", json={"inputs": ["hello world"]}, headers=auth).json()
    embed = httpx.post(f"{base}/embed", json={"inputs": ["hello world"]}, headers=auth).json()
    assert np.allclose(v1, embed) and np.allclose(v1[0], one, atol=1e-6)
    info = httpx.get(f"{base}/info", headers=auth).json()
    assert info["model_id"] == "lexical" and info["dimensions"] == 64 and info["max_client_batch_size"] > 0
    tokens = httpx.post(f"{base}/tokenize", json={"inputs": ["hello world"]}, headers=auth).json()
    words = [t for t in tokens[0] if not t["special"]]
    assert [t["text"] for t in words] == ["hello", "world"] and (words[0]["start"], words[0]["stop"]) == (0, 5)
    assert httpx.get(f"{base}/info").status_code == 401  # TEI's routes need the key like every other
