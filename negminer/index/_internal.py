"""Plumbing of the index layer that other negminer packages use but users do not: the layout of the service's
named-index folders, and what makes a folder a model. A module named ``_internal`` is the one private module
another package may import (the layer test allows exactly that); nothing here is public API."""

from negminer.index._encoder import is_model_folder
from negminer.index._store import OPERATION_FILE, pinned_models

__all__ = ["OPERATION_FILE", "is_model_folder", "pinned_models"]
