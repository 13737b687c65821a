"""The embedding cache: warm re-runs encode nothing, changed texts only, a changed checkpoint everything."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from negminer import ModelError
from negminer.index import EmbeddingCache, Encoder, fingerprint_model

TEXTS = [f"def function_{i}(x):\n    return x * {i}" for i in range(40)]


def test_warm_run_encodes_nothing_and_returns_same_vectors(tiny_model: Path, tmp_path: Path) -> None:
    cold = Encoder(tiny_model, device="cpu", cache_dir=tmp_path, show_progress=False)
    a = cold.encode(TEXTS)
    assert cold.stats.encoded == 40
    warm = Encoder(tiny_model, device="cpu", cache_dir=tmp_path, show_progress=False)
    b = warm.encode(TEXTS)
    assert warm.stats.encoded == 0 and warm.stats.cached == 40
    assert warm._model is None  # fully cached: the model was never loaded
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)


def test_changed_documents_only_are_reencoded(tiny_model: Path, tmp_path: Path) -> None:
    enc = Encoder(tiny_model, device="cpu", cache_dir=tmp_path, show_progress=False)
    enc.encode(TEXTS)
    changed = TEXTS[:35] + [t + "  # edited" for t in TEXTS[35:]]
    enc2 = Encoder(tiny_model, device="cpu", cache_dir=tmp_path, show_progress=False)
    out = enc2.encode(changed)
    assert enc2.stats.encoded == 5 and enc2.stats.cached == 35
    fresh = Encoder(tiny_model, device="cpu", show_progress=False).encode(changed)
    np.testing.assert_allclose(out, fresh, atol=1e-5)


def test_finetuned_checkpoint_never_reuses_base_vectors(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    ckpt = tmp_path / "ckpt"
    model = SentenceTransformer(str(tiny_model), device="cpu")
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # a "training step": same base model, other weights
    model.save(str(ckpt))
    assert fingerprint_model(ckpt) != fingerprint_model(tiny_model)
    base = Encoder(tiny_model, device="cpu", cache_dir=tmp_path / "c", show_progress=False)
    base.encode(TEXTS)
    tuned = Encoder(ckpt, device="cpu", cache_dir=tmp_path / "c", show_progress=False)
    tuned.encode(TEXTS)
    assert tuned.stats.encoded == 40 and tuned.stats.cached == 0
    # an in-memory model is fingerprinted from its weights as well
    assert fingerprint_model(model) != fingerprint_model(SentenceTransformer(str(tiny_model), device="cpu"))


def test_fingerprint_ignores_readme_but_not_config(tiny_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    (copy / "README.md").write_text("edited card")
    assert fingerprint_model(copy) == fingerprint_model(tiny_model)
    cfg = copy / "1_Pooling" / "config.json"
    cfg.write_text(cfg.read_text().replace('"mean"', '"max"'))
    assert fingerprint_model(copy) != fingerprint_model(tiny_model)


def test_prompt_and_kind_are_part_of_the_key(tiny_model: Path, tmp_path: Path) -> None:
    enc = Encoder(tiny_model, device="cpu", cache_dir=tmp_path, show_progress=False)
    enc.encode(TEXTS[:5], kind="document")
    enc.encode(TEXTS[:5], kind="query", prompt="query: ")
    assert enc.stats.encoded == 10


def test_broken_chunk_is_a_miss_not_an_error(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, {"k": 1})
    keys = [bytes([i]) * 16 for i in range(3)]
    cache.add(keys, np.eye(3, dtype=np.float32))
    chunk = next(cache.dir.glob("*.vecs.npy"))
    chunk.write_bytes(b"garbage")
    fresh = EmbeddingCache(tmp_path, {"k": 1})
    found, vecs = fresh.lookup(keys)
    assert not found.any() and vecs is None
    assert not list(cache.dir.glob("*.tmp"))


def test_bad_model_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(ModelError, match="not a sentence-transformers or transformers model folder"):
        Encoder(tmp_path / "empty", device="cpu").encode(["x"])


def test_blocks_are_cached_as_they_finish_and_report_progress(tiny_model: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    enc = Encoder(tiny_model, device="cpu", cache_dir=tmp_path, show_progress=False, block_size=16)
    out = enc.encode(TEXTS, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(16, 40), (32, 40), (40, 40)]
    assert len(list(enc.cache_dir.rglob("*.keys.npy"))) == 3  # one chunk per block
    whole = Encoder(tiny_model, device="cpu", show_progress=False).encode(TEXTS)
    np.testing.assert_allclose(out, whole, atol=1e-5)  # blocks and length sorting change nothing


def test_encoder_reports_progress_within_a_block_and_knows_the_default_name(tiny_model: Path) -> None:
    """Progress moves every few batches (an HTTP index build shows ``encoded`` growing), and the name
    all-MiniLM-L6-v2 means the bundled copy (offline)."""
    from negminer.index import Encoder, default_model_path, model_ref

    calls: list[tuple[int, int]] = []
    enc = Encoder(tiny_model, device="cpu", batch_size=2, show_progress=False)
    enc.encode([f"text number {i}" for i in range(20)], progress=lambda d, t: calls.append((d, t)))
    assert calls == [(8, 20), (16, 20), (20, 20)]
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(default_model_path()) / "tokenizer.json"))
    unnormalized = Encoder(SentenceTransformer(modules=[StaticEmbedding(tok, embedding_dim=8)], device="cpu"))
    raw = unnormalized.encode(["text number 1"], normalize=False)
    unit = unnormalized.encode(["text number 1"])
    assert abs(float(np.linalg.norm(raw)) - 1) > 1e-3 and abs(float(np.linalg.norm(unit)) - 1) < 1e-5
    assert model_ref("all-MiniLM-L6-v2") == model_ref("sentence-transformers/all-MiniLM-L6-v2") == default_model_path()
    assert Encoder("all-MiniLM-L6-v2").name == default_model_path()


def _open_files(folder: Path) -> tuple[int, int]:
    """(descriptors, memory maps) this process holds on files under ``folder`` (other threads' files aside)."""
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            fds += os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder))
    with open("/proc/self/maps", encoding="utf-8") as fh:
        maps = sum(1 for line in fh if str(folder) in line)
    return fds, maps


@pytest.mark.slow  # 5,000 encodes
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc")
def test_5000_distinct_queries_hold_a_constant_number_of_descriptors_maps_and_files(
    lexical_model: Path, tmp_path: Path
) -> None:
    """A server encodes one new query per request: the cache must not keep a descriptor or a memory map per
    request (it held one each, until EMFILE), and compaction keeps its files to O(log n) chunks."""
    enc = Encoder(lexical_model, device="cpu", cache_dir=tmp_path, show_progress=False)
    first = enc.encode(["query number 0"], kind="query")
    before = _open_files(tmp_path)
    assert before == (0, 0)
    for i in range(1, 5000):
        enc.encode([f"query number {i}"], kind="query")
        if i in (100, 1000):
            assert _open_files(tmp_path) == before, i
    assert _open_files(tmp_path) == before
    cache = next(iter(enc._caches.values()))
    assert len(cache) == 5000 and cache.chunk_count <= 3 * 7  # at most FANOUT-1 chunks a level below 4**7
    assert len(list(cache.dir.glob("*.npy"))) == 2 * cache.chunk_count
    warm = Encoder(lexical_model, device="cpu", cache_dir=tmp_path, show_progress=False)
    again = warm.encode([f"query number {i}" for i in (0, 17, 4999)], kind="query")
    assert warm.stats.encoded == 0 and warm._model is None
    np.testing.assert_array_equal(again[0], first[0])
    fresh = Encoder(lexical_model, device="cpu", show_progress=False).encode(["query number 17", "query number 4999"])
    np.testing.assert_allclose(again[1:], fresh, atol=1e-6)
    assert _open_files(tmp_path) == before


def test_compaction_keeps_every_vector_and_drops_duplicates(tmp_path: Path) -> None:
    """Chunks merged level by level hold each key once with its vector; a second process's view of the folder
    (written before the merge) finds the merged chunk when its files are gone."""
    from negminer.index._cache import text_key

    rng = np.random.default_rng(0)
    cache = EmbeddingCache(tmp_path, {"model": "x"})
    other = EmbeddingCache(tmp_path, {"model": "x"})
    texts = [f"text {i}" for i in range(300)]
    vecs = rng.standard_normal((300, 8)).astype(np.float32)
    cache.add([text_key(t) for t in texts[:3]], vecs[:3])
    assert other.lookup([text_key(texts[0])])[0].all()  # other has read the folder before the merges
    for i in range(3, 300, 3):
        cache.add([text_key(t) for t in texts[i : i + 3]], vecs[i : i + 3])
    cache.add([text_key(texts[5])], vecs[5:6])  # a duplicate key (another process encoded it too)
    assert cache.chunk_count < 10 and len(cache) <= 301
    for reader in (cache, other, EmbeddingCache(tmp_path, {"model": "x"})):
        found, got = reader.lookup([text_key(t) for t in texts] + [text_key("never seen")])
        assert found[:300].all() and not found[300]
        np.testing.assert_array_equal(got, vecs)


def test_long_texts_are_clipped_by_characters_to_exactly_the_tokens_the_model_reads(tiny_model: Path) -> None:
    """Encoding, counting and /tokenize cost what the kept tokens cost: a text is cut on whitespace to a window
    holding its first (or last) max_seq_length tokens, found by tokenizing windows that double. The cut changes
    no token the model reads, so vectors equal those of the whole text."""
    import random

    enc = Encoder(tiny_model, device="cpu", show_progress=False)
    tok, limit = enc.model.tokenizer, enc.max_tokens
    assert limit == 64
    rng = random.Random(0)
    words = ["alpha", "beta,", "gamma.", "naïve", "x" * 40, "1234567890123", "  ", "\n", "(delta)", "épée", "日本語"]
    texts = [" ".join(rng.choice(words) for _ in range(n)) for n in (2000, 9000, 40000)] + ["z" * 20000 + " tail"]
    for side in ("right", "left"):
        clipped = enc.clip(texts, side=side)
        for full, cut in zip(texts, clipped):
            assert len(cut) < len(full) or full.startswith("z")
            a = tok(full, add_special_tokens=False, verbose=False)["input_ids"]
            b = tok(cut, add_special_tokens=False, verbose=False)["input_ids"]
            assert (a[:limit] == b[:limit]) if side == "right" else (a[-limit:] == b[-limit:])
    whole = enc.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(enc.encode(texts), whole, atol=1e-6)
    read = [limit, limit, limit, 4]  # a 20,000-character word is one [UNK]
    assert [len(s) for s in enc.token_spans(texts)] == read
    assert enc.token_counts(texts) == read
    assert [c > limit for c in enc.token_counts(texts, truncate=False)] == [True, True, True, False]
    assert enc.clip(["short text"]) == ["short text"]
