"""Embedding and search: cached encoder, FAISS / NumPy vector indexes, versioned storage on disk."""

from negminer.index._cache import EmbeddingCache
from negminer.index._encoder import (
    DEFAULT_MODEL_NAMES,
    Encoder,
    EncodeStats,
    check_model,
    default_model_path,
    fingerprint_model,
    model_ref,
)
from negminer.index._plan import (
    AUTO_FLAT_MAX,
    IndexConfig,
    IndexPlan,
    default_memory_budget,
    exact_search,
    plan_index,
    recall_at_k,
)
from negminer.index._ray import ray_encode
from negminer.index._store import CorpusIndex, IndexStore, build_index
from negminer.index._texts import DiskTexts
from negminer.index._vector_index import VectorIndex, faiss_available, faiss_gpu_count

__all__ = [
    "AUTO_FLAT_MAX",
    "DEFAULT_MODEL_NAMES",
    "DiskTexts",
    "IndexConfig",
    "IndexPlan",
    "CorpusIndex",
    "EmbeddingCache",
    "EncodeStats",
    "Encoder",
    "IndexStore",
    "VectorIndex",
    "build_index",
    "check_model",
    "default_memory_budget",
    "exact_search",
    "default_model_path",
    "faiss_available",
    "faiss_gpu_count",
    "fingerprint_model",
    "model_ref",
    "plan_index",
    "ray_encode",
    "recall_at_k",
]
