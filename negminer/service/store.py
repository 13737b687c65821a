"""Moved to ``negminer.jobs``; importing it from here works for one release, with a ``DeprecationWarning``."""

import warnings

from negminer.jobs import TERMINAL, JobStore, StoreUnavailable

__all__ = ["TERMINAL", "JobStore", "StoreUnavailable"]

warnings.warn(
    "negminer.service.store moved to negminer.jobs; the old module goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
