"""Every closed vocabulary of negminer, declared once.

Configs (``MiningConfig``, ``TrainConfig``), the REST schemas, the command line's choices and the job store all
take their allowed values from here, so a new loss or status is added in one place. Each vocabulary is a
:class:`StrEnum`: its members compare equal to (and serialize as) their plain string values.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        """``enum.StrEnum`` of Python 3.11."""

        def __str__(self) -> str:
            return str(self.value)


__all__ = [
    "EventLevel",
    "EventType",
    "IndexKind",
    "IndexStatus",
    "JobStatus",
    "LossFilterRule",
    "LossName",
    "MarginRule",
    "ModelKind",
    "NegativesMode",
    "OperationStatus",
    "OperationType",
    "OutputFormat",
    "SamplingStrategy",
    "StrEnum",
    "TERMINAL_JOB_STATUSES",
    "values",
]


def values(enum: type[Enum]) -> tuple[str, ...]:
    """The plain string values of a vocabulary, in declaration order."""
    return tuple(str(m.value) for m in enum)


class LossName(StrEnum):
    """Training losses (``negminer.trainer.losses``)."""

    infonce = "infonce"
    decoupled = "decoupled"
    dcl = "dcl"


class NegativesMode(StrEnum):
    """Where a training run's hard negatives come from."""

    none = "none"  # in-batch negatives only
    mined = "mined"  # mined once, before training
    refresh = "refresh"  # re-mined from the improving model every ``refresh_every`` steps


class MarginRule(StrEnum):
    """The miner's false-negative rules, in the order they apply; the report counts removals under these names."""

    absolute_margin = "absolute_margin"
    relative_margin = "relative_margin"
    adaptive_margin = "adaptive_margin"
    max_score = "max_score"
    min_score = "min_score"


class LossFilterRule(StrEnum):
    """In-loss false-negative masking rules (the miner's margins, applied to in-batch scores)."""

    absolute = "absolute"
    relative = "relative"
    adaptive = "adaptive"


class SamplingStrategy(StrEnum):
    top = "top"
    random = "random"


class OutputFormat(StrEnum):
    """Row layouts of mined negatives (sentence-transformers' ``mine_hard_negatives`` names)."""

    triplet = "triplet"
    n_tuple = "n-tuple"
    labeled_pair = "labeled-pair"
    labeled_list = "labeled-list"


class IndexKind(StrEnum):
    """Vector index structures: exact (flat) or approximate (IVF, HNSW)."""

    flat = "flat"
    ivf = "ivf"
    hnsw = "hnsw"


class IndexStatus(StrEnum):
    """A named index of the service: ``building`` until its first version is published."""

    building = "building"
    ready = "ready"
    failed = "failed"


class OperationType(StrEnum):
    """What produces an index's next version."""

    build = "build"
    documents = "documents"
    refresh = "refresh"


class OperationStatus(StrEnum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class JobStatus(StrEnum):
    """A fine-tuning job's status (OpenAI's names)."""

    validating_files = "validating_files"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class EventLevel(StrEnum):
    info = "info"
    warn = "warn"
    error = "error"


class EventType(StrEnum):
    message = "message"
    metrics = "metrics"


class ModelKind(StrEnum):
    """Models the service knows by name."""

    default = "default"  # the service's own model
    fine_tuned = "fine_tuned"  # the final model of a fine-tuning job
    checkpoint = "checkpoint"  # a job's checkpoint


TERMINAL_JOB_STATUSES = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
