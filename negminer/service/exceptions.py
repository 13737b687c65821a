"""The service's exceptions, in one place (as httpx keeps its own): what the index registry raises, each a
:class:`~negminer.NegminerError` naming the parameter at fault. :mod:`negminer.service.errors` maps each to its HTTP
status and problem+json ``code``; a test pins this module's ``__all__``."""

from __future__ import annotations

from negminer._errors import NegminerError
from negminer.client.schemas import OperationError

__all__ = ["IndexBusy", "IndexDeleting", "IndexExists", "IndexNotFound", "IndexNotReady"]


class IndexNotFound(NegminerError, KeyError):
    """No index of that name (``name``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no index named {name!r}", param="name")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


class IndexExists(NegminerError):
    """An index of that name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"index {name!r} already exists", param="name")
        self.name = name


class IndexBusy(NegminerError):
    """The index is building its next version; one operation at a time."""

    def __init__(self, name: str, operation: str) -> None:
        super().__init__(f"index {name!r} is busy ({operation})", param="name")
        self.name, self.operation = name, operation


class IndexDeleting(NegminerError):
    """The name belongs to an index being deleted (its tombstone); it is free again in a moment."""

    def __init__(self, name: str) -> None:
        super().__init__(f"index {name!r} is being deleted; try again in a moment", param="name")
        self.name = name


class IndexNotReady(NegminerError):
    """The index has no version to serve yet (still building) or its build failed."""

    def __init__(self, name: str, status: str, error: OperationError | None = None) -> None:
        said = f": {error.message} ({error.code})" if error else ""
        super().__init__(f"index {name!r} is {status}{said}", param="name")
        self.name, self.status = name, status
