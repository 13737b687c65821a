"""The REST service (FastAPI): ``create_app`` and its settings, and the named-index registry it serves.

The job queue (:mod:`negminer.jobs`: ``JobStore``, ``Worker``) and the HTTP client (:mod:`negminer.client`:
``HttpNegativeSource``, ``ServiceError``, the wire schemas) live in their own packages, so a worker or a trainer
that talks to the service loads no FastAPI. Their names are still importable from here for one release, with a
``DeprecationWarning``. The library never imports this package."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from negminer._settings import ServiceSettings
from negminer.service.app import create_app
from negminer.service.registry import (
    IndexBusy,
    IndexDeleting,
    IndexExists,
    IndexNotFound,
    IndexNotReady,
    IndexRegistry,
)

__all__ = [
    "IndexBusy",
    "IndexDeleting",
    "IndexExists",
    "IndexNotFound",
    "IndexNotReady",
    "IndexRegistry",
    "ServiceSettings",
    "create_app",
]

_MOVED = {
    "HttpNegativeSource": "negminer.client",
    "ServiceError": "negminer.client",
    "JobStore": "negminer.jobs",
    "Worker": "negminer.jobs",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"negminer.service.{name} moved to {_MOVED[name]}.{name}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
