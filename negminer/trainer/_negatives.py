"""Where the trainer gets its hard negatives: an interface, and the in-process implementation.

The trainer calls :meth:`NegativeSource.refresh` with a new checkpoint and keeps training; at every step it calls
:meth:`NegativeSource.poll`, which returns a new :class:`~negminer.mining.MiningResult` once one is ready. The
in-process :class:`LocalNegativeSource` mines inside ``refresh`` (so the trainer waits for it); an HTTP source (the
service) can return at once and build the next index version in the background: the trainer never needs to stop.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from negminer._data import RetrievalData
from negminer.index._encoder import Encoder
from negminer.mining._config import MiningConfig
from negminer.mining._miner import MiningResult, mine

__all__ = ["NegativeSource", "LocalNegativeSource"]


@runtime_checkable
class NegativeSource(Protocol):
    """Hard negatives for the training queries, re-mined from newer checkpoints."""

    def refresh(self, checkpoint: str) -> None:
        """Start mining negatives with ``checkpoint`` (a model folder). May return before they are ready."""
        ...

    def poll(self) -> tuple[int, MiningResult] | None:
        """(version, result) of the newest finished mining not yet returned, or None."""
        ...


class LocalNegativeSource:
    """Mines in this process, through the embedding cache (an unchanged model costs nothing)."""

    def __init__(self, data: RetrievalData, config: MiningConfig, *, cache_dir: str | os.PathLike[str] | None = None,
                 device: str = "auto", batch_size: int = 64, max_seq_length: int | None = None,
                 show_progress: bool = True) -> None:
        self.data = data
        self.config = config
        self.cache_dir = cache_dir
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.show_progress = show_progress
        self.version = 0
        self._ready: tuple[int, MiningResult] | None = None
        self.last_encoder: Encoder | None = None

    def encoder(self, checkpoint: str) -> Encoder:
        return Encoder(checkpoint, device=self.device, batch_size=self.batch_size, cache_dir=self.cache_dir,
                       max_seq_length=self.max_seq_length, show_progress=self.show_progress)

    def refresh(self, checkpoint: str) -> None:
        self.last_encoder = self.encoder(checkpoint)
        result = mine(self.data, self.last_encoder, config=self.config, show_progress=self.show_progress)
        self.version += 1
        self._ready = (self.version, result)

    def poll(self) -> tuple[int, MiningResult] | None:
        ready, self._ready = self._ready, None
        return ready
