"""Bad numbers and bad text, one rule for every request model: found through the OpenAPI document, so a field
added later is covered without editing these tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from negminer.service import ServiceSettings, create_app

BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999"]
SURROGATE = '"\\ud800"'  # JSON can spell it, UTF-8 cannot
JSON = {"content-type": "application/json"}
PATH_PARAMS = {"name": "docs", "job_id": "ftjob-0", "file_id": "file-0", "model": "m", "model_id": "m"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, lexical_model: Path) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("inputs")
    settings = ServiceSettings(data_dir=tmp / "data", cache_dir=tmp / "cache", model=str(lexical_model), device="cpu")
    with TestClient(create_app(settings)) as c:
        yield c


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _leaves(spec: dict[str, Any], schema: dict[str, Any], path: tuple[Any, ...], depth: int = 0) -> Iterator[Any]:
    """(path, JSON type) of every scalar field reachable in ``schema``; list items get index 0."""
    schema = _resolve(spec, schema)
    if depth > 8:
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            yield from _leaves(spec, sub, path, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        for name, sub in schema.get("properties", {}).items():
            yield from _leaves(spec, sub, (*path, name), depth + 1)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            yield from _leaves(spec, extra, (*path, "k"), depth + 1)
    elif kind == "array" and isinstance(schema.get("items"), dict):
        yield from _leaves(spec, schema["items"], (*path, 0), depth + 1)
    elif kind in ("number", "string") and not {"enum", "const"} & set(schema) and schema.get("format") != "binary":
        yield path, kind


def _json_bodies(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for route, item in spec["paths"].items():
        for method, op in item.items():
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if body:
                url = route.format(**{k: PATH_PARAMS.get(k, "x") for k in _params(route)})
                yield method, url, body["schema"]


def _params(route: str) -> list[str]:
    return [part[1:-1] for part in route.split("/") if part.startswith("{")]


def _body_with(path: tuple[Any, ...], raw: str) -> bytes:
    """A JSON body holding only ``raw`` (a JSON literal, written as is) at ``path``."""
    value: Any = "__RAW__"
    for key in reversed(path):
        value = [value] if isinstance(key, int) else {key: value}
    return json.dumps(value).replace('"__RAW__"', raw).encode()


def _named(problem: dict[str, Any], path: tuple[Any, ...], exact: bool) -> bool:
    dotted = ".".join(str(p) for p in path)
    names = [part.split(": ", 1)[0] for part in problem["detail"].split("; ")]
    if exact:
        return dotted in names
    return any(dotted == n or dotted.startswith(n + ".") for n in names)  # a list of texts names the list


def test_every_float_field_refuses_nan_infinity_and_overflow(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    checked = 0
    for method, url, schema in _json_bodies(spec):
        for path, kind in _leaves(spec, schema, ()):
            if kind != "number":
                continue
            for raw in BAD_NUMBERS:
                r = client.request(
                    method, url, content=_body_with(path, raw), headers={"content-type": "application/json"}
                )
                assert r.status_code == 422, (method, url, path, raw, r.text)
                problem = r.json()
                assert _named(problem, path, exact=True), (method, url, path, raw, problem["detail"])
                assert "finite" in problem["detail"], problem["detail"]
            checked += 1
    # the mining options (in /mine and in both places a job takes hyperparameters) and the job's own floats
    assert checked >= 30, checked


def test_openai_hyperparameter_aliases_refuse_non_finite_numbers(client: TestClient) -> None:
    for name in ("n_epochs", "learning_rate_multiplier"):
        for raw in BAD_NUMBERS:
            body = f'{{"training_file": "file-0", "hyperparameters": {{"{name}": {raw}}}}}'.encode()
            r = client.post("/v1/fine_tuning/jobs", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422 and "hyperparameters" in r.json()["param"], (name, raw, r.text)


def test_every_string_field_refuses_lone_surrogates(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    checked = 0
    for method, url, schema in _json_bodies(spec):
        for path, kind in _leaves(spec, schema, ()):
            if kind != "string":
                continue
            r = client.request(
                method, url, content=_body_with(path, SURROGATE), headers={"content-type": "application/json"}
            )
            assert r.status_code == 422, (method, url, path, r.text)
            assert _named(r.json(), path, exact=False), (method, url, path, r.json()["detail"])
            checked += 1
    assert checked >= 30, checked


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("temperature", "0", "greater than 0"),
        ("learning_rate", "-1e-5", "greater than 0"),
        ("max_steps", "-5", "at least -1"),
        ("max_steps", "0", "-1 (epochs decide)"),
    ],
)
def test_values_without_meaning_are_refused(client: TestClient, field: str, value: str, why: str) -> None:
    body = f'{{"training_file": "file-0", "hyperparameters": {{"{field}": {value}}}}}'.encode()
    r = client.post("/v1/fine_tuning/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["param"] == f"hyperparameters.{field}" and why in r.json()["detail"]


def test_negative_mining_seed_is_refused(client: TestClient) -> None:
    r = client.post("/v1/indexes/docs/mine", json={"queries": [{"query": "q"}], "options": {"seed": -1}})
    assert r.status_code == 422 and r.json()["param"] == "options.seed"


def test_malformed_json_names_line_and_column(client: TestClient) -> None:
    body = b'{\n  "queries": ["a",\n  ]\n}'
    r = client.post("/v1/indexes/docs/search", content=body, headers={"content-type": "application/json"})
    problem = r.json()
    assert r.status_code == 422 and problem["code"] == "invalid_json" and problem["param"] == "body"
    assert "line 3, column 3" in problem["detail"], problem["detail"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"input": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
        (b'{"input": "\xff\xfe"}', "not valid UTF-8 (invalid start byte at byte 11)"),
        (b'{"input": "x", "dimensions": ' + b"9" * 5000 + b"}", "an integer of more than 4300 digits"),
    ],
)
def test_bodies_that_json_cannot_take_are_invalid_json_too(client: TestClient, body: bytes, why: str) -> None:
    """Not only a syntax error: deep nesting, bad UTF-8 and a 5,000-digit integer are 422 invalid_json as
    documented (FastAPI answers them 400 "There was an error parsing the body")."""
    r = client.post("/v1/embeddings", content=body, headers=JSON)
    problem = r.json()
    assert r.status_code == 422 and problem["code"] == "invalid_json" and problem["param"] == "body", problem
    assert why in problem["detail"], problem["detail"]


def test_metadata_has_openais_limits(client: TestClient) -> None:
    """OpenAI caps metadata at 16 pairs, 64-character keys and 512-character values."""
    for metadata, param in [
        ({"k": "v" * 513}, "metadata.k"),
        ({"k" * 65: "v"}, "metadata"),
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
    ]:
        r = client.post("/v1/fine_tuning/jobs", json={"training_file": "file-0", "metadata": metadata})
        assert r.status_code == 422 and r.json()["param"].startswith(param), r.json()


def test_an_uploaded_line_with_a_lone_surrogate_is_refused_with_its_line(client: TestClient) -> None:
    good = '{"query": "q1", "positive": "p1"}\n'
    bad = '{"query": "q2", "positive": "p\\ud800"}\n'
    r = client.post("/v1/files", files={"file": ("train.jsonl", (good + bad).encode())}, data={"purpose": "fine-tune"})
    problem = r.json()
    assert r.status_code == 422 and problem["line"] == 2 and "surrogate" in problem["detail"], problem
    assert "positive" in problem["detail"]
