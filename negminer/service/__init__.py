"""The REST service (FastAPI): ``create_app`` and its settings, and the named-index registry it serves.

The job queue (:mod:`negminer.jobs`: ``JobStore``, ``Worker``) and the HTTP client (:mod:`negminer.client`:
``HttpNegativeSource``, ``ServiceError``, the wire schemas) live in their own packages, so a worker or a trainer
that talks to the service loads no FastAPI. The library never imports this package."""

from __future__ import annotations

from negminer._settings import ServiceSettings
from negminer.service.app import create_app
from negminer.service.exceptions import (
    ChecksumMismatch,
    IndexBusy,
    IndexDeleting,
    IndexExists,
    IndexNotFound,
    IndexNotReady,
    LeaseExpired,
    UnsafeArchive,
    UploadNotFound,
    UploadTooLarge,
)
from negminer.service.registry import IndexRegistry
from negminer.service.uploads import ModelUploads

__all__ = [
    "ChecksumMismatch",
    "IndexBusy",
    "IndexDeleting",
    "IndexExists",
    "IndexNotFound",
    "IndexNotReady",
    "IndexRegistry",
    "LeaseExpired",
    "ModelUploads",
    "ServiceSettings",
    "UnsafeArchive",
    "UploadNotFound",
    "UploadTooLarge",
    "create_app",
]
