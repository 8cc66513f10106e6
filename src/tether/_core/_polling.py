"""Polling decisions for the coordinator: when to poll next, whether data is still available,
when a requested refresh may run. Pure: time and randomness are passed in.

Home Assistant's DataUpdateCoordinator polls at a fixed interval, marks data unavailable after a
single failed poll and has no backoff; users re-implement grace windows and backoff in every
integration. These rules are the fix, kept apart from the I/O so each can be tested with numbers.
"""

from __future__ import annotations

__all__ = ["is_available", "poll_delay", "refresh_at"]


def poll_delay(
    *,
    interval: float,
    jitter: float,
    rand: float,
    consecutive_failures: int,
    failure_interval: float,
    max_failure_interval: float,
    retry_after: float | None = None,
) -> float:
    """Seconds until the next poll.

    After a success: `interval`. After the n-th consecutive failure: `failure_interval`
    doubled n-1 times, capped at `max_failure_interval`. Either is stretched by up to `jitter`
    (a fraction) at random, so many coordinators started together do not poll together. A
    server's `Retry-After` is a floor: polling sooner would only be refused again.
    """
    if consecutive_failures <= 0:
        base = interval
    else:
        # The exponent is clamped so that a long outage cannot overflow the float.
        base = min(
            max_failure_interval, failure_interval * 2.0 ** min(consecutive_failures - 1, 62)
        )
    delay = base * (1.0 + jitter * rand)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def is_available(
    *,
    has_data: bool,
    consecutive_failures: int,
    age: float | None,
    max_failures: int,
    max_age: float | None,
) -> bool:
    """Whether last good data may still be shown: only N failures in a row or T of staleness
    (seconds since the last success) take it away, never one failed poll."""
    if not has_data:
        return False
    if consecutive_failures >= max_failures:
        return False
    return max_age is None or age is None or age <= max_age


def refresh_at(*, now: float, last_started: float | None, cooldown: float) -> float:
    """When a requested refresh may start: at once if none started within `cooldown`, else
    when the cooldown ends. Requests made before then are coalesced into that one refresh."""
    if last_started is None:
        return now
    return max(now, last_started + cooldown)
