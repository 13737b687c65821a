"""Model names the service accepts, shared by every route that takes a ``model``.

A model is the service's default (``NEGMINER_MODEL`` or the bundled all-MiniLM-L6-v2, by name or omitted), a name
registered by a fine-tuning job (``ft:<base>:<suffix>:<job>`` and its checkpoints ``...:ckpt-step-N``), or a model
folder inside the data dir. Anything else, and any path that escapes the data dir, is a 422 naming the field.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi.exceptions import RequestValidationError

from negminer._settings import ServiceSettings
from negminer.client.schemas import ListPage
from negminer.index import DEFAULT_MODEL_NAMES
from negminer.jobs import JobStore

T = TypeVar("T")

__all__ = [
    "bad_param",
    "default_model",
    "inside_data_dir",
    "list_page",
    "model_prompts",
    "public_model_name",
    "resolve_model",
]

DEFAULT_NAME = DEFAULT_MODEL_NAMES[0]


def bad_param(param: str, why: str, where: str = "body") -> RequestValidationError:
    """A 422 problem naming ``param`` (dotted for nested fields)."""
    return RequestValidationError([{"loc": (where, *param.split(".")), "msg": why, "type": "value_error"}])


def list_page(
    fetch: Callable[[], tuple[list[dict[str, Any]], bool]], convert: Callable[[dict[str, Any]], T], unknown: str
) -> ListPage[T]:
    """One page from the store (``{object: "list", data, has_more}``); an unknown ``after`` cursor is a 422."""
    try:
        rows, more = fetch()
    except KeyError:
        raise bad_param("after", f"no {unknown}", "query") from None
    return ListPage[Any](data=[convert(r) for r in rows], has_more=more)


def default_model(settings: ServiceSettings) -> tuple[str, str]:
    """(name, path) of the service's default model."""
    if settings.model:
        return Path(settings.model).name or settings.model, settings.model
    from negminer.index import default_model_path

    return DEFAULT_NAME, default_model_path()


def inside_data_dir(
    relative: str,
    settings: ServiceSettings,
    param: str,
    *,
    kind: Literal["file", "dir"] = "file",
    suffixes: tuple[str, ...] = (),
) -> Path:
    """Resolve a path field against the data dir: it must stay inside (``..``, absolute paths elsewhere and links
    out are refused) and be an existing readable regular file (``kind="file"``, with one of ``suffixes`` if given)
    or folder. Anything else (a directory, a FIFO, a device) is a 422 naming ``param`` (NUL characters are
    refused by the request schemas)."""
    if not relative.strip():
        raise bad_param(param, "empty path")
    root = Path(settings.data_dir).resolve()
    try:
        path = (root / relative).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name too long
        raise bad_param(param, f"cannot resolve the path ({type(exc).__name__})") from None
    if not path.is_relative_to(root):
        raise bad_param(param, "path escapes the data dir")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise bad_param(param, f"no {'file' if kind == 'file' else 'folder'} {relative!r} in the data dir") from None
    except OSError as exc:
        raise bad_param(param, f"cannot read {relative!r}: {exc.strerror}") from None
    if kind == "file" and not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, socket or device)"
        raise bad_param(param, f"{relative!r} is {what}")
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        raise bad_param(param, f"{relative!r} is not a folder")
    if not os.access(path, os.R_OK | (os.X_OK if kind == "dir" else 0)):
        raise bad_param(param, f"{relative!r} is not readable by the service")
    if suffixes and path.suffix.lower() not in suffixes:
        raise bad_param(param, f"{relative!r}: unsupported type (use {', '.join(suffixes)})")
    return path


def resolve_model(model: str | None, settings: ServiceSettings, store: JobStore | None, param: str = "model") -> str:
    """The folder of model ``model`` (see the module docstring)."""
    name, path = default_model(settings)
    if model is None or model in (name, settings.model, path):  # by name, or the path the service itself uses
        return path
    if not settings.model and model in DEFAULT_MODEL_NAMES:  # sentence-transformers/all-MiniLM-L6-v2
        return path
    registered = store.get_model(model) if store is not None else None
    if registered is not None:
        if not Path(registered["path"]).is_dir():
            raise bad_param(param, f"the files of model {model!r} are gone")
        return str(registered["path"])
    if model.startswith("ft:"):
        raise bad_param(param, f"no model named {model!r} (GET /v1/models lists them)")
    try:
        folder = inside_data_dir(model, settings, param, kind="dir")
    except RequestValidationError:
        raise bad_param(param, f"no model named {model!r} and no model folder of that name in the data dir") from None
    if not any((folder / f).is_file() for f in ("modules.json", "config.json")):
        raise bad_param(
            param, f"{model!r} is a folder of the data dir but not a model (no modules.json or config.json)"
        )
    return str(folder)


def model_prompts(path: str) -> dict[str, str]:
    """The prompts a sentence-transformers model folder declares (``config_sentence_transformers.json``)."""
    import json

    try:
        config = json.loads((Path(path) / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    prompts = config.get("prompts") if isinstance(config, dict) else None
    return dict(prompts) if isinstance(prompts, dict) else {}


def public_model_name(path: str, settings: ServiceSettings, store: JobStore | None) -> str:
    """The name ``GET /v1/models`` gives the model in folder ``path`` (the inverse of :func:`resolve_model`): the
    service's default by name, a registered model by its name, a data-dir folder by its relative path. Answers
    name models this way, never by the server's folders."""
    name, default_path = default_model(settings)
    if path in (default_path, settings.model):
        return name
    if store is not None:
        registered = store.model_named_by_path(path)
        if registered is not None:
            return registered
    return settings.without_paths(path)
