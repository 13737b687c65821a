"""Moved to ``negminer.service``; importing it from here works for one release, with a ``DeprecationWarning``."""

import warnings

from negminer._settings import ServiceSettings

__all__ = ["ServiceSettings"]

warnings.warn(
    "negminer.service.config moved to negminer.service; the old module goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
