"""The REST API in process (FastAPI's TestClient): every route, its errors, auth, limits and restarts."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from negminer.service import ServiceSettings, create_app

KEY = "k" * 24
DOCS = [{"id": f"d{i}", "text": f"document about topic number {i} and its details"} for i in range(30)]


def _client(tmp_path: Path, model: Path, **kw) -> TestClient:
    settings = ServiceSettings(
        data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", model=str(model), device="cpu", **kw
    )
    return TestClient(create_app(settings))


def _create(c: TestClient, name: str = "docs", headers: dict | None = None) -> dict:
    r = c.post("/v1/indexes", json={"name": name, "documents": DOCS}, headers=headers or {})
    assert r.status_code == 202, r.text
    c.app.state.registry.wait()
    return c.get(f"/v1/indexes/{name}", headers=headers or {}).json()


def test_health_ready_and_index_lifecycle(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        info = _create(c)
        assert info["status"] == "ready" and info["version"] == 1 and info["size"] == 30
        assert [i["name"] for i in c.get("/v1/indexes").json()["data"]] == ["docs"]
        r = c.post("/v1/indexes/docs/search", json={"queries": [DOCS[7]["text"]], "top_k": 3, "return_text": True})
        body = r.json()
        assert r.status_code == 200 and body["version"] == 1
        assert body["results"][0][0]["id"] == "d7" and body["results"][0][0]["text"] == DOCS[7]["text"]
        assert len(body["results"][0]) == 3
        assert c.delete("/v1/indexes/docs").json() == {"name": "docs", "deleted": True}
        assert c.get("/v1/indexes/docs").status_code == 404


def test_restart_serves_the_same_index(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        _create(c)
        before = c.post("/v1/indexes/docs/search", json={"queries": ["topic number 3"]}).json()
    with _client(tmp_path, lexical_model) as c:
        after = c.post("/v1/indexes/docs/search", json={"queries": ["topic number 3"]}).json()
    assert after == before


def test_errors_are_problem_json_with_the_field(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model, max_top_k=50, max_batch=4, max_body_bytes=4096) as c:
        _create(c)
        cases = [
            (c.get("/v1/indexes/nope"), 404, "index_not_found", "name"),
            (c.post("/v1/indexes/docs/search", json={"queries": ["q"], "top_k": 51}), 422, "invalid_request", "top_k"),
            (c.post("/v1/indexes/docs/search", json={"queries": ["q"] * 5}), 422, "invalid_request", "queries"),
            (c.post("/v1/indexes/docs/search", json={"top_k": 3}), 422, "invalid_request", "queries"),
            (c.post("/v1/indexes", json={"name": "Bad Name!", "documents": DOCS[:1]}), 422, "invalid_request", "name"),
            (c.post("/v1/indexes", json={"name": "docs", "documents": DOCS[:1]}), 409, "index_exists", "name"),
            (
                c.post("/v1/indexes", json={"name": "x", "documents": [{"id": "a", "text": ""}]}),
                422,
                "invalid_request",
                "documents.0.text",
            ),
            (c.post("/v1/indexes", json={"name": "big", "documents": DOCS * 4}), 413, "payload_too_large", None),
            (
                c.post("/v1/indexes/docs/search", content=b"{not json", headers={"content-type": "application/json"}),
                422,
                "invalid_json",
                "body",
            ),
        ]
        for r, status, code, param in cases:
            assert r.status_code == status, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            body = r.json()
            assert body["status"] == status and body["code"] == code and body["title"] and body["detail"]
            if param is not None:
                assert body["param"] == param, body


def test_api_key_in_constant_time_on_all_but_health(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model, api_key=KEY) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        r = c.get("/v1/indexes")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["code"] == "unauthorized"
        assert c.get("/v1/indexes", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/embed", json={"inputs": "x"}).status_code == 401
        assert c.get("/v1/indexes", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_the_key_covers_the_docs_unless_public_docs(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model, api_key=KEY) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200, path
    with _client(tmp_path, lexical_model, api_key=KEY, public_docs=True) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        assert c.get("/v1/indexes").status_code == 401


def test_positives_are_capped_per_query_and_per_request(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model, max_positives_per_query=5, max_positives=8) as c:
        _create(c)
        many = {"query": "q", "positive_ids": [f"d{i}" for i in range(6)]}
        r = c.post("/v1/indexes/docs/mine", json={"queries": [{"query": "a"}, many]})
        assert r.status_code == 422 and r.json()["param"] == "queries.1.positive_ids", r.text
        four = {"query": "q", "positives": ["x"] * 4, "positive_ids": []}
        r = c.post("/v1/indexes/docs/mine", json={"queries": [four, four, {"query": "z", "positives": ["y"]}]})
        assert r.status_code == 422 and r.json()["param"] == "queries" and "at most 8" in r.json()["detail"]
        assert c.post("/v1/indexes/docs/mine", json={"queries": [four, four]}).status_code == 200


def test_answers_name_models_and_files_without_server_paths(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        r = c.post("/v1/indexes", json={"name": "x", "corpus_file": "../../etc/passwd"})
        assert r.status_code == 422 and str(tmp_path) not in r.text
        r = c.post("/v1/indexes", json={"name": "x", "corpus_file": "nope.jsonl"})
        assert r.status_code == 422 and str(tmp_path) not in r.text


def test_placeholder_api_key_refused() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        ServiceSettings(api_key="changeme")


def test_embed_in_tei_shape(tmp_path: Path, lexical_model: Path) -> None:
    import numpy as np

    with _client(tmp_path, lexical_model, max_batch=8) as c:
        one = c.post("/v1/embed", json={"inputs": "hello world"}).json()
        many = c.post("/v1/embed", json={"inputs": ["hello world", "other text"]}).json()
        assert len(one) == 1 and len(many) == 2 and len(many[0]) == 64
        assert np.allclose(one[0], many[0], atol=1e-6)
        assert abs(np.linalg.norm(many[1]) - 1) < 1e-5
        r = c.post("/v1/embed", json={"inputs": ["x"] * 9})
        assert r.status_code == 422 and r.json()["param"] == "inputs"


def test_documents_refresh_and_version_swap(tmp_path: Path, lexical_model: Path, tiny_model: Path) -> None:
    import shutil

    with _client(tmp_path, lexical_model) as c:
        _create(c)
        r = c.post(
            "/v1/indexes/docs/documents",
            json={
                "documents": [
                    {"id": "d3", "text": "replaced text about bananas"},
                    {"id": "new", "text": "a brand new document"},
                ]
            },
        )
        assert r.status_code == 202
        c.app.state.registry.wait()
        info = c.get("/v1/indexes/docs").json()
        assert info["version"] == 2 and info["size"] == 31 and info["operation"]["type"] == "documents"
        hit = c.post(
            "/v1/indexes/docs/search",
            json={"queries": ["replaced text about bananas"], "top_k": 1, "return_text": True},
        ).json()
        assert hit["version"] == 2 and hit["results"][0][0]["id"] == "d3"
        # refresh with another checkpoint inside the data dir; paths outside it are refused
        ckpt = tmp_path / "data" / "ckpt"
        shutil.copytree(tiny_model, ckpt)
        bad = c.post("/v1/indexes/docs/refresh", json={"model": "../../etc"})
        assert bad.status_code == 422 and bad.json()["param"] == "model"
        assert c.post("/v1/indexes/docs/refresh", json={"model": "ckpt"}).status_code == 202
        c.app.state.registry.wait()
        info = c.get("/v1/indexes/docs").json()
        assert info["version"] == 3 and info["operation"]["status"] == "succeeded"
        assert info["operation"]["encoded"] == info["operation"]["to_encode"] == 31  # a new model: all re-encoded
        assert info["model"] == "ckpt"  # named as the request named it: the folder inside the data dir
        again = c.post("/v1/indexes/docs/search", json={"queries": ["a brand new document"], "top_k": 1}).json()
        assert again["version"] == 3 and again["results"][0][0]["id"] == "new"


def test_search_by_vectors_and_metrics(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        _create(c)
        vec = c.post("/v1/embed", json={"inputs": DOCS[5]["text"]}).json()
        r = c.post("/v1/indexes/docs/search", json={"vectors": vec, "top_k": 1}).json()
        assert r["results"][0][0]["id"] == "d5"
        bad = c.post("/v1/indexes/docs/search", json={"vectors": [[0.1, 0.2]]})
        assert bad.status_code == 422 and bad.json()["param"] == "vectors"
        both = c.post("/v1/indexes/docs/search", json={"vectors": vec, "queries": ["x"]})
        assert both.status_code == 422
        text = c.get("/metrics").text
        assert 'negminer_index_documents{index="docs"} 30.0' in text
        assert 'negminer_requests_total{method="POST",route="/v1/indexes/{name}/search",status="200"}' in text


def test_mine_over_http_equals_in_process(tmp_path: Path, lexical_model: Path) -> None:
    from negminer import Encoder, RetrievalData, mine
    from negminer.mining import RECOMMENDED_FILTER

    with _client(tmp_path, lexical_model) as c:
        _create(c)
        queries = [{"query": f"topic number {i}", "positive_ids": [f"d{i}"]} for i in range(8)]
        data = RetrievalData(
            [d["id"] for d in DOCS],
            [d["text"] for d in DOCS],
            [f"q{i}" for i in range(8)],
            [q["query"] for q in queries],
            [[i] for i in range(8)],
        )
        for options in (
            {},  # the default: the same recommended filter as `negminer mine` and mine()
            {"filter": "none"},  # sentence-transformers' behaviour
            {"num_negatives": 3, "relative_margin": 0.05, "range_max": 20},
            {"num_negatives": 3, "positive_neighbourhood": 1.5, "neighbourhood_window": 20},
            {"num_negatives": 3, "positive_neighbourhood": 1.0, "adaptive_margin": 1.0},
        ):
            r = c.post(
                "/v1/indexes/docs/mine", json={"queries": queries, "options": options, "output_format": "triplet"}
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["version"] == 1
            assert set(body["report"]["removed"]) == set(body["report"]["filter"]["rules"])
            enc = Encoder(lexical_model, device="cpu", show_progress=False)
            local = mine(data, enc, show_progress=False, **options)
            assert body["report"]["filter"] == local.report.filter
            if not options:
                default = {"name": "recommended", "rules": RECOMMENDED_FILTER, "chosen_by": "default"}
                assert local.report.filter == default
            for i, res in enumerate(body["results"]):
                assert [n["id"] for n in res["negatives"]] == [d for d, _ in local.negatives_of(i)]
                assert [n["score"] for n in res["negatives"]] == pytest.approx([s for _, s in local.negatives_of(i)])
            assert body["report"]["removed"] == local.report.removed
            assert local.report.removed.get("positive_neighbourhood", 1) > 0  # the rule did act
            assert len(body["rows"]["negative"]) == sum(len(local.negatives_of(i)) for i in range(8))
        unknown = c.post("/v1/indexes/docs/mine", json={"queries": [{"query": "q", "positive_ids": ["zz"]}]})
        assert unknown.status_code == 422 and unknown.json()["param"] == "queries[0].positive_ids"
        typo = c.post("/v1/indexes/docs/mine", json={"queries": queries, "options": {"margin_typo": 1}})
        assert typo.status_code == 422 and typo.json()["param"] == "options.margin_typo"


def test_mine_searches_the_persisted_version_without_building_an_index(
    tmp_path: Path, lexical_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/mine searches the version on disk (texts read by row, vectors memory-mapped); a positive given as a text
    the index holds is that document (never its own negative); one the index lacks is scored, never a candidate."""
    import numpy as np

    from negminer.index import DiskTexts, VectorIndex

    with _client(tmp_path, lexical_model) as c:
        info = _create(c)
        assert info["kind"] == "flat" and info["recall"] == 1.0  # auto: exact for 30 documents
        assert info["operation"]["stage"] is None and info["operation"]["status"] == "succeeded"
        snap = c.app.state.registry.snapshot("docs")
        assert isinstance(snap.texts, DiskTexts) and isinstance(snap.corpus.vectors, np.memmap)

        def no_build(*a, **kw):  # type: ignore[no-untyped-def]
            raise AssertionError("/mine built an index")

        monkeypatch.setattr(VectorIndex, "for_vectors", no_build)
        queries = [
            {"query": "topic number 4", "positives": [DOCS[4]["text"]]},
            {"query": "topic number 5", "positives": ["a text that no document of the index has"]},
        ]
        r = c.post("/v1/indexes/docs/mine", json={"queries": queries, "options": {"num_negatives": 5}})
        assert r.status_code == 200, r.text
        first, second = r.json()["results"]
        assert "d4" not in [n["id"] for n in first["negatives"]] and len(first["negatives"]) == 5
        assert len(second["negatives"]) == 5 and all(n["id"].startswith("d") for n in second["negatives"])
        by_id = c.post(
            "/v1/indexes/docs/mine",
            json={"queries": [{"query": "topic number 4", "positive_ids": ["d4"]}], "options": {"num_negatives": 5}},
        ).json()["results"][0]
        assert by_id["negatives"] == first["negatives"] and by_id["positive_scores"] == first["positive_scores"]


def test_corpus_file_inside_the_data_dir_and_embed_dimensions(tmp_path: Path, lexical_model: Path) -> None:
    import json

    import numpy as np

    with _client(tmp_path, lexical_model) as c:
        corpus = tmp_path / "data" / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"_id": d["id"], "text": d["text"]}) + "\n" for d in DOCS))
        r = c.post("/v1/indexes", json={"name": "fromfile", "corpus_file": "corpus.jsonl"})
        assert r.status_code == 202, r.text
        c.app.state.registry.wait()
        assert c.get("/v1/indexes/fromfile").json()["size"] == 30
        escape = c.post("/v1/indexes", json={"name": "x", "corpus_file": "../../etc/passwd"})
        assert escape.status_code == 422 and escape.json()["param"] == "corpus_file"
        (tmp_path / "data" / "bad.jsonl").write_text('{"_id": "a", "text": "ok"}\n{"_id": "b"}\n')
        bad = c.post("/v1/indexes", json={"name": "y", "corpus_file": "bad.jsonl"})
        assert bad.status_code == 422 and bad.json()["param"] == "text" and "bad.jsonl:2" in bad.json()["detail"]
        both = c.post("/v1/indexes", json={"name": "z", "corpus_file": "corpus.jsonl", "documents": DOCS[:1]})
        assert both.status_code == 422 and both.json()["param"] == "documents"
        v = c.post("/v1/embed", json={"inputs": ["hello"], "dimensions": 16, "truncate": True}).json()
        assert len(v[0]) == 16 and abs(np.linalg.norm(v[0]) - 1) < 1e-5


def test_a_broken_index_on_disk_is_reported_not_fatal(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        _create(c)
    (tmp_path / "data" / "indexes" / "docs" / "index.json").write_text("{broken")
    with _client(tmp_path, lexical_model) as c:
        assert c.get("/readyz").status_code == 200
        info = c.get("/v1/indexes/docs").json()
        assert info["status"] == "failed" and info["error"]["code"] == "index_file_error"
        assert "index.json" in info["error"]["message"]
        r = c.post("/v1/indexes/docs/search", json={"queries": ["x"]})
        assert r.status_code == 409 and r.json()["code"] == "index_not_ready"


def test_a_model_an_index_depends_on_is_pinned(tmp_path: Path, lexical_model: Path) -> None:
    """Neither checkpoint rotation nor DELETE /v1/models removes a model an index was built or refreshed with."""
    import shutil

    from negminer.index._internal import pinned_models

    with _client(tmp_path, lexical_model) as c:
        folder = tmp_path / "data" / "models" / "ftjob-1" / "checkpoint-step-5"
        shutil.copytree(lexical_model, folder)
        c.app.state.store.register_model("ft:lexical:ftjob-1:ckpt-step-5", str(folder), "ftjob-1", kind="checkpoint")
        _create(c)
        c.post("/v1/indexes/docs/refresh", json={"model": "ft:lexical:ftjob-1:ckpt-step-5"})
        c.app.state.registry.wait()
        assert pinned_models(tmp_path / "data" / "indexes")[str(folder.resolve())] == ["docs"]
        r = c.delete("/v1/models/ft:lexical:ftjob-1:ckpt-step-5")
        assert r.status_code == 409 and "used by index docs" in r.json()["message"] and folder.is_dir()
        assert c.delete("/v1/indexes/docs").status_code == 200
        assert c.delete("/v1/models/ft:lexical:ftjob-1:ckpt-step-5").json()["deleted"] and not folder.exists()
        assert c.get("/v1/models/ft:lexical:ftjob-1:ckpt-step-5").status_code == 404


def test_embed_options_in_tei_and_openai_shapes(tmp_path: Path, tiny_model: Path) -> None:
    """normalize, truncate, truncation_direction, prompt_name and input_type do what TEI and OpenAI clients expect."""
    import numpy as np

    with _client(tmp_path, tiny_model) as c:
        long = " ".join(f"word{i}" for i in range(600))  # past the model's 256 tokens
        r = c.post("/v1/embed", json={"inputs": [long], "truncate": False})
        assert r.status_code == 422 and r.json()["param"] == "inputs" and "tokens" in r.json()["message"], r.text
        right = np.array(c.post("/v1/embed", json={"inputs": [long]}).json())
        left = np.array(c.post("/v1/embed", json={"inputs": [long], "truncation_direction": "Left"}).json())
        assert right.shape == left.shape and not np.allclose(right, left)  # the other end of the text was read
        r = c.post("/v1/embed", json={"inputs": "x", "prompt_name": "nope"})
        assert r.status_code == 422 and r.json()["param"] == "prompt_name", r.text
        r = c.post("/v1/embeddings", json={"input": ["a", "b"], "model": "tiny", "encoding_format": "float"})
        body = r.json()
        assert (
            r.status_code == 200 and [d["index"] for d in body["data"]] == [0, 1] and body["usage"]["total_tokens"] == 6
        )
        r = c.post("/v1/embeddings", json={"input": "a", "dimensions": 100000})
        assert r.status_code == 422 and r.json()["param"] == "dimensions"


def test_nul_characters_are_refused_naming_the_field(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        r = c.post("/v1/indexes", json={"name": "x", "documents": [{"id": "a", "text": "bad\u0000text"}]})
        assert r.status_code == 422 and r.json()["param"] == "documents.0.text", r.text
        r = c.post("/v1/fine_tuning/jobs", json={"training_file": "file-x", "metadata": {"k": "v\u0000"}})
        assert r.status_code == 422 and r.json()["param"] == "metadata", r.text


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 4 MB tmpfs as the data dir, to be filled (a real full disk; skipped where mounting is not allowed)."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk test needs a small file system")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_507_and_nothing_half_written_stays(
    full_disk: Path, tmp_path: Path, lexical_model: Path
) -> None:
    settings = ServiceSettings(data_dir=full_disk, cache_dir=tmp_path / "cache", model=str(lexical_model), device="cpu")
    with TestClient(create_app(settings)) as c:
        filler = full_disk / "filler"
        with open(filler, "wb") as fh:  # fill the disk to the last block
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        with contextlib.suppress(OSError), open(full_disk / "filler2", "wb") as fh:
            while True:
                fh.write(b"\0" * 512)
                fh.flush()
        rows = "".join(f'{{"query": "q{i}", "positive": "p{i}"}}\n' for i in range(5000)).encode()
        r = c.post("/v1/files", files={"file": ("train.jsonl", rows)})
        assert r.status_code == 507 and r.json()["code"] == "insufficient_storage", r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        r = c.post("/v1/indexes", json={"name": "docs", "documents": DOCS})
        assert r.status_code == 507, r.text
        assert c.get("/v1/indexes/docs").status_code == 404  # not accepted: nothing of it stays
        assert [p.name for p in (full_disk / "files").iterdir()] == []
        filler.unlink()
        (full_disk / "filler2").unlink(missing_ok=True)
        assert c.post("/v1/files", files={"file": ("train.jsonl", rows)}).status_code == 200


def test_mining_prompt_names_are_honoured_or_refused(tmp_path: Path, lexical_model: Path) -> None:
    with _client(tmp_path, lexical_model) as c:
        _create(c)
        q = [{"query": "topic number 3", "positive_ids": ["d3"]}]
        for field in ("query_prompt_name", "corpus_prompt_name"):
            r = c.post("/v1/indexes/docs/mine", json={"queries": q, "options": {field: "passage"}})
            assert r.status_code == 422 and r.json()["param"] == f"options.{field}", r.text
        ok = c.post("/v1/indexes/docs/mine", json={"queries": q, "options": {"query_prompt_name": "query"}})
        assert ok.status_code == 200, ok.text


def test_a_2mb_text_costs_what_the_model_reads(tmp_path: Path, tiny_model: Path) -> None:
    """/tokenize answers the tokens the model reads (its 64 here, not the 400,000 of the text), and
    /v1/embeddings of the same text equals the embedding of its kept part: the text was cut by characters before
    it was tokenized (Encoder.clip), so the work is bounded by what is kept."""
    import numpy as np

    text = " ".join(f"word{i % 997}" for i in range(250_000))[: 2 * 1024 * 1024 - 4096]
    with _client(tmp_path, tiny_model, max_body_bytes=4 * 1024 * 1024) as c:
        tokens = c.post("/tokenize", json={"inputs": text}).json()
        assert len(tokens) == 1 and len(tokens[0]) == 64 and tokens[0][0]["special"] and tokens[0][-1]["special"]
        kept = text[: tokens[0][-2]["stop"]]
        r = c.post("/v1/embeddings", json={"input": [text, kept], "encoding_format": "float"})
        body = r.json()
        assert r.status_code == 200 and body["usage"]["total_tokens"] == 128, body["usage"]
        a, b = (np.array(d["embedding"]) for d in body["data"])
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_the_page_is_served_with_a_content_security_policy_and_never_framed(
    tmp_path: Path, lexical_model: Path
) -> None:
    """/ui/ answers GET and HEAD with a CSP that allows only its own files (it builds the page with the DOM),
    nosniff, and X-Frame-Options DENY (its Cancel button must not be framed); API answers carry the last two."""
    with _client(tmp_path, lexical_model, api_key=KEY) as c:
        for method in ("GET", "HEAD"):
            r = c.request(method, "/ui/")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), (method, r.text)
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in c.get("/ui/").text  # no inline script for the policy to block
        for r in (c.get("/v1/indexes"), c.get("/v1/indexes", headers={"Authorization": f"Bearer {KEY}"})):
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


def test_a_lease_is_renewed_by_calls_and_an_expired_one_is_refused(tmp_path: Path, lexical_model: Path) -> None:
    """An index with ``expires_after`` lives while calls name it; past its lease a call gets 410 lease_expired
    (the index is deleted then, though the sweep had not come), later ones 404, and a restart gives a whole lease."""
    import time

    with _client(tmp_path, lexical_model) as c:
        r = c.post("/v1/indexes", json={"name": "short", "documents": DOCS, "expires_after": 1, "labels": {"a": "b"}})
        assert r.status_code == 202, r.text
        c.app.state.registry.wait()
        for _ in range(3):  # 1.5 s of calls, each renewing the 1 s lease
            time.sleep(0.5)
            info = c.get("/v1/indexes/short").json()
            assert info["status"] == "ready" and info["labels"] == {"a": "b"}
            assert info["expires_at"] >= int(time.time())
        assert [i["name"] for i in c.get("/v1/indexes", params={"label": "a=b"}).json()["data"]] == ["short"]
        assert c.get("/v1/indexes", params={"label": "a=c"}).json()["data"] == []
        r = c.post("/v1/indexes", json={"name": "kept", "documents": DOCS, "expires_after": 60})
        c.app.state.registry.wait()
        time.sleep(1.3)
        r = c.post("/v1/indexes/short/refresh", json={"model": str(lexical_model)})
        assert r.status_code == 410 and r.json()["code"] == "lease_expired" and r.json()["param"] == "name"
        assert c.get("/v1/indexes/short").status_code == 404
        assert not (tmp_path / "data" / "indexes" / "short").exists()
    with _client(tmp_path, lexical_model) as c:
        info = c.get("/v1/indexes/kept").json()
        assert info["expires_after"] == 60 and info["expires_at"] >= int(time.time()) + 59
