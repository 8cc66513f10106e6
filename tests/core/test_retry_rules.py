"""Retry verdicts by failure phase x method, and wait planning against caps and deadlines."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from tether._core._backoff import full_jitter
from tether._core._budget import RetryBudgetState
from tether._core._retry import (
    DEFAULT_RETRY_STATUSES,
    IDEMPOTENT_METHODS,
    WaitKind,
    classify_error,
    classify_status,
    plan_wait,
)

NO_HEADERS: CIMultiDict[str] = CIMultiDict()


def status_verdict(method: str, status: int, *, key: bool = False, **headers: str):  # type: ignore[no-untyped-def]
    return classify_status(
        method,
        status,
        CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}),
        statuses=DEFAULT_RETRY_STATUSES,
        idempotent_methods=IDEMPOTENT_METHODS,
        has_idempotency_key=key,
    )


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_retried_statuses_for_idempotent_methods(method: str, status: int) -> None:
    """The default transient statuses are retried for idempotent methods."""
    verdict = status_verdict(method, status)
    assert verdict is not None
    assert verdict.retry


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
def test_other_statuses_are_not_failures_to_retry(status: int) -> None:
    """Statuses outside the retry set get no verdict: the caller sees them at once."""
    assert status_verdict("GET", status) is None


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_sent_non_idempotent_request_is_not_repeated(method: str) -> None:
    """A POST that got a 503 may have been processed: without a key it is not repeated."""
    verdict = status_verdict(method, 503)
    assert verdict is not None
    assert not verdict.retry
    assert "idempotency key" in verdict.reason


def test_idempotency_key_makes_post_repeatable() -> None:
    """A POST carrying an idempotency key is repeated like a GET."""
    verdict = status_verdict("POST", 503, key=True)
    assert verdict is not None
    assert verdict.retry


def test_server_says_retry() -> None:
    """x-should-retry: true wins, even for a POST without a key and a status not in the set."""
    verdict = status_verdict("POST", 409, x_should_retry="true")
    assert verdict is not None
    assert verdict.retry


def test_server_says_do_not_retry() -> None:
    """x-should-retry: false wins over a retryable status."""
    verdict = status_verdict("GET", 503, x_should_retry="false")
    assert verdict is not None
    assert not verdict.retry


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
def test_never_sent_is_always_safe(method: str) -> None:
    """A connection that was never established is safe to retry for any method."""
    verdict = classify_error(
        method,
        sent=False,
        kind="ConnectError",
        idempotent_methods=IDEMPOTENT_METHODS,
        has_idempotency_key=False,
    )
    assert verdict.retry


@pytest.mark.parametrize(
    ("method", "key", "expected"),
    [("GET", False, True), ("POST", False, False), ("POST", True, True)],
)
def test_sent_outcome_unknown(method: str, key: bool, expected: bool) -> None:
    """After sending, only idempotent methods or keyed requests are retried."""
    verdict = classify_error(
        method,
        sent=True,
        kind="NetworkError",
        idempotent_methods=IDEMPOTENT_METHODS,
        has_idempotency_key=key,
    )
    assert verdict.retry is expected


@pytest.mark.parametrize("retry", [1, 2, 3, 10, 100])
@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_full_jitter_bounds(retry: int, rand: float) -> None:
    """The delay is rand times the doubled ceiling, never above the cap."""
    delay = full_jitter(retry, base=0.5, cap=8.0, rand=rand)
    ceiling = min(8.0, 0.5 * 2 ** (retry - 1))
    assert delay == pytest.approx(ceiling * rand)
    assert 0 <= delay <= 8.0


def plan(**kwargs: float | None):  # type: ignore[no-untyped-def]
    options: dict[str, float | None] = {
        "advised": None,
        "base_delay": 1.0,
        "max_delay": 8.0,
        "max_retry_after": 60.0,
        "rand": 1.0,
        "remaining": None,
    }
    options.update(kwargs)
    return plan_wait(retry=1, **options)  # type: ignore[arg-type]


def test_server_advice_replaces_backoff() -> None:
    """A Retry-After is waited exactly, not mixed with our own backoff."""
    wait = plan(advised=3.0)
    assert (wait.kind, wait.delay, wait.advised) == (WaitKind.SLEEP, 3.0, True)


def test_advice_over_the_cap_is_not_slept() -> None:
    """Advice longer than max_retry_after is refused, with the advised wait kept."""
    wait = plan(advised=120.0)
    assert (wait.kind, wait.delay) == (WaitKind.ADVICE_TOO_LONG, 120.0)


def test_advice_past_the_deadline_is_not_slept() -> None:
    """Advice that ends after the deadline is refused."""
    assert plan(advised=5.0, remaining=4.0).kind is WaitKind.PAST_DEADLINE


def test_backoff_past_the_deadline_is_not_slept() -> None:
    """Our own backoff that would cross the deadline is not started."""
    wait = plan(remaining=0.5)
    assert (wait.kind, wait.advised) == (WaitKind.PAST_DEADLINE, False)


class TestBudget:
    def test_floor_allows_retries_with_no_traffic(self) -> None:
        """With no requests at all, the floor still allows min_per_second * window retries."""
        budget = RetryBudgetState(percent=0.2, min_per_second=1.0, window=10.0)
        assert [budget.try_withdraw(0.0) for _ in range(11)] == [True] * 10 + [False]

    def test_percent_of_requests(self) -> None:
        """Each first attempt adds `percent` of a retry to the budget."""
        budget = RetryBudgetState(percent=0.2, min_per_second=0.0, window=10.0)
        for _ in range(50):
            budget.deposit(0.0)
        assert sum(budget.try_withdraw(0.0) for _ in range(20)) == 10

    def test_window_slides(self) -> None:
        """Retries spent more than a window ago no longer count."""
        budget = RetryBudgetState(percent=0.0, min_per_second=0.1, window=10.0)
        assert budget.try_withdraw(0.0)
        assert not budget.try_withdraw(5.0)
        assert budget.try_withdraw(10.5)

    def test_balance(self) -> None:
        """The balance is the floor plus deposits minus withdrawals."""
        budget = RetryBudgetState(percent=0.5, min_per_second=1.0, window=2.0)
        budget.deposit(0.0)
        budget.deposit(0.0)
        budget.try_withdraw(0.0)
        assert budget.balance(0.0) == pytest.approx(2.0)
