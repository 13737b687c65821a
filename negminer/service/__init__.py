"""The REST service (FastAPI): ``create_app`` and its settings, the fine-tuning ``Worker`` and its ``JobStore``.
The library never imports this package."""

from negminer.service.app import create_app
from negminer.service.config import ServiceSettings
from negminer.service.store import JobStore
from negminer.service.worker import Worker

__all__ = ["JobStore", "ServiceSettings", "Worker", "create_app"]
