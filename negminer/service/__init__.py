"""The REST service (FastAPI): ``create_app`` and its settings, the named-index registry, the fine-tuning ``Worker``
and its ``JobStore``, and the service's own HTTP client. The library never imports this package."""

from negminer.service.app import create_app
from negminer.service.client import HttpNegativeSource, ServiceError
from negminer.service.config import ServiceSettings
from negminer.service.registry import IndexBusy, IndexExists, IndexNotFound, IndexNotReady, IndexRegistry
from negminer.service.store import JobStore
from negminer.service.worker import Worker

__all__ = [
    "HttpNegativeSource",
    "IndexBusy",
    "IndexExists",
    "IndexNotFound",
    "IndexNotReady",
    "IndexRegistry",
    "JobStore",
    "ServiceError",
    "ServiceSettings",
    "Worker",
    "create_app",
]
