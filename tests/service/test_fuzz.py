"""Schemathesis over every route of the OpenAPI document, with and without the API key: no input may get a 5xx,
and every answer must match the schema the route declares (status, content type, body).

Bounded (a few examples per operation, fixed seed) so that it runs in ``make test`` in about a minute; raise
``NEGMINER_FUZZ_EXAMPLES`` for a longer hunt."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from negminer.service import ServiceSettings, create_app  # noqa: E402

pytestmark = pytest.mark.slow  # hundreds of requests

KEY = "fuzz-test-key-0123456789"
EXAMPLES = int(os.environ.get("NEGMINER_FUZZ_EXAMPLES", "60"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, lexical_model: Path) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("fuzz")
    data = tmp / "data"
    data.mkdir()
    (data / "corpus.jsonl").write_text('{"_id": "d1", "text": "open a file"}\n', encoding="utf-8")
    (data / "adir.jsonl").mkdir()  # a directory named like a corpus file
    os.mkfifo(data / "fifo.jsonl")  # a FIFO: reading it would block for ever
    s = ServiceSettings(  # public_docs: the fuzzer reads /openapi.json without the key
        data_dir=data, cache_dir=tmp / "cache", model=str(lexical_model), device="cpu", api_key=KEY, public_docs=True
    )
    app = create_app(s)
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as c:  # runs the lifespan
        app.state.registry.create("docs", str(lexical_model), ["d1", "d2"], ["open a file", "sort a list"], wait=True)
        pairs = '{"query": "read a file", "positive": "open a file"}\n{"query": "order items", "positive": "sort"}\n'
        file_id = c.post("/v1/files", files={"file": ("p.jsonl", pairs.encode())}).json()["id"]
        body = {"training_file": file_id, "validation_file": file_id}  # two queries: too few to hold some out
        job = c.post("/v1/fine_tuning/jobs", json=body).json()  # queued: no worker here
        app.state.known = {"name": "docs", "file_id": file_id, "job_id": job["id"], "model": "lexical"}
        yield app
        app.state.registry.wait(30)


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


def test_no_input_gets_a_5xx_or_an_undeclared_answer(fuzz_schema: Any, fuzz_app: Any) -> None:
    """Each operation in turn (hypothesis drives schemathesis' strategies; its pytest plugin is not needed).
    Deleting operations go last, so that the known index, file and job live until then."""
    known = fuzz_app.state.known
    operations = sorted(
        (result.ok() for result in fuzz_schema.get_all_operations()), key=lambda op: op.method.upper() == "DELETE"
    )
    assert len(operations) >= 29
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def fuzz(case: Any) -> None:
            r = case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS)
            seen[(case.operation.label, r.status_code)] += 1
            if case.path_parameters:  # again on resources that exist (random ids only ever reach the 404s)
                case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
                r = case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS)
                seen[(case.operation.label, r.status_code)] += 1
            anonymous = case.call_and_validate(checks=CHECKS)
            if case.path.startswith("/v1/"):
                assert anonymous.status_code in (401, 404, 405, 413, 422), anonymous.text

        fuzz()
    ok = {label for (label, status) in seen if status < 300}
    assert len(ok) >= 15, sorted(seen.items())  # the fuzz reaches the routes' work, not only their refusals


def test_path_fields_that_are_not_regular_files_are_422(fuzz_app: Any) -> None:
    """The two kinds of 500 an earlier fuzz run found: a directory and a NUL byte in path fields."""
    c = TestClient(fuzz_app, headers={"Authorization": f"Bearer {KEY}"})
    for corpus, says in [
        ("adir.jsonl", "is a directory"),
        ("fifo.jsonl", "not a regular file"),
        ("corpus\x00.jsonl", "NUL"),
        ("../outside.jsonl", "escapes the data dir"),
        ("missing.jsonl", "no file"),
    ]:
        r = c.post("/v1/indexes", json={"name": "x", "corpus_file": corpus})
        assert r.status_code == 422 and r.json()["param"] == "corpus_file" and says in r.json()["detail"], r.text
    r = c.post("/v1/indexes/docs/refresh", json={"model": "m\x00del"})
    assert r.status_code == 422 and r.json()["param"] == "model", r.text
    assert c.get("/v1/files/file-%00x").status_code == 422
