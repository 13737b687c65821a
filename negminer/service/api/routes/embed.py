"""``POST /v1/embed`` in Text Embeddings Inference's request and response shape."""

from __future__ import annotations

from fastapi import APIRouter

from negminer.service.deps import RegistryDep, SettingsDep, StoreDep
from negminer.service.errors import problem_responses
from negminer.service.models import bad_param, resolve_model
from negminer.service.schemas import EmbedRequest

router = APIRouter(prefix="/v1", tags=["embed"], responses=problem_responses(422))


@router.post("/embed", response_model=list[list[float]])
def embed(body: EmbedRequest, registry: RegistryDep, settings: SettingsDep, models: StoreDep) -> list[list[float]]:
    """Embeddings of ``inputs`` (one string or a list). negminer's vectors are always L2-normalized and texts are
    always truncated to the model's maximum length, so ``normalize`` and ``truncate`` are accepted for TEI
    compatibility; ``normalize`` applies after ``dimensions`` cuts a vector."""
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    if not texts:
        raise bad_param("inputs", "must not be empty")
    if len(texts) > settings.max_batch:
        raise bad_param("inputs", f"at most {settings.max_batch} texts per request")
    if any(not t.strip() for t in texts):
        raise bad_param("inputs", "empty text")
    enc = registry.encoder(resolve_model(body.model, settings, models))
    vecs = enc.encode(texts, kind="document", prompt_name=body.prompt_name, desc="embed")
    if body.dimensions is not None:
        if body.dimensions > vecs.shape[1]:
            raise bad_param("dimensions", f"the model has {vecs.shape[1]} dimensions")
        vecs = vecs[:, : body.dimensions]
        if body.normalize:
            import numpy as np

            vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True).clip(min=1e-12)
    return vecs.tolist()
