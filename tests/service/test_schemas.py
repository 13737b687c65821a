"""The HTTP contract: every route declares what it answers (OpenAPI), errors map by type to their status, and the
service's own client parses the same schemas the routes declare."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from negminer import ConfigError, DataError, IndexFileError, ModelError, NegminerError
from negminer.client.schemas import Operation
from negminer.service import IndexBusy, IndexExists, IndexNotFound, IndexNotReady, ServiceSettings, create_app
from negminer.service.errors import status_of
from negminer.service.registry import IndexState


def _app(tmp_path: Path, model: Path):
    return create_app(
        ServiceSettings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", model=str(model), device="cpu")
    )


def test_every_route_says_what_it_answers(tmp_path: Path, lexical_model: Path) -> None:
    spec = _app(tmp_path, lexical_model).openapi()
    operations = [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) >= 24
    missing = []
    for method, path, op in operations:
        ok = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert ok, f"{method} {path}: no 2xx response"
        for code, response in ok.items():
            schemas = [c.get("schema") for c in response.get("content", {}).values()]
            if not schemas or not all(schemas):
                missing.append(f"{method} {path} {code}")
        if path.startswith("/v1/"):
            problems = [c for c in op["responses"] if c.startswith("4")]
            assert problems, f"{method} {path}: no problem+json error response"
            for c in problems:
                assert "application/problem+json" in op["responses"][c]["content"], (path, c)
    assert missing == []
    components = spec["components"]["schemas"]
    for name in (
        "IndexInfo",
        "Operation",
        "SearchResponse",
        "MineResponse",
        "Job",
        "Event",
        "Checkpoint",
        "FileObject",
        "Model",
        "Problem",
        "TrainHyperparameters",
        "JobHyperparameters",
        "MiningConfig",
        "EmbeddingsResponse",
    ):
        assert name in components, name
    assert components["Job"]["properties"]["status"]["$ref"].endswith("/JobStatus")
    assert components["Job"]["properties"]["hyperparameters"]["$ref"].endswith("/JobHyperparameters")
    assert {"n_epochs", "learning_rate_multiplier", "batch_size"} <= set(components["JobHyperparameters"]["properties"])


@pytest.mark.parametrize(
    "exc, status, code",
    [
        (IndexNotFound("x"), 404, "index_not_found"),
        (IndexExists("x"), 409, "index_exists"),
        (IndexBusy("x", "refresh"), 409, "index_busy"),
        (IndexNotReady("x", "building"), 409, "index_not_ready"),
        (IndexFileError("corrupted"), 409, "index_file_error"),
        (DataError("empty", file="f", line=2, field="text"), 422, "invalid_data"),
        (ConfigError("bad", param="top_k"), 422, "invalid_request"),
        (ModelError("no model"), 422, "invalid_model"),
        (NegminerError("other"), 400, "bad_request"),
    ],
)
def test_errors_map_by_type(exc: NegminerError, status: int, code: str) -> None:
    assert status_of(exc) == (status, code)


def test_busy_and_not_ready_indexes_answer_409(tmp_path: Path, lexical_model: Path) -> None:
    docs = [{"id": f"d{i}", "text": f"document {i} about files"} for i in range(10)]
    with TestClient(_app(tmp_path, lexical_model)) as c:
        assert c.post("/v1/indexes", json={"name": "docs", "documents": docs}).status_code == 202
        registry = c.app.state.registry
        registry.wait()
        state = registry.get("docs")
        state.operation = Operation(type="refresh", model="m", started_at=0, documents=10)  # running
        busy = c.post("/v1/indexes/docs/documents", json={"documents": docs[:1]})
        assert busy.status_code == 409 and busy.json()["code"] == "index_busy" and busy.json()["param"] == "name"
        registry._states["young"] = IndexState(name="young", model="m", kind="flat")  # building, no version yet
        young = c.post("/v1/indexes/young/search", json={"queries": ["files"]})
        assert young.status_code == 409 and young.json()["code"] == "index_not_ready"
        assert c.post("/v1/indexes/young/refresh", json={"model": str(lexical_model)}).status_code == 409


def test_the_client_parses_the_routes_own_schemas() -> None:
    """HttpNegativeSource sends and reads the very classes the index routes declare."""
    from negminer.client import _http as client
    from negminer.client import schemas
    from negminer.service.api.routes import indexes

    for name in ("IndexInfo", "CreateIndex", "RefreshRequest", "MineRequest", "MineResponse"):
        assert getattr(client, name) is getattr(schemas, name) is getattr(indexes, name)


def test_training_options_are_declared_once() -> None:
    """The jobs API's hyperparameters are the trainer's own model; the CLI's train options are its fields."""
    from typer.testing import CliRunner

    from negminer.cli import app
    from negminer.client.schemas import CreateJob
    from negminer.trainer import TrainConfig, TrainHyperparameters

    assert CreateJob.model_fields["hyperparameters"].annotation is TrainHyperparameters
    assert set(TrainHyperparameters.model_fields) <= set(TrainConfig.model_fields)
    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    flags = {"trainer_args": "--trainer-arg"}  # NAME=VALUE, repeated
    for name in TrainHyperparameters.model_fields:
        if name not in ("mining", "devices"):  # devices: torchrun starts the command line's processes
            assert flags.get(name, f"--{name.replace('_', '-')}") in shown, name
    assert "infonce|decoupled|dcl" in shown and "examples per step (default: 16)" in shown
