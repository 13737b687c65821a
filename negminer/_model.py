"""The base of every validated options model and request body: one rule for numbers and text.

Numbers must be finite: NaN, +-Infinity and overflowing literals (``1e999``) are refused with the field named,
because no option of negminer means anything at infinity (an infinite margin silently mines nothing, an infinite
learning rate trains a model that embeds to NaN). Text must be text: a NUL character or a lone UTF-16 surrogate
(``"\\ud800"``, which JSON can spell but UTF-8 cannot) is refused with the field named, before it reaches a
tokenizer, a database or a JSON encoder that would fail on it later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from negminer._errors import config_error

__all__ = ["StrictModel", "text_problem"]


def text_problem(value: Any) -> str | None:
    """What is wrong with the text inside ``value`` (a string, or lists / dicts / models holding strings), or
    None. Models built on :class:`StrictModel` checked their own fields already and are skipped."""
    if isinstance(value, str):
        if "\x00" in value:
            return "holds a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = ord(value[exc.start])
            return f"is not valid Unicode text (a lone surrogate \\u{bad:04x} at character {exc.start})"
        return None
    if isinstance(value, StrictModel):
        return None
    if isinstance(value, BaseModel):
        return text_problem(value.model_dump())
    if isinstance(value, dict):
        for k, v in value.items():
            problem = text_problem(k) or text_problem(v)
            if problem:
                return problem
    elif isinstance(value, (list, tuple)):
        for v in value:
            problem = text_problem(v)
            if problem:
                return problem
    return None


if TYPE_CHECKING:  # the type checker needs the class by name; at run time nothing private is imported
    from pydantic._internal._model_construction import ModelMetaclass as _ModelMetaclass
else:
    _ModelMetaclass = type(BaseModel)  # pydantic's model metaclass, taken from BaseModel itself


class _ConfigErrors(_ModelMetaclass):
    """Calling a model class raises :class:`~negminer.ConfigError` naming the first bad field. A metaclass, not an
    ``__init__`` override: pydantic runs a custom ``__init__`` during every validation, nested models and request
    bodies included, which must keep pydantic's ValidationError (with the nested field's path)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise config_error(exc) from None


class StrictModel(BaseModel, metaclass=_ConfigErrors):
    """Unknown fields refused, numbers finite, text valid: the base of the library's options
    (:class:`~negminer.mining.MiningConfig`, :class:`~negminer.trainer.TrainHyperparameters`) and of every REST
    request body, so one rule holds wherever a value comes in.

    One error convention: calling the class (``MiningConfig(...)``, ``TrainConfig(...)``) raises
    :class:`~negminer.ConfigError` naming the first bad field, whichever the model. Validation inside another model
    or of a request body (``model_validate``) keeps pydantic's ValidationError, so the REST API names the nested
    field (``hyperparameters.loss``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _valid_text(cls, value: Any) -> Any:
        problem = text_problem(value)
        if problem:
            raise ValueError(problem)
        return value
