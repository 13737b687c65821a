"""The index registry's promises on a real folder: operations recorded before they are answered, writers fenced
by incarnation, deletes that stay deleted, interrupted operations reported after a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from negminer.index import Encoder
from negminer.service import IndexNotFound, IndexRegistry


def _registry(root: Path, model: Path, cache: Path) -> IndexRegistry:
    reg = IndexRegistry(root, lambda m: Encoder(m, device="cpu", cache_dir=cache, show_progress=False))
    reg.load_all()
    return reg


def _docs(tag: str, n: int) -> tuple[list[str], list[str]]:
    return [f"{tag}{i}" for i in range(n)], [
        f"{tag} document {i} about {i % 97} things and {i % 13} more" for i in range(n)
    ]


def _leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob(".*") if p.name.endswith((".tmp", ".old"))]


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_delete_during_a_build_stays_deleted_after_the_build_ends_and_a_restart(
    tmp_path: Path, lexical_model: Path, delay: float
) -> None:
    root, cache = tmp_path / "indexes", tmp_path / f"cache{delay}"
    reg = _registry(root, lexical_model, cache)
    reg.create("docs", str(lexical_model), *_docs("old", 3000))
    time.sleep(delay)
    reg.delete("docs")
    reg.wait()
    assert reg.names() == [] and not (root / "docs").exists()
    again = _registry(root, lexical_model, cache)
    assert again.names() == []
    with pytest.raises(IndexNotFound):
        again.get("docs")
    assert not list((root / ".trash").glob("*")) if (root / ".trash").exists() else True


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_a_recreated_name_never_receives_the_old_builds_version(
    tmp_path: Path, lexical_model: Path, delay: float
) -> None:
    root, cache = tmp_path / "indexes", tmp_path / f"cache{delay}"
    reg = _registry(root, lexical_model, cache)
    reg.create("docs", str(lexical_model), *_docs("old", 3000))
    time.sleep(delay)
    reg.delete("docs")
    reg.create("docs", str(lexical_model), *_docs("new", 2))
    reg.wait()
    for r in (reg, _registry(root, lexical_model, cache)):
        snap = r.snapshot("docs")
        assert list(snap.corpus.doc_ids) == ["new0", "new1"] and snap.version == 1
        assert r.get("docs").info().status == "ready"
    assert _leftovers(root) == []


def test_a_recreated_name_never_receives_the_old_refresh(tmp_path: Path, lexical_model: Path, tiny_model: Path) -> None:
    root, cache = tmp_path / "indexes", tmp_path / "cache"
    reg = _registry(root, lexical_model, cache)
    reg.create("docs", str(lexical_model), *_docs("old", 3000), wait=True)
    reg.refresh("docs", str(tiny_model))  # a different model: every text is encoded again
    reg.delete("docs")
    reg.create("docs", str(lexical_model), *_docs("new", 3), wait=True)
    reg.wait()
    for r in (reg, _registry(root, lexical_model, cache)):
        snap = r.snapshot("docs")
        assert list(snap.corpus.doc_ids) == ["new0", "new1", "new2"] and snap.version == 1
        assert snap.model == str(lexical_model)


def test_the_operation_is_on_disk_when_create_returns(tmp_path: Path, lexical_model: Path) -> None:
    root = tmp_path / "indexes"
    reg = _registry(root, lexical_model, tmp_path / "cache")
    state = reg.create("docs", str(lexical_model), *_docs("d", 500))
    record = json.loads((root / "docs" / "operation.json").read_text())
    meta = json.loads((root / "docs" / "index.json").read_text())
    assert record["type"] == "build" and record["uid"] == meta["uid"] == state.uid
    assert record["status"] in ("running", "succeeded") and record["id"].startswith("op-")
    info = state.info()  # progress is set from the start, never null
    assert info.operation is not None and info.operation.stage is not None and info.operation.to_encode is not None
    reg.wait()
    assert json.loads((root / "docs" / "operation.json").read_text())["status"] == "succeeded"


def test_an_operation_left_running_is_reported_interrupted_and_the_old_version_serves(
    tmp_path: Path, lexical_model: Path
) -> None:
    """What a killed process leaves: the record of a running refresh and a half-written temporary folder (the
    real kill -9 of a server is in test_durability.py)."""
    root = tmp_path / "indexes"
    reg = _registry(root, lexical_model, tmp_path / "cache")
    reg.create("docs", str(lexical_model), *_docs("d", 50), wait=True)
    record_path = root / "docs" / "operation.json"
    record = json.loads(record_path.read_text())
    record.update(status="running", type="refresh", id="op-killed", version=None)
    record_path.write_text(json.dumps(record))
    (root / "docs" / ".v000002.abcd1234.tmp").mkdir()
    again = _registry(root, lexical_model, tmp_path / "cache")
    info = again.get("docs").info()
    assert info.status == "ready" and info.version == 1
    assert info.operation is not None and info.operation.id == "op-killed" and info.operation.status == "failed"
    assert info.operation.error is not None and info.operation.error.code == "interrupted"
    assert _leftovers(root) == []
    assert json.loads(record_path.read_text())["status"] == "failed"  # marked on disk, once


def test_a_build_interrupted_before_its_first_version_is_listed_failed(tmp_path: Path, lexical_model: Path) -> None:
    root = tmp_path / "indexes"
    reg = _registry(root, lexical_model, tmp_path / "cache")
    reg.create("docs", str(lexical_model), *_docs("d", 50), wait=True)
    for p in (root / "docs").glob("v*"):
        import shutil

        shutil.rmtree(p)
    (root / "docs" / "CURRENT").unlink()
    record = json.loads((root / "docs" / "operation.json").read_text())
    (root / "docs" / "operation.json").write_text(json.dumps({**record, "status": "running"}))
    info = _registry(root, lexical_model, tmp_path / "cache").get("docs").info()
    assert info.status == "failed" and info.error is not None and info.error.code == "interrupted"
    assert "docs" in _registry(root, lexical_model, tmp_path / "cache").names()  # listed, deletable
