"""Hard-negative mining with positive-aware false-negative filtering: the positives' document neighbourhood and
absolute, relative and adaptive margins."""

from negminer.mining._config import FILTERS, RECOMMENDED_FILTER, TRAINING_FILTER, MiningConfig
from negminer.mining._filters import (
    absolute_margin_mask,
    adaptive_thresholds,
    max_score_mask,
    min_score_mask,
    neighbourhood_z,
    positive_neighbourhood_mask,
    positive_reference,
    relative_margin_mask,
    select_negatives,
    sibling_thresholds,
    threshold_mask,
)
from negminer.mining._miner import RULES, MiningResult, mine, mine_vectors
from negminer.mining._output import OUTPUT_FORMATS
from negminer.mining._report import MiningReport
from negminer.mining._teacher import BiEncoderTeacher, CrossEncoderTeacher, Teacher

__all__ = [
    "FILTERS",
    "OUTPUT_FORMATS",
    "RECOMMENDED_FILTER",
    "RULES",
    "TRAINING_FILTER",
    "BiEncoderTeacher",
    "CrossEncoderTeacher",
    "MiningConfig",
    "MiningReport",
    "MiningResult",
    "Teacher",
    "absolute_margin_mask",
    "adaptive_thresholds",
    "max_score_mask",
    "min_score_mask",
    "mine",
    "mine_vectors",
    "neighbourhood_z",
    "positive_neighbourhood_mask",
    "positive_reference",
    "relative_margin_mask",
    "select_negatives",
    "sibling_thresholds",
    "threshold_mask",
]
