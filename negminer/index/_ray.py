"""Corpus encoding as a Ray Data pipeline: the texts the cache lacks -> an actor pool of encoders (one per GPU, or
per CPU slot) -> vectors written back as chunks of the embedding cache by the driver. An encode that follows
reads every vector from the cache, so everything downstream (index, mining) is the in-process path. Texts are
sorted longest first and batched exactly as :meth:`Encoder.encode` batches them, so the vectors are the same."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from negminer._errors import ConfigError
from negminer._ray import connect
from negminer.index._cache import text_key
from negminer.index._encoder import Encoder

__all__ = ["ray_encode"]

logger = logging.getLogger("negminer")


class _EncodeActor:
    """One model per actor, loaded once; encodes batches of texts without a cache."""

    def __init__(self, options: dict[str, Any], encode: dict[str, Any]) -> None:
        self.encoder = Encoder(**options, show_progress=False)
        self.encode = encode

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows: list[int] = []
        texts: list[str] = []
        for r, t in zip(batch["rows"], batch["texts"]):  # one item = one step of the in-process encode
            rows.extend(int(x) for x in r)
            texts.extend(str(x) for x in t)
        vecs = self.encoder.encode(texts, **self.encode)
        return {"row": np.asarray(rows, dtype=np.int64), "vector": vecs}


def ray_encode(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    address: str | bool,
    kind: str = "document",
    prompt: str | None = None,
    prompt_name: str | None = None,
    normalize: bool = True,
    actors: int | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Encode the ``texts`` that ``encoder``'s cache lacks on the Ray cluster at ``address`` and add them to the
    cache; returns what it did (texts encoded, actors, seconds). The encoder needs a cache folder and a model
    that the actors can load (a folder on a shared filesystem, or a Hub name)."""
    if encoder.cache_dir is None:
        raise ConfigError(
            "Ray encoding writes into the embedding cache: give the encoder a cache_dir", param="cache_dir"
        )
    ref = encoder.model_ref
    if ref is None:
        raise ConfigError(
            "Ray actors load the model by name or folder; this encoder holds a model object", param="model"
        )
    cache = encoder._cache(kind, prompt, prompt_name, normalize, "right")
    assert cache is not None
    t0 = time.perf_counter()
    keys = [text_key(t) for t in texts]
    have = cache.contains(keys)
    todo: dict[bytes, int] = {}
    for i in np.flatnonzero(~have):  # one row per distinct text, as the in-process encode
        todo.setdefault(keys[i], int(i))
    missing = np.fromiter(todo.values(), dtype=np.int64, count=len(todo))
    missing = missing[np.argsort([-len(texts[i]) for i in missing], kind="stable")]
    out: dict[str, Any] = {"texts": len(texts), "cached": int(have.sum()), "encoded": len(missing), "actors": 0}
    if len(missing) == 0:
        return out
    ray = connect(address)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    slots = gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_actors = max(1, min(actors or slots, -(-len(missing) // (encoder.batch_size * 4))))
    out["actors"] = n_actors
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = show_progress
    options = {
        "model": str(ref) if not Path(ref).exists() else str(Path(ref).resolve()),
        "device": "cuda" if gpus else "cpu",
        "batch_size": encoder.batch_size,
        "max_seq_length": encoder.max_seq_length,
        "precision": encoder.precision if gpus else "fp32",
    }
    encode = {"kind": kind, "prompt": prompt, "prompt_name": prompt_name, "normalize": normalize}
    step = encoder.batch_size * 4  # the in-process encode's step: the same batches, hence the same vectors
    items = [
        {"rows": missing[s : s + step].tolist(), "texts": [texts[i] for i in missing[s : s + step]]}
        for s in range(0, len(missing), step)
    ]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), n_actors * 4))
    ds = ds.map_batches(
        _EncodeActor,
        fn_constructor_kwargs={"options": options, "encode": encode},
        batch_size=1,
        concurrency=n_actors,
        num_gpus=1 if gpus else 0,
        num_cpus=0 if gpus else 1,
        batch_format="numpy",
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        rows = batch["row"]
        cache.add([keys[int(i)] for i in rows], np.asarray(batch["vector"], dtype=np.float32))
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
