"""Embedding and search: cached encoder, FAISS / NumPy vector indexes, versioned storage on disk."""

from negminer.index._cache import EmbeddingCache
from negminer.index._encoder import (
    DEFAULT_MODEL_NAMES,
    Encoder,
    EncodeStats,
    default_model_path,
    fingerprint_model,
    model_ref,
)
from negminer.index._store import CorpusIndex, IndexStore, build_index
from negminer.index._vector_index import VectorIndex, faiss_available, faiss_gpu_count

__all__ = [
    "DEFAULT_MODEL_NAMES",
    "CorpusIndex",
    "EmbeddingCache",
    "EncodeStats",
    "Encoder",
    "IndexStore",
    "VectorIndex",
    "build_index",
    "default_model_path",
    "faiss_available",
    "faiss_gpu_count",
    "fingerprint_model",
    "model_ref",
]
