"""Mining options, validated: the same names and meanings as sentence-transformers' ``mine_hard_negatives``
where they overlap, plus the adaptive margin, deeper search and teacher options of negminer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from negminer._model import StrictModel
from negminer._vocab import SamplingStrategy

__all__ = ["FILTERS", "FILTER_PRESETS", "RECOMMENDED_FILTER", "TRAINING_FILTER", "FilterName", "MiningConfig"]

# The positive-aware false-negative filters (they need the query's known positives), in the order they apply.
FILTERS = ("positive_neighbourhood", "positive_siblings", "absolute_margin", "relative_margin", "adaptive_margin")

# The filter every mining entry point applies when the caller names none (`negminer mine`, `mine()`, `POST /mine`,
# the demo): the positive-neighbourhood rule and the sibling rule. Chosen in the false-negative benchmark
# (docs/benchmarks.md, "False negatives") as the setting with the widest margin to every target on the demo's two
# variants and on NFCorpus. ``filter="none"`` is sentence-transformers' ``mine_hard_negatives`` (no filter).
RECOMMENDED_FILTER: dict[str, Any] = {"positive_neighbourhood": 1.25, "positive_siblings": 0.1}

# The filter the trainer mines with when the user names none (`negminer train`, fine-tuning jobs, the demo's
# training): the neighbourhood rule and the adaptive margin. In the quality benchmark (docs/benchmarks.md,
# "Fine-tuning quality") this combination trained as well as the best rows with a small fraction of the adaptive
# margin's contamination: at a short fine-tuning budget, negatives a little easier than the hardest train better.
TRAINING_FILTER: dict[str, Any] = {"positive_neighbourhood": 1.5, "adaptive_margin": 1.0}

# ``MiningConfig.filter``: a named set of filter options, or ``custom`` (the filter options given, as they are).
FilterName = Literal["recommended", "training", "none", "custom"]
FILTER_PRESETS: dict[str, dict[str, Any]] = {"recommended": RECOMMENDED_FILTER, "training": TRAINING_FILTER, "none": {}}


class MiningConfig(StrictModel):
    """Options of :func:`negminer.mining.mine`. Unknown names, non-finite numbers and invalid text are refused with
    the name in the error."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, validate_default=True, use_enum_values=True, allow_inf_nan=False
    )

    _chosen_by: str = PrivateAttr("caller")
    _settled: bool = PrivateAttr(False)

    filter: FilterName | None = Field(
        None,
        description="the false-negative filter: recommended (negminer.mining.RECOMMENDED_FILTER), training "
        "(TRAINING_FILTER), none (sentence-transformers' mine_hard_negatives: no filter) or custom (the filter "
        "options given); default: recommended when no filter option is given, custom when one is",
    )
    num_negatives: int = Field(3, ge=1, description="negatives per query")
    range_min: int = Field(0, ge=0, description="skip this many top candidates (ranks counted after filtering)")
    range_max: int | None = Field(
        None,
        ge=1,
        description="last rank (exclusive) a negative may have; default range_min + num_negatives + max_positives, "
        "or range_min + 10 * num_negatives + max_positives when a margin or max_score is set",
    )
    absolute_margin: float | None = Field(None, description="drop a candidate if score + margin > positive score")
    relative_margin: float | None = Field(
        None, ge=0.0, description="drop a candidate if score > pos - |pos| * margin (0.05: NV-Retriever's 95%)"
    )
    positive_neighbourhood: float | None = Field(
        None,
        ge=0.0,
        description="drop a candidate whose cosine to one of the query's known positives is more than this many "
        "robust standard deviations above that positive's median cosine to the query's top candidates",
    )
    positive_siblings: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="drop a candidate at least as close (cosine) to one of the query's known positives as this "
        "quantile of the known positives' cosines to their nearest other known positive (a threshold calibrated "
        "per query on its own labels; queries with >= 2 known positives)",
    )
    neighbourhood_window: int = Field(
        100, ge=2, description="top candidates that set each positive's typical cosine (positive_neighbourhood)"
    )
    adaptive_margin: float | None = Field(
        None,
        ge=0.0,
        description="drop a candidate above a per-query threshold: quantile of the positive scores minus this many "
        "standard deviations of the query's top candidate scores",
    )
    adaptive_quantile: float = Field(0.5, ge=0.0, le=1.0, description="quantile of the positive scores (anchor)")
    adaptive_window: int = Field(30, ge=2, description="top candidates whose spread scales the adaptive margin")
    max_score: float | None = Field(None, description="drop a candidate scoring above this")
    min_score: float | None = Field(None, description="drop a candidate scoring below this")
    sampling_strategy: SamplingStrategy = Field(
        SamplingStrategy.top, description="top: the best-ranked negatives of the window; random: drawn from it (seeded)"
    )
    seed: int = Field(42, ge=0, description="seed of random sampling")
    deepen: bool | None = Field(
        None,
        description="search deeper for queries the filters left short (default: on with adaptive_margin or "
        "positive_neighbourhood, off otherwise, which matches sentence-transformers)",
    )
    max_depth: int = Field(4096, ge=1, description="deepest search when deepening")
    include_positives: bool = Field(False, description="keep positives among the candidates (reranking sets)")
    query_prompt: str | None = Field(
        None, description="text put before each query (e5's 'query: '; default: the model's query prompt)"
    )
    query_prompt_name: str | None = Field(None, description="the model's prompt of this name before each query")
    corpus_prompt: str | None = Field(
        None, description="text put before each document (default: the model's document prompt)"
    )
    corpus_prompt_name: str | None = Field(None, description="the model's prompt of this name before each document")
    batch_size: int = Field(64, ge=1, description="texts per encoding batch")
    chunk_size: int = Field(4096, ge=1, description="queries searched and filtered at a time (bounds memory)")

    @model_validator(mode="after")
    def _resolve_filter(self) -> MiningConfig:
        """Settle ``filter`` when the config is made: a preset fills the options it names that were not given;
        ``none`` refuses filter options. Afterwards (assignments) the name follows the options: a preset whose
        options were changed is ``custom``."""
        named = [f for f in FILTERS if getattr(self, f) is not None]
        if not self._settled:
            preset = self.filter
            if preset is None:
                preset = "custom" if named else "recommended"
                object.__setattr__(self, "filter", preset)
                if not named:
                    self._chosen_by = "default"
            if preset == "none" and named:
                raise ValueError(f"filter='none' asks for no filter, but {named[0]} is given")
            for name, value in FILTER_PRESETS.get(preset, {}).items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
            self._settled = True
        if self.filter in FILTER_PRESETS and self.filter_rules != FILTER_PRESETS[self.filter]:
            object.__setattr__(self, "filter", "custom")
            self._chosen_by = "caller"
        return self

    def __eq__(self, other: object) -> bool:  # the options, not how the filter was chosen
        return type(other) is type(self) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    @property
    def filter_rules(self) -> dict[str, float]:
        """The filter options in effect (name -> value), in the order they apply."""
        return {f: getattr(self, f) for f in FILTERS if getattr(self, f) is not None}

    def describe_filter(self) -> dict[str, Any]:
        """Which filter ran and why: ``name``, ``rules``, and ``chosen_by`` (``default``: no filter named, so the
        recommended filter of every mining entry point; ``caller``: asked for)."""
        return {"name": self.filter, "rules": self.filter_rules, "chosen_by": self._chosen_by}

    @model_validator(mode="after")
    def _check_window(self) -> MiningConfig:
        if self.range_max is not None:
            if self.range_min >= self.range_max:
                raise ValueError(f"range_min ({self.range_min}) must be smaller than range_max ({self.range_max})")
            if self.num_negatives > self.range_max - self.range_min:
                raise ValueError(
                    f"num_negatives ({self.num_negatives}) does not fit the window range_max - range_min "
                    f"({self.range_max - self.range_min})"
                )
        return self

    @classmethod
    def recommended(cls, *, training: bool = False, **options: Any) -> MiningConfig:
        """The recommended filter (:data:`RECOMMENDED_FILTER`, or :data:`TRAINING_FILTER` with ``training``) with
        ``options``; a filter option given replaces it (``MiningConfig(**options)`` is the same without
        ``training``)."""
        if training and not any(options.get(m) is not None for m in FILTERS) and options.get("filter") is None:
            config = cls(**{**options, "filter": "training"})
            config._chosen_by = "default"  # the trainer's default, not asked for
            return config
        return cls(**options)

    @property
    def uses_filters(self) -> bool:
        """True when a filter or max_score may remove candidates (widens the default window, as in ST)."""
        return any(getattr(self, f) is not None for f in (*FILTERS, "max_score"))

    def resolved_range_max(self, max_positives: int) -> int:
        """``range_max``, or sentence-transformers' default for it."""
        if self.range_max is not None:
            return self.range_max
        if self.uses_filters:
            return self.range_min + 10 * self.num_negatives + max_positives
        return self.range_min + self.num_negatives + max_positives

    @property
    def deepens(self) -> bool:
        """Whether queries left short are searched again, deeper (default: with the adaptive filters)."""
        if self.deepen is not None:
            return self.deepen
        return any(
            getattr(self, f) is not None for f in ("adaptive_margin", "positive_neighbourhood", "positive_siblings")
        )
