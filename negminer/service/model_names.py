"""Model names the service accepts, shared by every route that takes a ``model``, and the names answers give.

A model is the service's default (``NEGMINER_MODEL`` or the bundled all-MiniLM-L6-v2, by name or omitted), a name
registered by a fine-tuning job (``ft:<base>:<suffix>:<job>`` and its checkpoints ``...:ckpt-step-N``), an upload id
(``sha256:...``, :mod:`negminer.service.uploads`), or a model folder inside the data dir, named relative to it. A
client never names a path on the server: an absolute path, and any path that escapes the data dir, is a 422 naming
the field, as is anything else unknown. Answers name a model the way ``GET /v1/models`` does, never by the server's
folder.
"""

from __future__ import annotations

from pathlib import Path

from negminer._errors import ConfigError
from negminer._settings import DEFAULT_MODEL_NAMES, ServiceSettings
from negminer.client.uploads import is_upload_id
from negminer.index._internal import is_model_folder
from negminer.jobs import JobStore
from negminer.service.exceptions import UploadNotFound
from negminer.service.paths import inside_data_dir
from negminer.service.uploads import uploads_of

__all__ = ["DEFAULT_NAME", "default_model", "model_prompts", "public_model_name", "resolve_model"]


def _refuse(param: str, why: str) -> ConfigError:
    """A refusal naming the request field ``param`` (the service answers 422 invalid_request)."""
    return ConfigError(why, param=param)


DEFAULT_NAME = DEFAULT_MODEL_NAMES[0]


def default_model(settings: ServiceSettings) -> tuple[str, str]:
    """(name, path) of the service's default model."""
    if settings.model:
        return Path(settings.model).name or settings.model, settings.model
    from negminer.index import default_model_path

    return DEFAULT_NAME, default_model_path()


def resolve_model(model: str | None, settings: ServiceSettings, store: JobStore | None, param: str = "model") -> str:
    """The folder of model ``model`` (see the module docstring)."""
    name, path = default_model(settings)
    if model is None or model in (name, settings.model, path):  # by name, or the path the service itself uses
        return path
    if not settings.model and model in DEFAULT_MODEL_NAMES:  # sentence-transformers/all-MiniLM-L6-v2
        return path
    if is_upload_id(model):
        return _upload_folder(model, settings, param)
    registered = store.get_model(model) if store is not None else None
    if registered is not None:
        if is_upload_id(registered.path):  # a worker on its own disk uploaded it
            return _upload_folder(registered.path, settings, param)
        if not Path(registered.path).is_dir():
            raise _refuse(param, f"the files of model {model!r} are gone")
        return str(registered.path)
    if model.startswith("ft:"):
        raise _refuse(param, f"no model named {model!r} (GET /v1/models lists them)")
    if Path(model).is_absolute():
        raise _refuse(
            param,
            "a model is named by its name, an upload id (POST /v1/models/uploads) or a folder relative to the data "
            "dir, never by a path on the server",
        )
    try:
        folder = inside_data_dir(model, settings, param, kind="dir")
    except ConfigError:
        raise _refuse(param, f"no model named {model!r} and no model folder of that name in the data dir") from None
    if not is_model_folder(folder):
        raise _refuse(param, f"{model!r} is a folder of the data dir but not a model (no modules.json or config.json)")
    return str(folder)


def _upload_folder(uid: str, settings: ServiceSettings, param: str) -> str:
    uploads = uploads_of(settings)
    try:
        folder = uploads.folder(uid)
    except UploadNotFound:
        raise _refuse(param, f"no model upload {uid!r} (POST /v1/models/uploads publishes one)") from None
    uploads.touch(uid)
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
    uid = uploads_of(settings).id_of(path)
    if store is not None:
        registered = store.model_named_by_path(uid or path)
        if registered is not None:
            return registered
    return uid or settings.without_paths(path)
