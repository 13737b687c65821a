"""Prompts end to end: mining, training, evaluation, refresh, the saved model and /v1/embeddings put the same text
before a query, so a model whose vectors change with the prompt encodes a query identically on every path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from negminer import ConfigError, build_demo
from negminer.index import Encoder
from negminer.trainer import TrainConfig, train
from tests.conftest import train_config

QUERY, DOC = "query: ", "passage: "


def _cfg(tmp_path: Path, model: Path, **kw) -> TrainConfig:
    return train_config(tmp_path, model, **{"learning_rate": 1e-3, **kw})


@pytest.mark.slow
def test_every_path_encodes_a_query_with_the_same_prompt(tmp_path: Path, tiny_model: Path, monkeypatch) -> None:
    from fastapi.testclient import TestClient
    from sentence_transformers import SentenceTransformer

    import negminer.trainer.losses._base as base_loss
    from negminer.service import ServiceSettings, create_app

    data = build_demo(60)
    calls: list[tuple[str, str, list[str], np.ndarray]] = []
    encode = Encoder.encode

    def spy(self: Encoder, texts, **kw):
        out = encode(self, texts, **kw)
        calls.append((str(self._model_ref), kw.get("kind", "document"), list(texts), out))
        return out

    batches: list[list[int]] = []
    embed = base_loss.embed_columns

    def spy_embed(model, features):
        mask = features[0]["attention_mask"].bool()
        batches.extend(row[m].tolist() for row, m in zip(features[0]["input_ids"], mask))
        return embed(model, features)

    monkeypatch.setattr(Encoder, "encode", spy)
    monkeypatch.setattr(base_loss, "embed_columns", spy_embed)
    res = train(
        data, _cfg(tmp_path, tiny_model, negatives="refresh", mining={"query_prompt": QUERY, "corpus_prompt": DOC})
    )

    by_model: dict[str, SentenceTransformer] = {}

    def st(path: str) -> SentenceTransformer:
        return by_model.setdefault(path, SentenceTransformer(path, device="cpu"))

    queries = [c for c in calls if c[1] == "query"]
    models = {m for m, *_ in queries}
    # evaluation and mining with the base model, evaluation and mining with the refreshed one, the final evaluation
    assert str(tiny_model) in models and any("refresh" in m for m in models) and res.model_path in models
    for path, _, texts, vecs in queries:
        want = st(path).encode([QUERY + t for t in texts[:5]], normalize_embeddings=True)
        np.testing.assert_allclose(vecs[:5], want, atol=1e-5, err_msg=path)
        unprompted = st(path).encode(texts[:5], normalize_embeddings=True)
        assert not np.allclose(vecs[:5], unprompted, atol=1e-3)  # the prompt changes the vectors
    for path, _, texts, vecs in (c for c in calls if c[1] == "document"):
        want = st(path).encode([DOC + t for t in texts[:3]], normalize_embeddings=True)
        np.testing.assert_allclose(vecs[:3], want, atol=1e-5, err_msg=path)

    # training read each query with the prompt: its token ids are those of the prompted text
    tok = st(str(tiny_model)).tokenizer
    prompted = {tuple(tok(QUERY + q)["input_ids"]) for q in data.queries}
    assert batches and all(tuple(ids) in prompted for ids in batches)

    # the saved model keeps the prompts: encode_query / encode_document and /v1/embeddings use them
    final = SentenceTransformer(res.model_path, device="cpu")
    assert final.prompts["query"] == QUERY and final.prompts["document"] == DOC
    q = list(data.queries[:3])
    np.testing.assert_allclose(
        final.encode_query(q, normalize_embeddings=True),
        final.encode([QUERY + t for t in q], normalize_embeddings=True),
        atol=1e-6,
    )
    settings = ServiceSettings(
        data_dir=tmp_path / "data", cache_dir=tmp_path / "c2", model=res.model_path, device="cpu"
    )
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/embeddings", json={"input": q, "input_type": "query", "encoding_format": "float"})
        assert r.status_code == 200, r.text
        served = np.array([d["embedding"] for d in r.json()["data"]])
    np.testing.assert_allclose(served, final.encode_query(q, normalize_embeddings=True), atol=1e-5)


def test_a_prompt_name_the_model_lacks_is_refused_before_training(tmp_path: Path, tiny_model: Path) -> None:
    cfg = _cfg(tmp_path, tiny_model, mining={"query_prompt_name": "nope"})
    with pytest.raises(ConfigError, match=r"mining.query_prompt_name: the model has no prompt 'nope'"):
        train(build_demo(40), cfg)
    assert not Path(cfg.output_dir).exists()


def test_the_models_own_prompts_are_the_default(tmp_path: Path, tiny_model: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model), device="cpu")
    model.prompts = {"query": "Instruct: find the answer\nQuery: ", "web": "web: "}
    path = tmp_path / "prompted"
    model.save(str(path))
    enc = Encoder(str(path), device="cpu", cache_dir=None)
    assert enc.resolve_prompt("query") == "Instruct: find the answer\nQuery: "
    assert enc.resolve_prompt("document") is None and enc.resolve_prompt("document", prompt_name="web") == "web: "
    assert enc.resolve_prompt("query", "given ") == "given "
    with pytest.raises(ConfigError, match="no prompt 'nope'"):
        enc.resolve_prompt("query", prompt_name="nope")
