"""Embeddings in the two shapes clients already speak: Text Embeddings Inference's (``POST /v1/embed``, and TEI's
own routes on the server root: ``POST /embed``, ``POST /``, ``GET /info``, ``POST /tokenize``, so
``huggingface_hub.InferenceClient(model=base_url)`` works unchanged) and OpenAI's ``POST /v1/embeddings`` (the
``openai`` SDK, LangChain, LlamaIndex)."""

from __future__ import annotations

import base64

from fastapi import APIRouter

from negminer import __version__
from negminer.client.schemas import (
    EmbeddingObject,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    TeiInfo,
    TeiToken,
    TokenizeRequest,
    Usage,
)
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


# -- Text Embeddings Inference's own routes, on the server root ---------------------------------------------------
# huggingface_hub's ``InferenceClient(model="http://host:port").feature_extraction(...)`` posts to the URL itself;
# TEI answers ``POST /`` and ``POST /embed`` the same way, and describes itself at ``GET /info``.
tei_router = APIRouter(tags=["embed"], responses=problem_responses(422))


@tei_router.post("/embed", response_model=list[list[float]])
def tei_embed(body: EmbedRequest, registry: RegistryDep, settings: SettingsDep, store: StoreDep) -> list[list[float]]:
    """TEI's ``POST /embed`` (the same as ``/v1/embed``)."""
    return embed(body, registry, settings, store)


@tei_router.post("/", response_model=list[list[float]])
def tei_root(body: EmbedRequest, registry: RegistryDep, settings: SettingsDep, store: StoreDep) -> list[list[float]]:
    """TEI's ``POST /`` on an embedding model: what huggingface_hub's ``feature_extraction`` sends to a URL."""
    return embed(body, registry, settings, store)


@tei_router.get("/info", response_model=TeiInfo)
def tei_info(registry: RegistryDep, settings: SettingsDep) -> TeiInfo:
    """TEI's ``GET /info``: the service's model, its dimensions and the longest input it reads."""
    name, path = default_model(settings)
    enc = registry.encoder(path)
    return TeiInfo(
        model_id=name,
        dimensions=enc.dim,
        max_input_length=enc.max_tokens or 0,
        max_client_batch_size=settings.max_batch,
        version=__version__,
    )


@tei_router.post("/tokenize", response_model=list[list[TeiToken]])
def tei_tokenize(body: TokenizeRequest, registry: RegistryDep, settings: SettingsDep) -> list[list[TeiToken]]:
    """TEI's ``POST /tokenize``: the tokens the service's model reads for each input, with their character spans."""
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    if not texts or len(texts) > settings.max_batch:
        raise bad_param("inputs", f"1 to {settings.max_batch} texts")
    enc = registry.encoder(default_model(settings)[1])
    return [
        [TeiToken(id=i, text=t, special=sp, start=a, stop=b) for i, t, sp, a, b in spans]
        for spans in enc.token_spans(texts, add_special_tokens=body.add_special_tokens)
    ]
