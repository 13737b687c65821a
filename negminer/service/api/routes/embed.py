"""``POST /v1/embed`` in Text Embeddings Inference's request and response shape."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from negminer.service.deps import RegistryDep, SettingsDep, StoreDep
from negminer.service.models import bad_param, resolve_model

router = APIRouter(prefix="/v1", tags=["embed"])


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: str | list[str]
    normalize: bool = True
    truncate: bool = True
    prompt_name: str | None = None
    dimensions: int | None = Field(None, ge=1, description="keep the first N dimensions (Matryoshka models)")
    model: str | None = Field(None, description="a model name from GET /v1/models; default: the service's model")


@router.post("/embed")
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
