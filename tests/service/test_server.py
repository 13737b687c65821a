"""A real uvicorn server on 127.0.0.1: build an index, search, restart, search again."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.service._procs import free_port, start_server

pytestmark = pytest.mark.slow  # real uvicorn processes


def test_server_end_to_end_with_restart(tmp_path: Path, lexical_model: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    docs = [{"id": f"d{i}", "text": f"function number {i} reads files"} for i in range(20)]
    proc = start_server(tmp_path, lexical_model, port)
    try:
        assert httpx.post(f"{base}/v1/indexes", json={"name": "code", "documents": docs}).status_code == 202
        deadline = time.time() + 60
        while httpx.get(f"{base}/v1/indexes/code").json()["status"] != "ready":
            assert time.time() < deadline
            time.sleep(0.2)
        first = httpx.post(f"{base}/v1/indexes/code/search", json={"queries": [docs[4]["text"]], "top_k": 2}).json()
        assert first["results"][0][0]["id"] == "d4" and first["version"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc = start_server(tmp_path, lexical_model, port)
    try:
        again = httpx.post(f"{base}/v1/indexes/code/search", json={"queries": [docs[4]["text"]], "top_k": 2}).json()
        assert again == first
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_trainer_refreshes_through_the_service(tmp_path: Path, lexical_model: Path) -> None:
    import shutil

    from negminer import build_demo
    from negminer.client import HttpNegativeSource
    from negminer.trainer import TrainConfig, train

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    model = tmp_path / "data" / "models" / "start"
    shutil.copytree(lexical_model, model)
    proc = start_server(tmp_path, lexical_model, port)
    try:
        data = build_demo(120)
        cfg = TrainConfig(
            output_dir=str(tmp_path / "data" / "runs" / "t"),
            model=str(model),
            negatives="refresh",
            refresh_every=2,
            max_steps=5,
            batch_size=4,
            num_negatives=2,
            device="cpu",
            cache_dir=str(tmp_path / "cache"),
            show_progress=False,
        )
        res = train(data, cfg, source=HttpNegativeSource.factory(base, "train-run"))
        info = httpx.get(f"{base}/v1/indexes/train-run").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert [h["event"] for h in res.history] == ["start", "refresh", "refresh", "end"]
    # version 1 = the starting model; each refresh published the next version, which the trainer then used
    assert res.refreshes[0]["version"] == 1
    assert [r["version"] for r in res.refreshes] == sorted({r["version"] for r in res.refreshes})
    assert info["version"] == 3 and info["model"].startswith("sha256:")  # the step-4 checkpoint, uploaded
