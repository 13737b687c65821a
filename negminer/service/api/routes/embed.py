"""Embeddings in the two shapes clients already speak: Text Embeddings Inference's ``POST /v1/embed`` (and
huggingface_hub's ``feature_extraction``) and OpenAI's ``POST /v1/embeddings`` (the ``openai`` SDK, LangChain,
LlamaIndex)."""

from __future__ import annotations

import base64

from fastapi import APIRouter

from negminer.client.schemas import EmbeddingObject, EmbeddingsRequest, EmbeddingsResponse, EmbedRequest, Usage
from negminer.service.api.params import bad_param
from negminer.service.deps import RegistryDep, SettingsDep, StoreDep
from negminer.service.embeddings import embed_texts
from negminer.service.errors import problem_responses
from negminer.service.model_names import default_model

router = APIRouter(prefix="/v1", tags=["embed"], responses=problem_responses(422))


@router.post("/embed", response_model=list[list[float]])
def embed(body: EmbedRequest, registry: RegistryDep, settings: SettingsDep, store: StoreDep) -> list[list[float]]:
    """TEI's ``/embed``: one vector per input. ``normalize=false`` returns the model's raw vectors;
    ``truncate=false`` refuses over-long texts; ``truncation_direction=left`` keeps the end of long texts."""
    out = embed_texts(
        [body.inputs] if isinstance(body.inputs, str) else body.inputs,
        registry=registry,
        settings=settings,
        store=store,
        model=body.model,
        param="inputs",
        kind=body.input_type,
        prompt_name=body.prompt_name,
        normalize=body.normalize,
        truncate=body.truncate,
        truncation=body.truncation_direction,
        dimensions=body.dimensions,
    )
    return out.vectors.tolist()


@router.post("/embeddings", response_model=EmbeddingsResponse)
def embeddings(
    body: EmbeddingsRequest, registry: RegistryDep, settings: SettingsDep, store: StoreDep
) -> EmbeddingsResponse:
    """OpenAI's ``/embeddings``: unit vectors as floats or base64 (little-endian float32, what the ``openai`` SDK
    asks for by default), ``usage`` counted with the model's tokenizer. Texts only: token arrays are refused
    (LangChain's ``OpenAIEmbeddings`` needs ``check_embedding_ctx_length=False``)."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if texts and not all(isinstance(t, str) for t in texts):
        raise bad_param("input", "token arrays are not supported; send the texts")
    out = embed_texts(
        [str(t) for t in texts],
        registry=registry,
        settings=settings,
        store=store,
        model=body.model,
        param="input",
        kind=body.input_type,
        prompt_name=body.prompt_name,
        dimensions=body.dimensions,
    )
    data = [
        EmbeddingObject(
            index=i,
            embedding=base64.b64encode(v.astype("<f4").tobytes()).decode()
            if body.encoding_format == "base64"
            else v.tolist(),
        )
        for i, v in enumerate(out.vectors)
    ]
    tokens = out.tokens
    return EmbeddingsResponse(
        data=data,
        model=body.model or default_model(settings)[0],
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    )
