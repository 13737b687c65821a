"""Model names the service accepts, shared by every route that takes a ``model``.

A model is the service's default (``NEGMINER_MODEL`` or the bundled all-MiniLM-L6-v2, by name or omitted), a name
registered by a fine-tuning job (``ft:<base>:<suffix>:<job>`` and its checkpoints ``...:ckpt-step-N``), or a model
folder inside the data dir. Anything else, and any path that escapes the data dir, is a 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError

from negminer.service.config import ServiceSettings
from negminer.service.schemas import ListPage
from negminer.service.store import JobStore

T = TypeVar("T")

__all__ = ["bad_param", "default_model", "inside_data_dir", "list_page", "resolve_model"]

DEFAULT_NAME = "all-MiniLM-L6-v2"


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


def inside_data_dir(relative: str, settings: ServiceSettings, param: str) -> Path:
    """Resolve a path against the data dir; refuse one that escapes it (``..``, absolute elsewhere, links)."""
    root = Path(settings.data_dir).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise bad_param(param, "path escapes the data dir")
    return path


def resolve_model(model: str | None, settings: ServiceSettings, store: JobStore | None, param: str = "model") -> str:
    """The folder of model ``model`` (see the module docstring)."""
    name, path = default_model(settings)
    if model is None or model in (name, settings.model, path):  # by name, or the path the service itself uses
        return path
    registered = store.get_model(model) if store is not None else None
    if registered is not None:
        if not Path(registered["path"]).is_dir():
            raise bad_param(param, f"the files of model {model!r} are gone")
        return str(registered["path"])
    if model.startswith("ft:"):
        raise bad_param(param, f"no model named {model!r} (GET /v1/models lists them)")
    folder = inside_data_dir(model, settings, param)
    if not folder.is_dir():
        raise bad_param(param, f"no model named {model!r} and no model folder of that name in the data dir")
    return str(folder)
