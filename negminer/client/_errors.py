"""The client's exceptions: what the service answered when it refused a call, and a model archive refused."""

from __future__ import annotations

from negminer._errors import NegminerError
from negminer.client.schemas import Problem

__all__ = ["ArchiveError", "ServiceError"]


class ServiceError(NegminerError):
    """The service answered an error (``status``, its problem+json ``problem``) or something unreadable."""

    def __init__(
        self, message: str, *, status: int | None = None, problem: Problem | None = None, param: str | None = None
    ) -> None:
        super().__init__(message, param=param or (problem.param if problem else None))
        self.status, self.problem = status, problem


class ArchiveError(NegminerError):
    """A model archive that is not a complete tar, holds an entry that could write outside its folder (``..``, an
    absolute path, a link, a device), or is over the caps (``too_large``)."""

    def __init__(self, why: str, *, too_large: bool = False) -> None:
        super().__init__(why, param="file")
        self.too_large = too_large
