"""Connecting to Ray (the optional extra ``negminer[ray]``): one place that imports it, starts or joins a cluster
and says clearly what is missing."""

from __future__ import annotations

import logging
import os
from typing import Any

from negminer._errors import ConfigError

__all__ = ["connect"]

logger = logging.getLogger("negminer")


def connect(address: str | bool, *, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, initialized: joined to the cluster at ``address`` (``ray://host:10001``, ``host:6379``,
    ``auto``), or a local Ray for ``local`` / True. An already initialized Ray is used as it is."""
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'negminer[ray]'", param="ray") from None
    if not ray.is_initialized():
        local = address is True or address in ("local", "true", "1")
        env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}}
        try:
            if local:
                ray.init(num_cpus=num_cpus, runtime_env=env, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=str(address), runtime_env=env, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"cannot join the Ray cluster at {address!r}: {exc}", param="ray") from exc
        logger.info("Ray: %s", ray.cluster_resources())
    return ray
