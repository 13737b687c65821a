"""Settings from the environment (prefix ``NEGMINER_``) through pydantic-settings; CLI flags override them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


def _default_cache() -> Path:
    return Path.home() / ".cache" / "negminer"


class Settings(BaseSettings):
    """``NEGMINER_MODEL``, ``NEGMINER_CACHE_DIR``, ``NEGMINER_DEVICE``, ``NEGMINER_BATCH_SIZE``,
    ``NEGMINER_INDEX_DEVICE``, ``NEGMINER_ENCODE_DEVICES``, ``NEGMINER_RAY_ADDRESS``, ``NEGMINER_LOG_LEVEL``."""

    model_config = SettingsConfigDict(env_prefix="NEGMINER_", extra="ignore")

    model: str | None = Field(None, description="model folder or name; default: bundled all-MiniLM-L6-v2")
    cache_dir: Path = Field(default_factory=_default_cache, description="embedding cache folder")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    batch_size: int = Field(64, ge=1, description="texts per encoding batch")
    index_device: Literal["auto", "cpu", "gpu"] = Field("auto", description="FAISS device")
    encode_devices: str | None = Field(
        None,
        description="encode large corpora on several devices at once (sentence-transformers' multi-process pool): "
        "'all' (every GPU, or 2+ CPU processes), a count of CPU processes, or a list such as cuda:0,cuda:1",
    )
    ray_address: str | None = Field(
        None, description="run corpus encoding and mining on this Ray cluster (ray://host:10001, 'auto' or 'local')"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="the command line's logging level"
    )
