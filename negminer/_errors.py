"""The exception hierarchy of negminer, written down in one place.

::

    NegminerError               every error negminer raises on purpose; ``param`` names the option or request
    │                           field at fault, when there is one
    ├── DataError               bad input data; names the file, line and field (also a ValueError)
    ├── ConfigError             an invalid option or combination of options; ``param`` is the option (also a
    │                           ValueError)
    ├── ModelError              a model path or name that cannot be loaded as a sentence-transformers model
    ├── NonFiniteError          training turned a loss, weights or embeddings into NaN or infinity (``code``,
    │                           ``step``); nothing non-finite is saved as a model
    └── IndexFileError          an index file that is missing, corrupted (checksum) or does not match
                                what the caller expects (model fingerprint, dimension)

The service adds the states of its named indexes (``negminer.service``: ``IndexNotFound``, ``IndexExists``,
``IndexBusy``, ``IndexNotReady``), also NegminerErrors. Catch :class:`NegminerError` to handle all of them; the CLI
turns each into a one-line message and exit code 2, the service into a problem+json answer chosen by its type.
"""

from __future__ import annotations

from typing import Any


class NegminerError(Exception):
    """Base class of every error negminer raises on purpose.

    ``param``: the option or request field at fault (dotted for nested ones, ``mining.range_max``), or None.
    """

    param: str | None = None

    def __init__(self, *args: object, param: str | None = None) -> None:
        super().__init__(*args)
        if param is not None:
            self.param = param


class DataError(NegminerError, ValueError):
    """Bad input data. ``str()`` reads ``file:line: field 'x': what is wrong``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        param: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self._format(), param=param)

    def _format(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"field '{self.field}': " if self.field is not None else ""
        return f"{where}{field}{self.message}"


class ConfigError(NegminerError, ValueError):
    """An invalid option or combination of options. ``str()`` reads ``param: what is wrong`` when ``param`` is
    given, so a message always names the option."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.message = message
        super().__init__(f"{param}: {message}" if param else message, param=param)


class ModelError(NegminerError):
    """A model that cannot be loaded or does not produce embeddings."""


class NonFiniteError(NegminerError):
    """Training produced NaN or infinite numbers. ``code``: ``non_finite_loss`` (the loss of step ``step``) or
    ``non_finite_model`` (a model's weights or embeddings). Raised before anything non-finite is saved as a
    model, so the last good checkpoint is what remains."""

    def __init__(self, message: str, *, code: str = "non_finite_loss", step: int | None = None) -> None:
        super().__init__(message)
        self.code, self.step = code, step


class IndexFileError(NegminerError):
    """An index on disk that is missing, corrupted or does not match what the caller expects."""


_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "greater than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def error_message(error: dict[str, Any]) -> str:
    """One plain message of one pydantic error (``must be at least 2 (got 1)``, ``must be one of a, b``)."""
    kind, ctx = error.get("type"), error.get("ctx") or {}
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    if kind in ("enum", "literal_error"):  # "Input should be 'a', 'b' or 'c'" -> "must be one of a, b, c"
        msg = "must be one of " + str(ctx.get("expected", "")).replace("' or '", "', '").replace("'", "")
    elif kind == "finite_number":
        msg = "must be a finite number"
    elif kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        msg = f"must be {words} {ctx.get(key)}"
    if kind != "value_error" and "input" in error and not isinstance(error["input"], (dict, list)):
        msg += f" (got {error['input']!r})"
    return msg


def validation_errors(exc: BaseException) -> list[tuple[str, str]]:
    """(dotted field, message) of each error of a pydantic ``ValidationError``; empty for any other exception."""
    errors = getattr(exc, "errors", None)
    if not (callable(errors) and type(exc).__name__ == "ValidationError"):
        return []
    return [(".".join(str(x) for x in e.get("loc", ())), error_message(e)) for e in errors()]


def config_error(exc: BaseException) -> ConfigError:
    """A ConfigError naming the first field of a pydantic ``ValidationError`` (and saying every error)."""
    errors = validation_errors(exc)
    if not errors:
        return exc if isinstance(exc, ConfigError) else ConfigError(str(exc))
    field = errors[0][0] or None
    message = "; ".join(msg if loc == errors[0][0] else f"{loc}: {msg}" for loc, msg in errors)
    return ConfigError(message, param=field)


def describe(exc: BaseException) -> str:
    """One line for an error; a pydantic ValidationError becomes ``field: message; field: message``."""
    errors = validation_errors(exc)
    if errors:
        return "; ".join(f"{loc or 'options'}: {msg}" for loc, msg in errors)
    return str(exc)
