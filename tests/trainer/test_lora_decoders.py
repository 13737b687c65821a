"""LoRA (peft) and decoder embedders: only the adapter trains, the results load with sentence-transformers, are
served by /v1/embeddings and refresh an index; decoders pool their last token and, where transformers allows it,
attend both ways. Tiny random models built in the tests (nothing downloaded)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from negminer import ConfigError, Encoder, build_demo, mine
from negminer.trainer import TrainConfig, train
from tests.conftest import make_tiny_decoder, train_config


@pytest.fixture(scope="module")
def small():
    return build_demo(60)


def _cfg(tmp_path: Path, model: Path, name: str = "run", **kw) -> TrainConfig:
    return train_config(tmp_path, model, name, **{"learning_rate": 5e-3, "warmup_ratio": 0.0, **kw})


def _vectors(path: str, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu").encode(texts, normalize_embeddings=True)


@pytest.mark.slow
def test_lora_trains_only_the_adapter_and_its_results_load(small, tiny_model: Path, tmp_path: Path) -> None:
    res = train(small, _cfg(tmp_path, tiny_model, negatives="refresh", lora_r=4))
    info = res.model
    assert info["lora"] == {"r": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": ["query", "key", "value"]}
    assert 0 < info["trainable_parameters"] < info["parameters"] / 50
    assert re.search(r"LoRA r=4 on query, key, value\); saved the adapter \(\d+\.\d KiB\)", res.model_summary())
    final = Path(res.model_path)
    assert info["saved"]["kind"] == "adapter" and (final / "adapter_config.json").is_file()
    assert info["saved"]["bytes"] == (final / "adapter_model.safetensors").stat().st_size
    assert info["saved"]["bytes"] < (tiny_model / "model.safetensors").stat().st_size / 20
    # a refresh encoded with the base model plus the adapter of that step
    assert [r["step"] for r in res.refreshes] == [0, 2]
    assert (tmp_path / "run" / "refresh" / "step-2" / "adapter_config.json").is_file()
    texts = list(small.queries[:4])
    trained, base = _vectors(str(final), texts), _vectors(str(tiny_model), texts)
    assert not np.allclose(trained, base, atol=1e-4)
    np.testing.assert_allclose(Encoder(str(final), device="cpu", cache_dir=None).encode(texts), trained, atol=1e-5)

    merged = train(small, _cfg(tmp_path, tiny_model, "merged", lora_r=4, lora_merge=True, negatives="none"))
    assert merged.model["saved"]["kind"] == "merged" and not (Path(merged.model_path) / "adapter_config.json").exists()
    after, before = (
        load_file(str(Path(merged.model_path) / "model.safetensors")),
        load_file(str(tiny_model / "model.safetensors")),
    )
    assert set(after) == set(before)  # a plain model: no adapter keys left
    changed = {k for k in before if not np.allclose(after[k].numpy(), before[k].numpy())}
    assert changed and all(any(t in k for t in ("query", "key", "value")) for k in changed), changed


def test_lora_modules_the_model_lacks_are_refused_naming_those_it_has(small, tiny_model: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, tiny_model, lora_r=4, lora_target_modules=["q_proj"])
    with pytest.raises(ConfigError, match=r"lora_target_modules: the model has no modules q_proj; .*query.*value"):
        train(small, cfg)


@pytest.mark.slow
def test_a_decoder_embedder_mines_trains_refreshes_and_is_served(small, tiny_decoder: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from negminer.service import ServiceSettings, create_app

    enc = Encoder(str(tiny_decoder), device="cpu", cache_dir=None)
    texts = ["a short one", "a much longer text than the first one, padded less"]
    together = enc.encode(texts)
    apart = np.vstack([enc.encode([t]) for t in texts])
    np.testing.assert_allclose(together, apart, atol=1e-5)  # the last real token, whatever the padding
    result = mine(small, enc, num_negatives=2, show_progress=False)
    assert result.report.queries == len(small)

    full = train(small, _cfg(tmp_path, tiny_decoder, "full", negatives="refresh"))
    assert full.model["decoder"] and full.model["pooling"] == "lasttoken" and full.model["lora"] is None
    lora = train(small, _cfg(tmp_path, tiny_decoder, "lora", negatives="refresh", lora_r=2))
    assert lora.model["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    q = list(small.queries[:3])
    for res in (full, lora):
        assert [r["step"] for r in res.refreshes] == [0, 2]
        settings = ServiceSettings(
            data_dir=Path(res.output_dir) / "svc", cache_dir=tmp_path / "svc", model=res.model_path, device="cpu"
        )
        with TestClient(create_app(settings)) as c:
            r = c.post("/v1/embeddings", json={"input": q, "encoding_format": "float"})
            assert r.status_code == 200, r.text
            served = np.array([d["embedding"] for d in r.json()["data"]])
            np.testing.assert_allclose(served, _vectors(res.model_path, q), atol=1e-5)
            docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(small.corpus_texts[:20])]
            assert c.post("/v1/indexes", json={"name": "docs", "documents": docs}).status_code in (200, 201, 202)
            c.app.state.registry.wait()
            r = c.post("/v1/indexes/docs/refresh", json={"model": res.model_path})
            assert r.status_code in (200, 202), r.text
            c.app.state.registry.wait()
            hits = c.post("/v1/indexes/docs/search", json={"queries": q[:1], "top_k": 3}).json()
            assert len(hits["results"][0]) == 3


@pytest.mark.slow
def test_a_bare_decoder_folder_pools_its_last_token(small, tiny_decoder: Path, tmp_path: Path) -> None:
    bare = tiny_decoder.parent / f"{tiny_decoder.name}-qwen2"  # the transformers folder the fixture built on
    res = train(small, _cfg(tmp_path, bare, max_steps=1, negatives="none"))
    assert res.model["decoder"] and res.model["pooling"] == "lasttoken"


@pytest.mark.slow
def test_bidirectional_attention_where_transformers_has_it(small, tiny_decoder: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    with pytest.raises(ConfigError, match=r"bidirectional: Qwen2Config .* has no bidirectional attention"):
        train(small, _cfg(tmp_path, tiny_decoder, bidirectional=True))
    gemma = make_tiny_decoder(tmp_path / "gemma", seed=0, family="gemma3")
    res = train(small, _cfg(tmp_path, gemma, "bi", max_steps=1, negatives="none", bidirectional=True, lora_r=2))
    model = SentenceTransformer(res.model_path, device="cpu")
    assert model[0].model.config.use_bidirectional_attention is True

    def first_token(m, text: str) -> np.ndarray:
        return m.encode([text], output_value="token_embeddings")[0][1].numpy()

    # the first word's vector sees the last word: bidirectional; the causal base model's does not
    assert not np.allclose(first_token(model, "alpha beta gamma"), first_token(model, "alpha beta delta"), atol=1e-5)
    causal = SentenceTransformer(str(gemma), device="cpu")
    np.testing.assert_allclose(
        first_token(causal, "alpha beta gamma"), first_token(causal, "alpha beta delta"), atol=1e-5
    )
