"""Moved to ``negminer.jobs``; importing it from here works for one release, with a ``DeprecationWarning``."""

import warnings

from negminer.jobs import Worker, model_name

__all__ = ["Worker", "model_name"]

warnings.warn(
    "negminer.service.worker moved to negminer.jobs; the old module goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
