"""Shared fixtures: tiny random BERT models with the real all-MiniLM-L6-v2 tokenizer, small data sets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_tiny_model(path: Path, seed: int, hidden: int = 32, dropout: float = 0.1) -> Path:
    """Save a 2-layer random BERT sentence-transformer (mean pooling, normalized) to ``path``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from negminer.index import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    torch.manual_seed(seed)
    raw = path.parent / f"{path.name}-bert"
    BertModel(cfg).save_pretrained(raw)
    return _sentence_model(raw, tok, "mean", path)


def _sentence_model(raw: Path, tok, pooling: str, path: Path) -> Path:
    """The transformers folder ``raw`` (its tokenizer ``tok`` saved beside) as a sentence-transformers model with
    ``pooling`` and normalization, saved to ``path``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    tok.save_pretrained(raw)
    word = Transformer(str(raw), max_seq_length=64)
    model = SentenceTransformer(
        modules=[word, Pooling(word.get_embedding_dimension(), pooling), Normalize()], device="cpu"
    )
    model.save(str(path))
    return path


def make_tiny_decoder(path: Path, seed: int, family: str = "qwen2", hidden: int = 32) -> Path:
    """Save a 2-layer random decoder embedder (Qwen2-style, or Gemma 3 text, which transformers lets attend both
    ways) with the bundled tokenizer, last-token pooling and normalization, as sentence-transformers builds
    Qwen3-Embedding; built from a config, nothing downloaded."""
    import torch
    from transformers import AutoTokenizer, Gemma3TextConfig, Gemma3TextModel, Qwen2Config, Qwen2Model

    from negminer.index import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    shape = {
        "vocab_size": tok.vocab_size,
        "hidden_size": hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 2 * hidden,
        "max_position_embeddings": 128,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.cls_token_id,
        "eos_token_id": tok.sep_token_id,
        "attention_dropout": 0.0,
    }
    torch.manual_seed(seed)
    raw = path.parent / f"{path.name}-{family}"
    if family == "gemma3":
        Gemma3TextModel(Gemma3TextConfig(**shape, head_dim=hidden // 2)).save_pretrained(raw)
    else:
        Qwen2Model(Qwen2Config(**shape)).save_pretrained(raw)
    return _sentence_model(raw, tok, "lasttoken", path)


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("models") / "decoder", seed=0)


def make_lexical_model(path: Path, seed: int, dim: int = 64) -> Path:
    """Save a bag-of-words model (random static token embeddings, mean-pooled, normalized) to ``path``.

    Unlike a random transformer its scores mean something (shared tokens), so margins behave as on real data."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding
    from tokenizers import Tokenizer

    from negminer.index import default_model_path

    tok = Tokenizer.from_file(str(Path(default_model_path()) / "tokenizer.json"))
    torch.manual_seed(seed)
    static = StaticEmbedding(tok, embedding_dim=dim)
    SentenceTransformer(modules=[static, Normalize()], device="cpu").save(str(path))
    return path


@pytest.fixture(scope="session")
def lexical_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lexical_model(tmp_path_factory.mktemp("models") / "lexical", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "teacher", seed=1)


@pytest.fixture(scope="session")
def demo_small():
    from negminer import build_demo

    return build_demo(250)


def train_config(tmp_path: Path, model: Path, name: str = "run", **kw):
    """A TrainConfig for a few CPU steps of a tiny model in ``tmp_path / name`` (``kw`` overrides)."""
    from negminer.trainer import TrainConfig

    base = {
        "output_dir": str(tmp_path / name),
        "model": str(model),
        "batch_size": 4,
        "max_steps": 3,
        "refresh_every": 2,
        "num_negatives": 1,
        "cache_dir": str(tmp_path / "cache"),
        "device": "cpu",
        "show_progress": False,
    }
    return TrainConfig(**{**base, **kw})


def write_jsonl(path: Path, rows: list[dict] | list[str]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    write_jsonl(
        root / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Paris", "text": "Paris is the capital of France."},
            {"_id": "d2", "title": "", "text": "Berlin is the capital of Germany."},
            {"_id": "d3", "text": "The Seine flows through Paris."},
            {"_id": "d4", "text": "Bread is baked in ovens."},
        ],
    )
    write_jsonl(
        root / "queries.jsonl",
        [
            {"_id": "q1", "text": "capital of France"},
            {"_id": "q2", "text": "capital of Germany"},
        ],
    )
    (root / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t1\nq2\td2\t1\nq2\td4\t0\n", encoding="utf-8"
    )
    return root
