"""Moved to ``negminer.client``; importing it from here works for one release, with a ``DeprecationWarning``."""

import warnings

from negminer.client import HttpNegativeSource, ServiceError

__all__ = ["HttpNegativeSource", "ServiceError"]

warnings.warn(
    "negminer.service.client moved to negminer.client; the old module goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
