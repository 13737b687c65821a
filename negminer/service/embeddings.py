"""Embedding requests of both shapes the service speaks, Text Embeddings Inference's ``/v1/embed`` and OpenAI's
``/v1/embeddings``, through one function: the checks (batch size, empty texts, over-long texts when truncation is
off, prompt names, dimensions), the encoder of the named model, token counts for ``usage``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from negminer._errors import ConfigError, ModelError
from negminer._settings import ServiceSettings
from negminer.index import Encoder
from negminer.jobs import JobStore
from negminer.service.model_names import resolve_model
from negminer.service.registry import IndexRegistry

__all__ = ["Embedded", "embed_texts"]


def _refuse(param: str, why: str) -> ConfigError:
    """A refusal naming the request field ``param`` (the service answers 422 invalid_request)."""
    return ConfigError(why, param=param)


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # (n, dim) float32
    texts: list[str]
    encoder: Encoder

    @property
    def tokens(self) -> int:
        """Tokens the model read (after truncation, special tokens included): counted only when asked (usage)."""
        return sum(self.encoder.token_counts(self.texts))


def embed_texts(
    texts: list[str],
    *,
    registry: IndexRegistry,
    settings: ServiceSettings,
    store: JobStore,
    model: str | None,
    param: str,
    kind: Literal["query", "document"] = "document",
    prompt_name: str | None = None,
    normalize: bool = True,
    truncate: bool = True,
    truncation: Literal["left", "right"] = "right",
    dimensions: int | None = None,
) -> Embedded:
    """Embed ``texts`` with ``model`` (a name from ``GET /v1/models``; None: the service's model).

    ``dimensions`` keeps the first N dimensions (Matryoshka models), normalized again when ``normalize``;
    ``truncate=False`` refuses texts longer than the model reads instead of cutting them (as TEI does)."""
    if not texts:
        raise _refuse(param, "must not be empty")
    if len(texts) > settings.max_batch:
        raise _refuse(param, f"at most {settings.max_batch} texts per request")
    for i, t in enumerate(texts):
        if not t.strip():
            raise _refuse(param, f"text {i} is empty")
    path = resolve_model(model, settings, store)
    enc = registry.encoder(path)
    limit = enc.max_tokens
    if not truncate and limit:
        for i, c in enumerate(enc.token_counts(texts, truncate=False)):  # counted to one past the limit
            if c > limit:
                raise _refuse(param, f"text {i} has more tokens than the model's {limit} (or truncate=true)")
    if dimensions is not None and dimensions > enc.dim:
        raise _refuse("dimensions", f"the model has {enc.dim} dimensions")
    enc.check_prompt(prompt_name)  # per request: one request's bad name must not fail the batch it joins
    vecs = registry.encode(
        path, texts, kind=kind, prompt_name=prompt_name, desc="embed", normalize=normalize, truncation=truncation
    )
    if not np.isfinite(vecs).all():  # never answer NaN or infinity (JSON cannot carry them either)
        raise ModelError(f"model {model or 'default'!r} embeds these texts to NaN or infinite values")
    if dimensions is not None:
        vecs = vecs[:, :dimensions]
        if normalize:
            vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True).clip(min=1e-12)
    return Embedded(np.ascontiguousarray(vecs, dtype=np.float32), texts, enc)
