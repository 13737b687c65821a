"""Teacher rescoring (RocketQA-style denoising): a second model re-scores the candidates and the positives before
the margins apply, so a stronger judge decides what is a false negative."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from negminer.index import Encoder

__all__ = ["Teacher", "BiEncoderTeacher", "CrossEncoderTeacher", "as_teacher"]


class Teacher(Protocol):
    """Scores (query, document) pairs given as text; higher is more relevant."""

    name: str

    def score(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """For each query, the scores of its documents."""
        ...


class BiEncoderTeacher:
    """A second bi-encoder (through its own embedding cache): cosine similarity of the teacher's vectors."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.name = f"bi-encoder:{encoder.name}"

    def score(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[np.ndarray]:
        uniq = list(dict.fromkeys(t for row in docs for t in row))
        pos = {t: i for i, t in enumerate(uniq)}
        dvec = self.encoder.encode(uniq, kind="document", desc="teacher documents") if uniq else None
        qvec = self.encoder.encode(list(queries), kind="query", desc="teacher queries")
        out = []
        for qi, row in enumerate(docs):
            if not row or dvec is None:
                out.append(np.zeros(0, dtype=np.float32))
                continue
            out.append(dvec[[pos[t] for t in row]] @ qvec[qi])
        return out


class CrossEncoderTeacher:
    """A sentence-transformers ``CrossEncoder``: one forward pass per (query, document) pair."""

    def __init__(self, cross_encoder: Any, batch_size: int = 64) -> None:
        self.cross_encoder = cross_encoder
        self.batch_size = batch_size
        card = getattr(cross_encoder, "model_card_data", None)
        self.name = f"cross-encoder:{getattr(card, 'base_model', None) or type(cross_encoder).__name__}"

    def score(self, queries: Sequence[str], docs: Sequence[Sequence[str]]) -> list[np.ndarray]:
        pairs = [(q, d) for q, row in zip(queries, docs) for d in row]
        flat = (
            np.asarray(
                self.cross_encoder.predict(pairs, batch_size=self.batch_size, show_progress_bar=False), dtype=np.float32
            )
            if pairs
            else np.zeros(0, dtype=np.float32)
        )
        out, start = [], 0
        for row in docs:
            out.append(flat[start : start + len(row)])
            start += len(row)
        return out


def as_teacher(obj: Any) -> Teacher:
    """Wrap an :class:`Encoder`, a ``SentenceTransformer`` or a ``CrossEncoder`` as a teacher."""
    if obj is None or hasattr(obj, "score") and hasattr(obj, "name"):
        return obj
    if isinstance(obj, Encoder):
        return BiEncoderTeacher(obj)
    from sentence_transformers import CrossEncoder, SentenceTransformer

    if isinstance(obj, CrossEncoder):
        return CrossEncoderTeacher(obj)
    if isinstance(obj, SentenceTransformer):
        return BiEncoderTeacher(Encoder(obj, show_progress=False))
    raise TypeError(f"teacher must be an Encoder, SentenceTransformer or CrossEncoder, got {type(obj).__name__}")
