"""Pure polling rules: next poll delay, availability with staleness, refresh debouncing."""

from __future__ import annotations

import pytest

from tether._core._polling import is_available, poll_delay, refresh_at


def delay(**options: float) -> float:
    settings: dict[str, float] = {
        "interval": 60.0,
        "jitter": 0.0,
        "rand": 0.0,
        "consecutive_failures": 0,
        "failure_interval": 10.0,
        "max_failure_interval": 300.0,
    }
    settings.update(options)
    return poll_delay(**settings)  # type: ignore[arg-type]


def test_success_waits_the_interval_plus_jitter() -> None:
    """After a success the next poll is one interval away, stretched by up to `jitter`."""
    assert delay() == 60.0
    assert delay(jitter=0.1, rand=0.5) == pytest.approx(63.0)


def test_failures_back_off_exponentially_to_the_cap() -> None:
    """Consecutive failures double the wait from failure_interval, up to the cap."""
    waits = [delay(consecutive_failures=n) for n in range(1, 8)]
    assert waits == [10, 20, 40, 80, 160, 300, 300]
    assert delay(consecutive_failures=10_000) == 300.0


def test_retry_after_is_a_floor() -> None:
    """A rate limit's Retry-After pushes the next poll out, never in."""
    assert delay(consecutive_failures=1, retry_after=120.0) == 120.0
    assert delay(consecutive_failures=6, retry_after=5.0) == 300.0


def test_availability_survives_failures_below_the_threshold() -> None:
    """Data stays available through N-1 failures and goes away at N."""
    common = {"has_data": True, "age": 10.0, "max_age": None}
    assert is_available(consecutive_failures=2, max_failures=3, **common)  # type: ignore[arg-type]
    assert not is_available(consecutive_failures=3, max_failures=3, **common)  # type: ignore[arg-type]


def test_availability_ends_with_staleness() -> None:
    """Data older than max_age is unavailable even with few failures."""
    assert is_available(has_data=True, consecutive_failures=0, age=600, max_failures=3, max_age=600)
    assert not is_available(
        has_data=True, consecutive_failures=1, age=601, max_failures=3, max_age=600
    )


def test_no_data_is_never_available() -> None:
    """Before a first success there is nothing to show."""
    assert not is_available(
        has_data=False, consecutive_failures=0, age=None, max_failures=3, max_age=None
    )


def test_refresh_runs_at_once_then_after_the_cooldown() -> None:
    """A requested refresh leads immediately, then waits for the cooldown to pass."""
    assert refresh_at(now=100.0, last_started=None, cooldown=10.0) == 100.0
    assert refresh_at(now=100.0, last_started=95.0, cooldown=10.0) == 105.0
    assert refresh_at(now=100.0, last_started=80.0, cooldown=10.0) == 100.0
