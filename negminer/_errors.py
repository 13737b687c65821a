"""The exception hierarchy of negminer, written down in one place.

::

    NegminerError               every error negminer raises on purpose
    ├── DataError               bad input data; names the file, line and field (also a ValueError)
    ├── ConfigError             an invalid option or combination of options (also a ValueError)
    ├── ModelError              a model path or name that cannot be loaded as a sentence-transformers model
    └── IndexFileError          an index file that is missing, corrupted (checksum) or does not match
                                what the caller expects (model fingerprint, dimension)

Catch :class:`NegminerError` to handle all of them; the CLI turns each into a one-line message and exit code 2.
"""

from __future__ import annotations


class NegminerError(Exception):
    """Base class of every error negminer raises on purpose."""


class DataError(NegminerError, ValueError):
    """Bad input data. ``str()`` reads ``file:line: field 'x': what is wrong``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self._format())

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
    """An invalid option or combination of options; the message names the option."""


class ModelError(NegminerError):
    """A model that cannot be loaded or does not produce embeddings."""


class IndexFileError(NegminerError):
    """An index on disk that is missing, corrupted or does not match what the caller expects."""


def describe(exc: BaseException) -> str:
    """One line for an error; a pydantic ValidationError becomes ``field: message; field: message``."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        parts = []
        for e in errors():
            loc = ".".join(str(x) for x in e.get("loc", ())) or "options"
            msg = str(e.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}")
        return "; ".join(parts)
    return str(exc)
