"""Embedding with a sentence-transformers model, through the on-disk cache.

The cache key of a model is a fingerprint of its *weights* (and the files that shape its output: tokenizer,
pooling, prompts), never its name: a fine-tuned checkpoint of the same base model must not reuse stale vectors.
A model given as a folder is fingerprinted from its files without loading it, so a fully cached re-run never
loads the model at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from negminer._errors import ConfigError, ModelError
from negminer._io import ScratchDir, atomic_path, load_npy, scratch_dir
from negminer._settings import DEFAULT_MODEL_NAMES, default_model_path
from negminer.index._cache import EmbeddingCache, text_key

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "DEFAULT_MODEL_NAMES",
    "Encoder",
    "EncodeStats",
    "check_model",
    "default_model_path",
    "fingerprint_model",
    "model_ref",
]

logger = logging.getLogger("negminer")

_SKIP_SUFFIXES = (".md", ".gitattributes", ".gitignore")


def model_ref(model: str | os.PathLike[str] | None) -> str:
    """Where to load ``model`` from: the bundled copy for ``None`` and for all-MiniLM-L6-v2's names (so the name
    that ``/v1/models`` and job objects show works offline), else the folder or Hub name as given."""
    if model is None or (str(model) in DEFAULT_MODEL_NAMES and not Path(model).exists()):
        return default_model_path()
    return str(model)


MODEL_FILES = ("modules.json", "config.json")  # a sentence-transformers or a transformers model folder
ADAPTER_CONFIG = "adapter_config.json"  # PEFT's: a LoRA adapter over the base model the file names


def is_adapter_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a sentence-transformers folder whose transformer is a PEFT adapter (LoRA training's
    output without ``lora_merge``; sentence-transformers loads it, with peft installed, as its base model
    with the adapter applied): ``modules.json`` beside ``adapter_config.json``."""
    folder = Path(path)
    return (folder / ADAPTER_CONFIG).is_file() and (folder / "modules.json").is_file()


def _adapter_base(path: Path) -> str:
    import json

    try:
        base = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path / ADAPTER_CONFIG}: unreadable or names no base_model_name_or_path ({exc})") from exc
    if not isinstance(base, str) or not base:
        raise ModelError(f"{path / ADAPTER_CONFIG}: base_model_name_or_path is empty")
    return base


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a model (sentence-transformers' ``modules.json`` or transformers'
    ``config.json``)."""
    folder = Path(path)
    return folder.is_dir() and any((folder / f).is_file() for f in MODEL_FILES)


def check_model(model: str | os.PathLike[str] | None, param: str = "model") -> str:
    """Refuse, before any work, a model that cannot load here: a folder without a model in it, or a Hub name
    that is not in the local Hugging Face cache while downloads are off (``HF_HUB_OFFLINE=1``, negminer's rule).
    Returns :func:`model_ref`'s answer. A Hub name with downloads on is left to the loader."""
    ref = model_ref(model)
    path = Path(ref)
    if path.exists():
        if is_model_folder(path):
            return ref
        raise ModelError(f"{param}: {ref!r} is not a model folder (no modules.json or config.json)", param=param)
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.is_offline_mode():
        cached = (
            any(isinstance(try_to_load_from_cache(ref, name), str) for name in MODEL_FILES)
            if ref.count("/") <= 1
            else False
        )
        if not cached:
            raise ModelError(
                f"{param}: {ref!r} is neither a model folder nor in the Hugging Face cache, and downloads are off "
                f"(HF_HUB_OFFLINE=1). The bundled model is {DEFAULT_MODEL_NAMES[0]} (leave the option out to use it), "
                "or give a folder that holds a sentence-transformers model",
                param=param,
            )
    return ref


def _fingerprint_dir(path: Path) -> str:
    h = hashlib.sha256(b"negminer-model-dir-v1")
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not p.name.endswith(_SKIP_SUFFIXES)
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and "checkpoint-" not in str(p.relative_to(path))
    )
    if not files:
        raise ModelError(f"{path}: folder holds no model files")
    for p in files:
        h.update(str(p.relative_to(path)).encode())
        h.update(b"\0")
        with open(p, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def fingerprint_model(model: SentenceTransformer | str | os.PathLike[str]) -> str:
    """A sha256 over a model's weights and output-shaping configuration.

    A folder is hashed from its files (README and hidden files excluded); a loaded model from its state dict,
    module layout, prompts and max sequence length.
    """
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if not p.is_dir():
            raise ModelError(f"{model}: not a model folder")
        if is_adapter_folder(p):  # the adapter's vectors depend on its base's weights too
            base = Path(_adapter_base(p))
            own = _fingerprint_dir(p)
            return hashlib.sha256(f"{own}:{fingerprint_model(base) if base.is_dir() else base}".encode()).hexdigest()
        return _fingerprint_dir(p)
    import torch

    h = hashlib.sha256(b"negminer-model-mem-v1")
    h.update(repr([type(m).__name__ for m in model]).encode())
    h.update(repr(sorted((getattr(model, "prompts", None) or {}).items())).encode())
    h.update(repr(getattr(model, "max_seq_length", None)).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class EncodeStats:
    """What one or more ``encode`` calls did: texts read from the cache, texts encoded, seconds spent encoding."""

    cached: int = 0
    encoded: int = 0
    encode_seconds: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def _truncation_side(model: SentenceTransformer, side: str) -> Iterator[None]:
    """Truncate texts on ``side`` during the block (the tokenizer's setting, restored after)."""
    if side == "right":
        yield
        return
    tok = getattr(model, "tokenizer", None)
    if tok is None or not hasattr(tok, "truncation_side"):
        raise ConfigError("this model's tokenizer only truncates on the right", param="truncation_direction")
    before = tok.truncation_side
    tok.truncation_side = side
    try:
        yield
    finally:
        tok.truncation_side = before


_SPACE = re.compile(r"\s")


def _offsets(tok: Any, text: str) -> list[tuple[int, int]] | None:
    """Character spans of ``text``'s tokens (no special tokens); None for a tokenizer that gives no offsets."""
    if hasattr(tok, "encode_batch"):  # a bare tokenizers.Tokenizer
        return [tuple(o) for o in tok.encode(text, add_special_tokens=False).offsets]
    if not getattr(tok, "is_fast", False):
        return None
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    return [(int(a), int(b)) for a, b in enc["offset_mapping"]]


def _clip(tok: Any, text: str, limit: int, window: int, left: bool) -> str:
    """``text`` cut on whitespace to the part that holds its first (``left``: last) ``limit`` tokens; the window
    of characters tokenized doubles until it holds more than ``limit`` tokens and such a cut."""
    while window < len(text):
        part = text[-window:] if left else text[:window]
        spans = _offsets(tok, part)
        if spans is None:
            return text
        if len(spans) > limit:
            if left:
                start = spans[-limit][0]
                cuts = [m.start() for m in _SPACE.finditer(part, 0, start)]
                if cuts:
                    return part[cuts[-1] :]
            else:
                m = _SPACE.search(part, spans[limit - 1][1])
                if m is not None:
                    return part[: m.start()]
        window *= 2
    return text


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


POOL_MIN_TEXTS = 2048  # fewer texts are encoded in this process (starting a pool costs a model load per process)


def _resolve_devices(devices: list[str] | str | None) -> list[str] | None:
    """``all``: every CUDA device, else two CPU processes; a number: that many CPU processes; a comma list."""
    if devices is None:
        return None
    if isinstance(devices, str):
        if devices == "all":
            import torch

            n = torch.cuda.device_count()
            return [f"cuda:{i}" for i in range(n)] if n else ["cpu"] * 2
        if devices.isdigit():
            return ["cpu"] * int(devices)
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    if not devices:
        raise ConfigError("name at least one device", param="devices")
    return list(devices)


class Encoder:
    """Encodes texts with a sentence-transformers model into L2-normalized float32 vectors, with caching.

    Args:
        model: a model folder, a Hugging Face model name, a loaded ``SentenceTransformer``, or None for the
            bundled all-MiniLM-L6-v2.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
        batch_size: texts per forward pass; sentence-transformers sorts texts by length within a call.
        cache_dir: embedding cache folder; None disables caching.
        max_seq_length: override of the model's maximum sequence length (part of the cache key).
        precision: ``auto`` (fp16 on CUDA, fp32 on CPU), ``fp32`` or ``fp16``.
        show_progress: tqdm progress bars while encoding.
        block_size: texts encoded (and cached) per block.
        devices: encode on several devices at once through sentence-transformers' multi-process pool (one process
            per entry, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``; ``"all"``: every GPU, else two CPU
            processes), for encodes of at least ``POOL_MIN_TEXTS`` texts; None: this process only.
    """

    def __init__(
        self,
        model: SentenceTransformer | str | os.PathLike[str] | None = None,
        *,
        device: str = "auto",
        batch_size: int = 64,
        cache_dir: str | os.PathLike[str] | None = None,
        max_seq_length: int | None = None,
        precision: Literal["auto", "fp32", "fp16"] = "auto",
        show_progress: bool = True,
        block_size: int = 8192,
        devices: list[str] | str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        self.block_size = block_size
        self._model: SentenceTransformer | None = None
        self._model_ref: str | None = None
        if model is None or isinstance(model, (str, os.PathLike)):
            self._model_ref = model_ref(model)
        else:
            self._model = model
        self.device = _resolve_device(device)
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_seq_length = max_seq_length
        if precision == "auto":
            precision = "fp16" if self.device.startswith("cuda") else "fp32"
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be auto, fp32 or fp16, got {precision!r}")
        self.precision = precision
        self.show_progress = show_progress
        self._fingerprint: str | None = None
        self._caches: dict[tuple[Any, ...], EmbeddingCache] = {}
        self._lock = threading.RLock()  # one forward pass at a time: requests share the model and its tokenizer
        self.stats = EncodeStats()
        self.devices = _resolve_devices(devices)
        self._pool: Any = None  # sentence-transformers' multi-process pool

    def close(self) -> None:
        """Stop the multi-process pool, if one was started (it is also stopped when the process exits)."""
        if self._pool is not None:
            from sentence_transformers import SentenceTransformer

            SentenceTransformer.stop_multi_process_pool(self._pool)
            self._pool = None

    def _pool_for(self, total: int, truncation: str) -> Any:
        """The multi-process pool for an encode of ``total`` texts, started on first use; None: encode here."""
        if self.devices is None or len(self.devices) < 2 or total < POOL_MIN_TEXTS or truncation != "right":
            return None
        if self._pool is None:
            logger.info("encoding with a pool of %d processes: %s", len(self.devices), ", ".join(self.devices))
            self._pool = self.model.start_multi_process_pool(target_devices=list(self.devices))
        return self._pool

    @property
    def name(self) -> str:
        """The model's path or name as given."""
        if self._model_ref is not None:
            return self._model_ref
        card = getattr(self._model, "model_card_data", None)
        return str(getattr(card, "base_model", None) or type(self._model).__name__)

    @property
    def model_ref(self) -> str | None:
        """Where the model is loaded from (a folder or Hub name); None for a model object given as such."""
        return self._model_ref

    @property
    def fingerprint(self) -> str:
        """sha256 of the model's weights and configuration (see :func:`fingerprint_model`)."""
        if self._fingerprint is None:
            if self._model is None and self._model_ref is not None and Path(self._model_ref).is_dir():
                self._fingerprint = fingerprint_model(self._model_ref)
            else:
                self._fingerprint = fingerprint_model(self.model)
        return self._fingerprint

    @property
    def model(self) -> SentenceTransformer:
        """The loaded model (loaded on first use)."""
        if self._model is None:
            self._model = self._load(self._model_ref or default_model_path())
        return self._model

    def _load(self, ref: str) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        local = Path(ref).exists()
        if local and not is_model_folder(ref):
            raise ModelError(
                f"{ref}: not a sentence-transformers or transformers model folder (no modules.json or config.json)"
            )
        try:
            model = SentenceTransformer(ref, device=self.device, local_files_only=local)
        except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear error
            raise ModelError(f"cannot load model {ref!r}: {type(exc).__name__}: {exc}") from exc
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        if self.precision == "fp16":
            model.half()
        return model

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else None
        if dim is None:
            dim = self.model.get_sentence_embedding_dimension()
        if dim is None:
            raise ModelError(f"{self.name}: the model does not say its embedding dimension")
        return int(dim)

    def _cache(
        self, kind: str, prompt: str | None, prompt_name: str | None, normalize: bool, truncation: str
    ) -> EmbeddingCache | None:
        if self.cache_dir is None:
            return None
        key = (kind, prompt, prompt_name, normalize, truncation)
        if key not in self._caches:
            namespace: dict[str, object] = {
                "fingerprint": self.fingerprint,
                "kind": kind,
                "prompt": prompt,
                "prompt_name": prompt_name,
                "max_seq_length": self.max_seq_length,
                "precision": self.precision,
                "normalize": normalize,
            }
            if truncation != "right":  # the default keeps the keys of existing caches
                namespace["truncation"] = truncation
            self._caches[key] = EmbeddingCache(self.cache_dir, namespace)
        return self._caches[key]

    @property
    def max_tokens(self) -> int | None:
        """Tokens per text that the model reads (longer texts are truncated); None: no limit (static models)."""
        limit = getattr(self.model, "max_seq_length", None)
        return int(limit) if limit and limit != float("inf") else None

    def clip(self, texts: Sequence[str], *, side: str = "right", tokens: int | None = None) -> list[str]:
        """Each text cut, by characters, to a prefix (``side="left"``: a suffix) that still holds every token the
        model reads (the first or last ``tokens``, default :attr:`max_tokens`), so that tokenizing and encoding
        a 2 MB text costs what its kept tokens cost, not what the whole text does. Exact: the cut falls on
        whitespace after the last kept token (the tokenizers split words there), found by tokenizing a window
        that doubles until it holds enough tokens. Texts of a few thousand characters, models without a limit
        and tokenizers without character offsets are left whole."""
        limit = tokens if tokens is not None else self.max_tokens
        if not limit:
            return list(texts)
        budget = max(4096, 16 * limit)
        if all(len(t) <= budget for t in texts):
            return list(texts)
        with self._lock:
            tok = self.model.tokenizer
            return [t if len(t) <= budget else _clip(tok, t, limit, budget, side == "left") for t in texts]

    def token_counts(self, texts: list[str], *, truncate: bool = True) -> list[int]:
        """Tokens of each text as the model reads it (special tokens included, padding not), for usage figures;
        ``truncate=False``: before truncation, for refusing over-long inputs, counted up to one token past the
        model's limit (a count above :attr:`max_tokens` means "longer than the model reads")."""
        if not texts:
            return []
        limit = self.max_tokens
        texts = self.clip(texts, tokens=None if truncate or not limit else limit + 1)
        with self._lock:
            model = self.model
            if truncate:  # preprocess: sentence-transformers 6's name for tokenize (deprecated)
                prepare = model.preprocess if hasattr(model, "preprocess") else model.tokenize
                features = prepare(list(texts))
                if "attention_mask" in features:
                    return [int(x) for x in features["attention_mask"].sum(dim=1).tolist()]
                if "offsets" in features:  # EmbeddingBag input (static models): one flat id list, row offsets
                    bounds = [*features["offsets"].tolist(), int(features["input_ids"].numel())]
                    return [b - a for a, b in zip(bounds, bounds[1:])]
            tok = model.tokenizer
            if hasattr(tok, "encode_batch"):  # a bare tokenizers.Tokenizer (static embedding models)
                return [len(e.ids) for e in tok.encode_batch(list(texts))]
            return [
                len(x) for x in tok(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
            ]

    def token_spans(
        self, texts: list[str], *, add_special_tokens: bool = True
    ) -> list[list[tuple[int, str, bool, int | None, int | None]]]:
        """(id, token, special, start, stop) of each token of each text as the model reads it (truncated to
        :attr:`max_tokens`, as the model truncates), spans in characters of the text (None for special tokens);
        TEI's ``/tokenize``."""
        texts = self.clip(texts)
        limit = self.max_tokens
        out = []
        with self._lock:
            tok = self.model.tokenizer
            if hasattr(tok, "encode_batch"):  # a bare tokenizers.Tokenizer (static embedding models)
                for e in tok.encode_batch(list(texts), add_special_tokens=add_special_tokens):
                    special = {k for k, m in enumerate(e.special_tokens_mask) if m}
                    out.append(
                        [
                            (int(i), t, k in special, None if k in special else a, None if k in special else b)
                            for k, (i, t, (a, b)) in enumerate(zip(e.ids, e.tokens, e.offsets))
                        ][: limit or None]
                    )
                return out
            enc = tok(
                list(texts),
                add_special_tokens=add_special_tokens,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
                truncation=bool(limit),
                max_length=limit,
            )
            for ids, offsets, special in zip(enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"]):
                tokens = tok.convert_ids_to_tokens(ids)
                out.append(
                    [
                        (int(i), t, bool(s), None if s else int(a), None if s else int(b))
                        for i, t, (a, b), s in zip(ids, tokens, offsets, special)
                    ]
                )
        return out

    def resolve_prompt(
        self, kind: Literal["query", "document"], prompt: str | None = None, prompt_name: str | None = None
    ) -> str | None:
        """The prompt text ``encode(kind=..., prompt=..., prompt_name=...)`` puts before each text, as
        sentence-transformers' ``encode_query`` / ``encode_document`` choose it: ``prompt`` as given, else the
        model's prompt ``prompt_name`` (refused when it has none of that name), else the model's own ``query``
        prompt (``document``, ``passage`` or ``corpus`` for documents), else None (also for an empty one)."""
        if prompt is not None:
            return prompt
        prompts = getattr(self.model, "prompts", None) or {}
        if prompt_name is not None:
            self.check_prompt(prompt_name)
            return str(prompts[prompt_name])
        for name in ("query",) if kind == "query" else ("document", "passage", "corpus"):
            if name in prompts:
                return str(prompts[name]) or None  # sentence-transformers declares "" for models without
        return None

    def check_prompt(self, prompt_name: str | None, param: str = "prompt_name") -> None:
        """Refuse a prompt name the model does not declare (sentence-transformers would ignore it silently)."""
        if prompt_name is None:
            return
        prompts = getattr(self.model, "prompts", None) or {}
        if prompt_name not in prompts:
            have = ", ".join(sorted(prompts)) or "none"
            raise ConfigError(f"the model has no prompt {prompt_name!r} (its prompts: {have})", param=param)

    def encode(
        self,
        texts: list[str],
        *,
        kind: Literal["query", "document"] = "document",
        prompt: str | None = None,
        prompt_name: str | None = None,
        desc: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        normalize: bool = True,
        truncation: Literal["right", "left"] = "right",
    ) -> np.ndarray:
        """Encode ``texts`` into an (n, dim) float32 array (unit vectors unless ``normalize=False``); cached rows are
        not encoded again.

        ``kind`` picks ``encode_query`` or ``encode_document`` (so a model's default query / document prompts
        apply, as in sentence-transformers' ``mine_hard_negatives``). Texts to encode are sorted by length and
        encoded in blocks of ``block_size``; each block goes to the cache as soon as it is done (an interrupted
        encode of a large corpus keeps what it finished). ``progress(done, total)`` is called every few batches and
        the progress bar is named after ``desc`` ("Encoding corpus"). ``truncation="left"`` keeps the end of texts
        longer than the model's maximum length instead of their start.
        """
        if truncation not in ("right", "left"):
            raise ConfigError(f"must be right or left, got {truncation!r}", param="truncation_direction")
        cache = self._cache(kind, prompt, prompt_name, normalize, truncation)
        n = len(texts)
        found = np.zeros(n, dtype=bool)
        cached_vecs = None
        keys: list[bytes] = []
        if cache is not None and n:
            keys = [text_key(t) for t in texts]
            found, cached_vecs = cache.lookup(keys)
        missing = np.flatnonzero(~found)
        new_vecs = None
        t0 = time.perf_counter()
        if len(missing):
            self.check_prompt(prompt_name)
            missing = missing[np.argsort([-len(texts[i]) for i in missing], kind="stable")]
            new_vecs = self._encode_rows(
                texts, missing, keys, cache, kind, prompt, prompt_name, normalize, truncation, desc, progress
            )
        seconds = time.perf_counter() - t0
        self.stats.cached += int(found.sum())
        self.stats.encoded += len(missing)
        self.stats.encode_seconds += seconds
        self.stats.calls.append(
            {
                "kind": kind,
                "texts": n,
                "cached": int(found.sum()),
                "encoded": len(missing),
                "seconds": round(seconds, 3),
                "desc": desc,
            }
        )
        if cached_vecs is None and new_vecs is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        some = cached_vecs if cached_vecs is not None else new_vecs
        assert some is not None
        dim = some.shape[1]
        out = np.empty((n, dim), dtype=np.float32)
        if cached_vecs is not None:
            out[found] = cached_vecs
        if new_vecs is not None:
            out[missing] = new_vecs
        return out

    def scratch_dir(self, prefix: str) -> ScratchDir:
        """A temporary folder for large vector files: beside the cache (the same disk as the vectors it holds) when
        there is one, else the system's temporary folder. Folders of this prefix that a dead process left there
        are removed first (:func:`negminer._io.scratch_dir`)."""
        return scratch_dir(prefix, self.cache_dir)

    def encode_to(
        self,
        texts: Sequence[str],
        path: str | os.PathLike[str],
        *,
        rows_per_step: int = 1 << 16,
        progress: Callable[[int, int], None] | None = None,
        desc: str | None = None,
        **kw: Any,
    ) -> np.ndarray:
        """Encode ``texts`` (any sequence: a list, or texts read from disk by row) into the .npy file ``path``,
        ``rows_per_step`` texts at a time, and return it memory-mapped read-only: memory stays one step of texts
        and vectors whatever the corpus size. Options are those of :meth:`encode`; the file appears complete or
        not at all."""
        n = len(texts)
        path = Path(path)
        with atomic_path(path) as tmp:
            out: Any = None
            for start in range(0, n, rows_per_step):
                stop = min(n, start + rows_per_step)
                step = None if progress is None else (lambda d, t, s=start: progress(s + d, n))
                vecs = self.encode(list(texts[start:stop]), desc=desc, progress=step, **kw)
                if out is None:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, vecs.shape[1]))
                out[start:stop] = vecs
                if progress is not None:
                    progress(stop, n)
            if out is None:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.zeros((0, self.dim), dtype=np.float32))
            else:
                out.flush()
                del out
        return load_npy(path, mmap=True)

    def _encode_rows(
        self,
        texts: list[str],
        rows: np.ndarray,
        keys: list[bytes],
        cache: EmbeddingCache | None,
        kind: str,
        prompt: str | None,
        prompt_name: str | None,
        normalize: bool,
        truncation: str,
        desc: str | None,
        progress: Callable[[int, int], None] | None,
    ) -> np.ndarray:
        """Encode ``texts[rows]`` (sorted longest first) in steps of a few batches: a named progress bar and
        ``progress`` calls that move while a large block encodes; each block is cached when done."""
        from tqdm.auto import tqdm

        model = self.model
        fn = model.encode_query if kind == "query" else model.encode_document
        total = len(rows)
        pool = self._pool_for(total, truncation)
        step = self.batch_size * 4 if pool is None else self.batch_size * 4 * len(pool["processes"])
        extra: dict[str, Any] = {} if pool is None else {"pool": pool, "chunk_size": self.batch_size * 4}
        bar = tqdm(
            total=total,
            desc=f"Encoding {desc or ('queries' if kind == 'query' else 'documents')}",
            unit="text",
            disable=not self.show_progress or total <= self.batch_size,
            leave=False,
        )
        blocks, done = [], 0
        try:
            for start in range(0, total, self.block_size):
                block_rows = rows[start : start + self.block_size]
                parts = []
                for s in range(0, len(block_rows), step):
                    todo = self.clip([texts[i] for i in block_rows[s : s + step]], side=truncation)
                    with self._lock, _truncation_side(model, truncation):
                        vecs = fn(
                            todo,
                            batch_size=self.batch_size,
                            normalize_embeddings=normalize,
                            convert_to_numpy=True,
                            show_progress_bar=False,
                            prompt=prompt,
                            prompt_name=prompt_name,
                            **extra,
                        )
                    parts.append(np.asarray(vecs, dtype=np.float32))
                    done += len(todo)
                    bar.update(len(todo))
                    if progress is not None:
                        progress(done, total)
                vecs = np.concatenate(parts)
                if cache is not None:
                    cache.add([keys[i] for i in block_rows], vecs)
                blocks.append(vecs)
        finally:
            bar.close()
        return np.concatenate(blocks)
