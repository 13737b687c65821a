"""One retry policy for everything negminer retries (tenacity): the job database, the index service, deletes.

Exponential backoff from ``initial`` seconds, doubling up to ``maximum``, for at most ``seconds`` in all (no sleep
that would pass that budget), one warning on the first retry; the caller says which failures are worth another
try and what the last one becomes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import tenacity

__all__ = ["retrying"]


def retrying(
    seconds: float,
    *,
    retry_on: Callable[[BaseException], bool] | None = None,
    retry_result: Callable[[Any], bool] | None = None,
    initial: float = 0.2,
    maximum: float = 5.0,
    attempts: int | None = None,
    logger: logging.Logger,
    what: str,
) -> tenacity.Retrying:
    """A ``tenacity.Retrying`` with negminer's policy: retried while ``retry_on(exception)`` (or
    ``retry_result(value)``) holds, for ``seconds`` (and at most ``attempts`` tries, when given); afterwards the last
    exception is raised, or the last value returned, as it came. ``what`` opens the one warning logged
    ("job database unreachable")."""
    conditions: list[Any] = []
    if retry_on is not None:
        conditions.append(tenacity.retry_if_exception(retry_on))
    if retry_result is not None:
        conditions.append(tenacity.retry_if_result(retry_result))
    stop: Any = tenacity.stop_before_delay(seconds)
    if attempts is not None:
        stop = stop | tenacity.stop_after_attempt(attempts)

    def warn(state: tenacity.RetryCallState) -> None:
        if state.attempt_number == 1:
            outcome = state.outcome
            why = outcome.exception() if outcome is not None and outcome.failed else "an answer worth retrying"
            logger.warning("%s (%s); retrying for up to %.0f s", what, why, seconds)

    return tenacity.Retrying(
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=initial, min=initial, max=maximum),
        retry=tenacity.retry_any(*conditions) if conditions else tenacity.retry_never,
        before_sleep=warn,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome is not None else None,
        reraise=True,
    )
