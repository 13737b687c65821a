"""The REST service (FastAPI): ``create_app`` and its settings. The library never imports this package."""

from negminer.service.app import create_app
from negminer.service.config import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
