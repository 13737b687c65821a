"""Paths a request names, resolved inside the service's data dir (the domain rule, not HTTP: a refusal is a
:class:`~negminer.ConfigError` naming the field, which the service answers with a 422)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal

from negminer._errors import ConfigError
from negminer._settings import ServiceSettings

__all__ = ["inside_data_dir"]


def _refuse(param: str, why: str) -> ConfigError:
    return ConfigError(why, param=param)


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
        raise _refuse(param, "empty path")
    root = Path(settings.data_dir).resolve()
    try:
        path = (root / relative).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name too long
        raise _refuse(param, f"cannot resolve the path ({type(exc).__name__})") from None
    if not path.is_relative_to(root):
        raise _refuse(param, "path escapes the data dir")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _refuse(param, f"no {'file' if kind == 'file' else 'folder'} {relative!r} in the data dir") from None
    except OSError as exc:
        raise _refuse(param, f"cannot read {relative!r}: {exc.strerror}") from None
    if kind == "file" and not stat.S_ISREG(st.st_mode):
        what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, socket or device)"
        raise _refuse(param, f"{relative!r} is {what}")
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        raise _refuse(param, f"{relative!r} is not a folder")
    if not os.access(path, os.R_OK | (os.X_OK if kind == "dir" else 0)):
        raise _refuse(param, f"{relative!r} is not readable by the service")
    if suffixes and path.suffix.lower() not in suffixes:
        raise _refuse(param, f"{relative!r}: unsupported type (use {', '.join(suffixes)})")
    return path
