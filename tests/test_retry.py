"""negminer's one retry policy (tenacity): what is retried, for how long, and what the caller gets at the end."""

from __future__ import annotations

import logging

import pytest

from negminer._retry import retrying

log = logging.getLogger("negminer.test")


def _flaky(failures: int, exc: type[BaseException] = ConnectionError):
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise exc("down")
        return "up"

    return call, calls


def test_retries_until_it_works_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    call, calls = _flaky(3)
    policy = retrying(5, retry_on=lambda e: isinstance(e, ConnectionError), initial=0.01, logger=log, what="x down")
    with caplog.at_level(logging.WARNING, logger="negminer.test"):
        assert policy(call) == "up"
    assert calls["n"] == 4
    assert [r.getMessage() for r in caplog.records] == ["x down (down); retrying for up to 5 s"]


def test_other_errors_are_not_retried_and_the_budget_ends_it() -> None:
    call, calls = _flaky(1, ValueError)
    with pytest.raises(ValueError):
        retrying(5, retry_on=lambda e: isinstance(e, ConnectionError), logger=log, what="x")(call)
    assert calls["n"] == 1
    call, calls = _flaky(10**6)
    policy = retrying(0.3, retry_on=lambda e: isinstance(e, ConnectionError), initial=0.05, logger=log, what="x")
    with pytest.raises(ConnectionError):  # the last error, as it came
        policy(call)
    assert 2 <= calls["n"] <= 6
    call, calls = _flaky(10**6)
    with pytest.raises(ConnectionError):
        retrying(60, retry_on=lambda e: True, initial=0.01, attempts=3, logger=log, what="x")(call)
    assert calls["n"] == 3


def test_an_answer_worth_retrying_is_returned_when_the_budget_ends() -> None:
    answers = iter([503, 503, 200])
    policy = retrying(5, retry_result=lambda status: status == 503, initial=0.01, logger=log, what="x")
    assert policy(lambda: next(answers)) == 200
    policy = retrying(0.05, retry_result=lambda status: status == 503, initial=0.02, logger=log, what="x")
    assert policy(lambda: 503) == 503
