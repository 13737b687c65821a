"""The REST service (FastAPI): ``create_app`` and its settings, and the named-index registry it serves.

The job queue (:mod:`negminer.jobs`: ``JobStore``, ``Worker``) and the HTTP client (:mod:`negminer.client`:
``HttpNegativeSource``, ``ServiceError``, the wire schemas) live in their own packages, so a worker or a trainer
that talks to the service loads no FastAPI. The library never imports this package."""

from __future__ import annotations

from negminer._settings import ServiceSettings
from negminer.service.app import create_app
from negminer.service.exceptions import IndexBusy, IndexDeleting, IndexExists, IndexNotFound, IndexNotReady
from negminer.service.registry import IndexRegistry

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
