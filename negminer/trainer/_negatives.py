"""Where the trainer gets its hard negatives: an interface, and the in-process implementation.

The trainer calls :meth:`NegativeSource.refresh` with a new checkpoint and keeps training; at every step it calls
:meth:`NegativeSource.poll`, which returns a :class:`NegativesUpdate` once new negatives are ready. The in-process
:class:`LocalNegativeSource` mines inside ``refresh`` (so the trainer waits for it). The index service's client
(``negminer.client.HttpNegativeSource``, a layer above) asks the service to refresh and returns at once while the
service builds the next index version in the background: the trainer never stops for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from negminer._data import RetrievalData
from negminer.index import Encoder
from negminer.mining import MiningConfig, MiningResult, mine

__all__ = ["LocalNegativeSource", "NegativeSource", "NegativeSourceFactory", "NegativesUpdate"]


@dataclass
class NegativesUpdate:
    """New negatives: per training query, rows of the training corpus de-duplicated by text (first-seen order),
    or, when ``texts`` is given, rows of ``texts`` (negatives from a corpus larger than the training data's)."""

    version: int
    negatives: list[list[int]]
    report: dict[str, Any] = field(default_factory=dict)
    texts: list[str] | None = None

    @classmethod
    def from_result(cls, version: int, result: MiningResult) -> NegativesUpdate:
        return cls(version, [[int(n) for n in row if n >= 0] for row in result.negatives], result.report.to_dict())


@runtime_checkable
class NegativeSource(Protocol):
    """Hard negatives for the training queries, re-mined from newer checkpoints."""

    def refresh(self, checkpoint: str) -> None:
        """Start mining negatives with ``checkpoint`` (a model folder). May return before they are ready."""
        ...

    def poll(self) -> NegativesUpdate | None:
        """The newest finished negatives not yet returned, or None."""
        ...


NegativeSourceFactory = Callable[[RetrievalData, MiningConfig], NegativeSource]
"""Builds a source for the training split and mining options a run settles on (``train(source=factory)``)."""


class LocalNegativeSource:
    """Mines in this process, through the embedding cache (an unchanged model costs nothing)."""

    def __init__(
        self,
        data: RetrievalData,
        config: MiningConfig,
        *,
        encoder: Callable[[str], Encoder] = Encoder,
        show_progress: bool = True,
        ray: str | None = None,
    ) -> None:
        """``encoder(checkpoint)`` builds the encoder of a checkpoint (the run's device, cache, batch size...);
        ``ray``: mine (encode and search) on that Ray cluster."""
        self.data = data
        self.ray = ray
        self.config = config
        self.encoder = encoder
        self.show_progress = show_progress
        self.version = 0
        self._ready: NegativesUpdate | None = None
        self.last_encoder: Encoder | None = None

    def refresh(self, checkpoint: str) -> None:
        self.last_encoder = self.encoder(checkpoint)
        result = mine(self.data, self.last_encoder, config=self.config, show_progress=self.show_progress, ray=self.ray)
        self.version += 1
        self._ready = NegativesUpdate.from_result(self.version, result)

    def poll(self) -> NegativesUpdate | None:
        ready, self._ready = self._ready, None
        return ready
