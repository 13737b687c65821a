"""What a training run tells its :class:`TrainListener` as it goes, and how the listener may stop it.

Kept apart from the training loop (which loads torch and transformers) so that the service and the command line
can name these types without paying for that import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CheckpointEvent", "EvaluationEvent", "LogEvent", "RefreshEvent", "ResumeEvent", "TrainListener"]


@dataclass(frozen=True)
class ResumeEvent:
    """The run continues from the complete checkpoint ``path`` saved at ``step``."""

    step: int
    path: str


@dataclass(frozen=True)
class LogEvent:
    """The trainer logged its loss."""

    step: int
    loss: float
    learning_rate: float
    epoch: float
    max_steps: int = 0  # steps the run will take in all (0: unknown)


@dataclass(frozen=True)
class EvaluationEvent:
    """Validation metrics of the model at ``step``; ``event`` is ``start``, ``refresh`` or ``end``."""

    step: int
    event: str
    metrics: dict[str, float]
    seconds: float

    def entry(self) -> dict[str, Any]:
        """The history entry of ``metrics.json``: step, event, each metric, seconds."""
        return {"step": self.step, "event": self.event, **self.metrics, "seconds": self.seconds}


@dataclass(frozen=True)
class RefreshEvent:
    """New negatives (index or mining ``version``) are in use from ``step`` on; ``seconds`` since they were asked
    for; ``filled_randomly``: negatives topped up at random for queries the miner left short."""

    step: int
    version: int
    seconds: float
    queries_short: int | None
    filled_randomly: int


@dataclass(frozen=True)
class CheckpointEvent:
    """A complete trainer checkpoint of ``step`` lies in ``path``."""

    step: int
    path: str


class TrainListener(Protocol):
    """Hears of a run as it goes (every method may be left out of a subclass: the defaults do nothing), and may
    stop it: :meth:`should_stop` is asked after every step; when it returns True the run saves a checkpoint and
    returns with ``stopped=True`` (no final model)."""

    def on_resume(self, event: ResumeEvent) -> None:
        return None

    def on_log(self, event: LogEvent) -> None:
        return None

    def on_evaluation(self, event: EvaluationEvent) -> None:
        return None

    def on_refresh(self, event: RefreshEvent) -> None:
        return None

    def on_checkpoint(self, event: CheckpointEvent) -> None:
        return None

    def should_stop(self) -> bool:
        return False
