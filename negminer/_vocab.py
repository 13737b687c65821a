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

        @staticmethod
        def _generate_next_value_(name: str, start: int, count: int, last_values: list[str]) -> str:
            return name.lower()

        def __str__(self) -> str:
            return str(self.value)


__all__ = [
    "INDEX_NAME_PATTERN",
    "EventLevel",
    "EventType",
    "FilterRule",
    "IndexChoice",
    "IndexKind",
    "IndexStatus",
    "JobStatus",
    "LossFilterRule",
    "LossName",
    "ModelKind",
    "NegativesMode",
    "OperationStatus",
    "OperationType",
    "OutputFormat",
    "SamplingStrategy",
    "StrEnum",
    "TERMINAL_JOB_STATUSES",
    "new_id",
    "values",
]

# Names of the service's indexes (a folder each): lowercase letters, digits, ``_`` and ``-``.
INDEX_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


def new_id(prefix: str) -> str:
    """An opaque id (``ftjob-…``, ``file-…``, ``op-…``): the prefix and 16 random hex digits."""
    import secrets

    return f"{prefix}-{secrets.token_hex(8)}"


def values(enum: type[Enum]) -> tuple[str, ...]:
    """The plain string values of a vocabulary, in declaration order."""
    return tuple(str(m.value) for m in enum)


# Training losses (negminer.trainer.losses, one file each).
LossName = StrEnum("LossName", "infonce decoupled dcl")

# Where a run's hard negatives come from: none (in-batch only), mined (once, before training), refresh (re-mined from
# the improving model every refresh_every steps).
NegativesMode = StrEnum("NegativesMode", "none mined refresh")

# The miner's false-negative rules, in the order they apply; the mining report counts removals under these names (a
# candidate two rules would remove is counted under the first). The document-side rule comes first: it looks at the
# corpus, not at the query's scores, and removes the near-duplicates of known positives that the margins let through.
# The sibling rule, also document-side, is calibrated on the query's own known positives.
FilterRule = StrEnum(
    "FilterRule",
    "positive_neighbourhood positive_siblings absolute_margin relative_margin adaptive_margin max_score min_score",
)

# In-loss false-negative masking rules (the miner's margins applied to in-batch scores).
LossFilterRule = StrEnum("LossFilterRule", "absolute relative adaptive")

# How negatives are taken from the rank window: the best-ranked, or drawn at random (seeded).
SamplingStrategy = StrEnum("SamplingStrategy", "top random")

# Row layouts of mined negatives (sentence-transformers' mine_hard_negatives names).
OutputFormat = StrEnum(
    "OutputFormat",
    [
        ("triplet", "triplet"),
        ("n_tuple", "n-tuple"),
        ("labeled_pair", "labeled-pair"),
        ("labeled_list", "labeled-list"),
    ],
)

# Vector index structures: exact (flat) or approximate (IVF with full vectors, IVF with product-quantized codes,
# HNSW graph); ``auto`` picks one from the corpus size and a memory budget (negminer.index.plan_index).
IndexKind = StrEnum("IndexKind", "flat ivf ivfpq hnsw")
IndexChoice = StrEnum("IndexChoice", "auto flat ivf ivfpq hnsw")  # auto + IndexKind (a test holds them equal)

# A named index of the service (building until its first version is published), what produces its next version,
# and how that went.
IndexStatus = StrEnum("IndexStatus", "building ready failed")
OperationType = StrEnum("OperationType", "build documents refresh")
OperationStatus = StrEnum("OperationStatus", "running succeeded failed")

# A fine-tuning job (OpenAI's names), and its events.
JobStatus = StrEnum("JobStatus", "validating_files queued running succeeded failed cancelled")
EventLevel = StrEnum("EventLevel", "info warn error")
EventType = StrEnum("EventType", "message metrics")

# Models the service knows by name: its own default, the final model of a job, a job's checkpoint.
ModelKind = StrEnum("ModelKind", "default fine_tuned checkpoint")

TERMINAL_JOB_STATUSES = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
