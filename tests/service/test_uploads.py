"""Models over HTTP against a real server: content-addressed uploads, the bad archives they refuse (nothing is
published, nothing is written outside the data dir), refreshes by upload id, the same negatives as through a
shared folder, leases, and the sweep of unused uploads."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from negminer.client import HttpNegativeSource, ServiceError
from negminer.client.uploads import folder_manifest, upload_id, upload_model
from tests.service._procs import free_port, start_server, stop

pytestmark = pytest.mark.slow  # a real uvicorn process

KEY = "k" * 24


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lexical_model: Path) -> Iterator[tuple[httpx.Client, Path]]:
    root = tmp_path_factory.mktemp("uploads")
    port = free_port()
    proc = start_server(
        root,
        lexical_model,
        port,
        NEGMINER_API_KEY=KEY,
        NEGMINER_MAX_MODEL_BYTES=str(32 * 1024 * 1024),
        NEGMINER_UPLOAD_GRACE_SECONDS="1",
        NEGMINER_SWEEP_SECONDS="0.5",
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    try:
        yield client, root / "data"
    finally:
        client.close()
        stop(proc)


def _tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _post(client: httpx.Client, body: bytes, sha: str | None = None, **params: str) -> httpx.Response:
    sha = sha or hashlib.sha256(body).hexdigest()
    return client.post("/v1/models/uploads", params={"sha256": sha, **params}, content=body)


def _published(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "uploads").glob("*.json"))


def _problem(r: httpx.Response, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and r.headers["content-type"].startswith("application/problem+json")
    if param is not None:
        assert body["param"] == param, body
    return body


def test_an_upload_is_content_addressed_and_a_second_one_sends_nothing(
    server: tuple[httpx.Client, Path], lexical_model: Path
) -> None:
    client, data_dir = server
    first = upload_model(client, lexical_model)
    assert not first.reused and first.bytes_sent > 0
    assert first.id == upload_id(folder_manifest(lexical_model))
    info = client.get(f"/v1/models/uploads/{first.id}").json()
    assert info["files"] == len(folder_manifest(lexical_model)) and info["base"] is None
    again = upload_model(client, lexical_model)
    assert again.id == first.id and again.reused and again.bytes_sent == 0
    folder = data_dir / "uploads" / first.id.removeprefix("sha256:")
    assert folder_manifest(folder) == folder_manifest(lexical_model)  # the published files are the files sent


def test_bad_uploads_are_refused_and_nothing_is_published(server: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    client, data_dir = server
    before = _published(data_dir)
    model = _tar([_file("config.json", b"{}"), _file("modules.json", b"[]")])
    _problem(_post(client, model, sha="0" * 64), 422, "checksum_mismatch", "sha256")
    weighty = _tar([_file("config.json", b"{}"), _file("weights.bin", b"\2" * 100_000)])
    _problem(_post(client, weighty[:50_000]), 422, "unsafe_archive", "file")  # a truncated archive
    _problem(_post(client, _tar([_file("../escaped.json", b"{}")])), 422, "unsafe_archive", "file")
    _problem(_post(client, _tar([_file("/tmp/absolute.json", b"{}")])), 422, "unsafe_archive", "file")
    link = tarfile.TarInfo("config.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    body = _problem(_post(client, _tar([(link, None)])), 422, "unsafe_archive", "file")
    assert "symlink" in body["detail"]
    _problem(_post(client, _tar([_file("notes.txt", b"hello")])), 422, "invalid_request", "file")  # no model
    _problem(
        _post(client, _tar([_file("config.json", b"{}"), _file("adapter_config.json", b"{}")])),
        422,
        "invalid_request",
        "base",
    )
    big = _tar([_file("config.json", b"{}"), _file("weights.bin", b"\0" * (33 * 1024 * 1024))])
    r = _post(client, big)
    assert r.status_code == 413
    _problem(client.get("/v1/models/uploads/sha256:" + "a" * 64), 404, "upload_not_found")
    server_path = {"name": "p", "model": str(data_dir / "uploads"), "documents": [{"id": "1", "text": "x"}]}
    _problem(client.post("/v1/indexes", json=server_path), 422, "invalid_request", "model")  # never a server path
    assert _published(data_dir) == before
    assert not (data_dir / "uploads" / ".." / "escaped.json").exists() and not Path("/tmp/absolute.json").exists()
    assert not list((data_dir / "uploads" / ".incoming").iterdir())  # no archive or folder left half-received


def test_an_upload_cut_short_leaves_nothing(server: tuple[httpx.Client, Path]) -> None:
    client, data_dir = server
    before = _published(data_dir)
    body = _tar([_file("config.json", b"{}"), _file("weights.bin", b"\1" * 300_000)])
    url = httpx.URL(str(client.base_url))
    with socket.create_connection((url.host, url.port)) as s:
        head = (
            f"POST /v1/models/uploads?sha256={hashlib.sha256(body).hexdigest()} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        s.sendall(head.encode() + body[:100_000])
    deadline = time.time() + 10
    while list((data_dir / "uploads" / ".incoming").iterdir()) and time.time() < deadline:
        time.sleep(0.1)
    assert not list((data_dir / "uploads" / ".incoming").iterdir())
    assert _published(data_dir) == before


def test_a_wrong_key_is_refused_before_any_byte_is_kept(server: tuple[httpx.Client, Path], lexical_model: Path) -> None:
    client, _ = server
    stranger = httpx.Client(base_url=client.base_url, headers={"Authorization": "Bearer " + "x" * 24})
    with pytest.raises(ServiceError) as err:
        upload_model(stranger, lexical_model)
    assert err.value.status == 401


def _source(client: httpx.Client, name: str, data: Any, **kw: Any) -> HttpNegativeSource:
    from negminer.mining import MiningConfig

    return HttpNegativeSource(str(client.base_url), name, data, MiningConfig(num_negatives=3), api_key=KEY, **kw)


def _update(source: HttpNegativeSource) -> Any:
    deadline = time.time() + 60
    while (update := source.poll()) is None:
        assert time.time() < deadline
        time.sleep(0.2)
    return update


def test_a_refresh_by_upload_gives_the_negatives_of_a_refresh_through_a_shared_folder(
    server: tuple[httpx.Client, Path], lexical_model: Path
) -> None:
    from negminer import build_demo

    client, data_dir = server
    data = build_demo(60)
    checkpoint = data_dir / "runs" / "ckpt"
    shutil.copytree(lexical_model, checkpoint, dirs_exist_ok=True)
    (checkpoint / "README.md").write_text("a checkpoint of this test: files no other test uploads\n")
    shared = _source(client, "by-path", data, shared_dir=data_dir)
    uploaded = _source(client, "by-upload", data, expires_after=60, labels={"run": "r1"})
    try:
        shared.refresh(str(checkpoint))
        uploaded.refresh(str(checkpoint))
        a, b = _update(shared), _update(uploaded)
        assert a.negatives == b.negatives and any(a.negatives)
        assert shared.transfers == [] and uploaded.transfers[0].bytes_sent > 0
        info = client.get("/v1/indexes/by-upload").json()
        assert info["model"] == uploaded.transfers[0].id and info["labels"] == {"run": "r1"}
        assert client.get("/v1/indexes/by-path").json()["model"] == "runs/ckpt"
        uploaded.refresh(str(checkpoint))  # the same checkpoint again: one request, no bytes
        _update(uploaded)
        assert uploaded.transfers[-1].reused and uploaded.transfers[-1].bytes_sent == 0
    finally:
        shared.close()
        uploaded.close()


def test_an_expired_index_is_swept_then_the_upload_it_used(server: tuple[httpx.Client, Path], tiny_model: Path) -> None:
    client, data_dir = server
    transfer = upload_model(client, tiny_model)
    docs = [{"id": str(i), "text": f"document {i}"} for i in range(5)]
    r = client.post(
        "/v1/indexes",
        json={"name": "leased", "documents": docs, "model": transfer.id, "expires_after": 2, "labels": {"k": "v"}},
    )
    assert r.status_code == 202, r.text
    deadline = time.time() + 60
    while client.get("/v1/indexes/leased").json()["status"] != "ready":  # each call renews the lease
        assert time.time() < deadline
        time.sleep(0.2)
    deadline = time.time() + 20  # no call renews it: the sweep deletes it
    while client.get("/v1/indexes", params={"label": "k=v"}).json()["data"]:  # listing renews no lease
        assert time.time() < deadline, "the expired index was not swept"
        time.sleep(0.3)
    assert client.get("/v1/indexes/leased").status_code == 404
    folder = data_dir / "uploads" / transfer.id.removeprefix("sha256:")
    deadline = time.time() + 20  # no index version uses the upload now: the sweep deletes it after its grace
    while folder.exists():
        assert time.time() < deadline, "the unused upload was not collected"
        time.sleep(0.3)
    assert client.get(f"/v1/models/uploads/{transfer.id}").status_code == 404
    assert not (data_dir / "indexes" / "leased").exists()


def test_a_lora_refresh_sends_the_adapter_and_its_base_once(
    server: tuple[httpx.Client, Path], tiny_model: Path, tmp_path: Path
) -> None:
    """A LoRA checkpoint travels as its adapter: the base model goes once (content-addressed), each refresh sends
    the adapter's few files; the service encodes base + adapter, as a refresh through a shared folder does."""
    import torch
    from sentence_transformers import SentenceTransformer

    from negminer import build_demo
    from negminer.trainer import TrainConfig
    from negminer.trainer._model import prepare_model, save_trained

    client, data_dir = server
    data = build_demo(40)
    adapters = []
    for step in (1, 2):
        model = SentenceTransformer(str(tiny_model), device="cpu")
        cfg = TrainConfig(output_dir=str(tmp_path / "out"), model=str(tiny_model), lora_r=4, seed=step)
        prepare_model(model, cfg, str(tiny_model), tmp_path / "out")
        for p in model.parameters():
            if p.requires_grad:  # a trained adapter: B is zero at the start
                p.data.normal_(0, 0.05, generator=torch.Generator().manual_seed(step))
        save_trained(model, tmp_path / f"adapter-{step}", merge=False)
        adapters.append(tmp_path / f"adapter-{step}")
    source = _source(client, "lora-run", data, expires_after=60)
    try:
        for adapter in adapters:
            source.refresh(str(adapter))
            _update(source)
        base, first, second = source.transfers  # the base once (sent, or known already), then each adapter
        assert base.id == upload_id(folder_manifest(tiny_model))
        assert first.bytes_sent > 0 and second.bytes_sent > 0
        adapter_bytes = (adapters[1] / "adapter_model.safetensors").stat().st_size
        base_bytes = sum(size for _, size, _ in folder_manifest(tiny_model))
        assert second.bytes_sent < base_bytes and second.bytes_sent < adapter_bytes + 2 * 1024 * 1024
        info = client.get(f"/v1/models/uploads/{second.id}").json()
        assert info["base"] == base.id
        assert client.get("/v1/indexes/lora-run").json()["model"] == second.id
        config = json.loads(
            (data_dir / "uploads" / second.id.removeprefix("sha256:") / "adapter_config.json").read_text()
        )
        assert config["base_model_name_or_path"] == str(
            (data_dir / "uploads" / base.id.removeprefix("sha256:")).resolve()
        )
        shared_copy = data_dir / "runs" / "adapter-2"
        shutil.copytree(adapters[1], shared_copy, dirs_exist_ok=True)
        shared = _source(client, "lora-shared", data, shared_dir=data_dir)
        try:
            shared.refresh(str(shared_copy))
            assert _update(shared).negatives == _update_again(source, adapters[1]).negatives
        finally:
            shared.close()
    finally:
        source.close()


def _update_again(source: HttpNegativeSource, checkpoint: Path) -> Any:
    source.refresh(str(checkpoint))  # known to the service: nothing is sent
    assert source.transfers[-1].reused
    return _update(source)


def test_a_model_is_fetched_as_a_tar_once_then_answered_304(server: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    """``GET /v1/models/{name}/content``: the default model's files as a tar, with their content id as ETag; asked
    again with that id in If-None-Match, 304 and nothing sent."""
    from negminer.client.uploads import unpack_model

    client, _ = server
    name = client.get("/v1/models").json()["data"][0]["id"]
    r = client.get(f"/v1/models/{name}/content")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
    assert int(r.headers["content-length"]) == len(r.content)  # packed as it is sent, its length announced
    uid = r.headers["x-negminer-upload-id"]
    assert r.headers["etag"] == f'"{uid}"'
    (tmp_path / "m.tar").write_bytes(r.content)
    unpack_model(tmp_path / "m.tar", tmp_path / "m", max_bytes=10**9, max_files=100)
    assert upload_id(folder_manifest(tmp_path / "m")) == uid
    again = client.get(f"/v1/models/{name}/content", headers={"If-None-Match": f'"{uid}"'})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == f'"{uid}"'
    other = client.get(f"/v1/models/{name}/content", headers={"If-None-Match": '"sha256:' + "0" * 64 + '"'})
    assert other.status_code == 200 and other.content == r.content
    _problem(client.get("/v1/models/no-such-model/content"), 422, "invalid_request", "name")
