"""Moved to ``negminer.client.schemas``; importing it from here works for one release, with a ``DeprecationWarning``."""

import warnings

from negminer.client import schemas as _moved
from negminer.client.schemas import *  # noqa: F403

__all__ = list(_moved.__all__)

warnings.warn(
    "negminer.service.schemas moved to negminer.client.schemas; the old module goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
