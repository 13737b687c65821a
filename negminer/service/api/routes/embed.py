"""``POST /v1/embed`` in Text Embeddings Inference's request and response shape."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from negminer.service.api.routes.indexes import _limit
from negminer.service.deps import RegistryDep, SettingsDep

router = APIRouter(prefix="/v1", tags=["embed"])


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: str | list[str]
    normalize: bool = True
    prompt_name: str | None = None
    model: str | None = Field(None, description="default: the service's model")


@router.post("/embed")
def embed(body: EmbedRequest, registry: RegistryDep, settings: SettingsDep) -> list[list[float]]:
    """Embeddings of ``inputs`` (one string or a list), L2-normalized (negminer's vectors always are)."""
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    if not texts:
        raise _limit("inputs", "must not be empty")
    if len(texts) > settings.max_batch:
        raise _limit("inputs", f"at most {settings.max_batch} texts per request")
    if any(not t.strip() for t in texts):
        raise _limit("inputs", "empty text")
    from negminer.index import default_model_path

    enc = registry.encoder(body.model or settings.model or default_model_path())
    vecs = enc.encode(texts, kind="document", prompt_name=body.prompt_name, desc="embed")
    return vecs.tolist()
