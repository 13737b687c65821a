"""What routes share to read requests: a 422 naming a field, a page of a list, a path field resolved inside the
data dir."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi.exceptions import RequestValidationError

from negminer._settings import ServiceSettings
from negminer.client.schemas import ListPage

T = TypeVar("T")

__all__ = ["bad_param", "inside_data_dir", "list_page"]


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
