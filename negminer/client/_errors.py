"""The client's exceptions: what the service answered when it refused a call, and a model archive refused."""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from negminer._errors import NegminerError
from negminer.client.schemas import Problem

__all__ = ["RETRY_STATUSES", "ArchiveError", "ServiceError"]

RETRY_STATUSES = (502, 503, 504)  # a service restarting, or its database down: worth another try


class ServiceError(NegminerError):
    """The service answered an error (``status``, its problem+json ``problem``) or something unreadable."""

    def __init__(
        self, message: str, *, status: int | None = None, problem: Problem | None = None, param: str | None = None
    ) -> None:
        super().__init__(message, param=param or (problem.param if problem else None))
        self.status, self.problem = status, problem

    @classmethod
    def from_answer(cls, r: httpx.Response, what: str) -> ServiceError:
        """The error of an answer of 400 or more to ``what`` (``"index service: GET /v1/..."``), with its
        problem+json when it has one."""
        try:
            problem: Problem | None = Problem.model_validate(r.json())
        except (ValueError, ValidationError):
            problem = None
        detail = problem.detail if problem else r.text
        return cls(f"{what} -> {r.status_code}: {detail}", status=r.status_code, problem=problem)

    @property
    def retryable(self) -> bool:
        """Whether another try may go through: the service could not be reached, or answered that it is restarting
        or overloaded (502 / 503 / 504)."""
        return self.status is None or self.status in RETRY_STATUSES


class ArchiveError(NegminerError):
    """A model archive that is not a complete tar, holds an entry that could write outside its folder (``..``, an
    absolute path, a link, a device), or is over the caps (``too_large``)."""

    def __init__(self, why: str, *, too_large: bool = False) -> None:
        super().__init__(why, param="file")
        self.too_large = too_large
