"""How the outbox retries, leases and keeps its records; the schedule arithmetic is pure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tether._errors import ConfigError
from tether._flow import Breaker

__all__ = ["DEFAULT_SCHEDULE", "OutboxPolicy", "check_schedule"]

_MINUTE = 60.0
_HOUR = 3600.0
_DAY = 86_400.0

#: Delays before each retry; the first attempt is immediate. Six attempts over about 12.5 h:
#: immediately, then after 1 min, 5 min, 25 min, 2 h and 10 h.
DEFAULT_SCHEDULE: tuple[float, ...] = (_MINUTE, 5 * _MINUTE, 25 * _MINUTE, 2 * _HOUR, 10 * _HOUR)


def _number(name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}")


def _count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int of at least 1")


def check_schedule(schedule: object) -> tuple[float, ...]:
    """`schedule` as a tuple of retry delays in seconds.

    Raises:
        ConfigError: not a sequence of finite numbers >= 0, or longer than 50 retries.
    """
    if isinstance(schedule, str | bytes) or not isinstance(schedule, list | tuple):
        raise ConfigError("a schedule is a list of delays in seconds, e.g. [60, 300, 1500]")
    for delay in schedule:
        _number("a schedule delay", delay, allow_zero=True)
    if len(schedule) > 50:
        raise ConfigError("a schedule has at most 50 retries")
    return tuple(float(delay) for delay in schedule)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxPolicy:
    """The outbox's defaults; endpoints may override the schedule and the timeout.

    Durations are in seconds.
    """

    #: Delays before each retry (the first attempt is immediate); an endpoint may set its own.
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    #: Each delay is spread by up to this fraction either way, so endpoints that failed
    #: together are not retried together.
    jitter: float = 0.2
    #: The longest `Retry-After` honoured: longer advice waits this long.
    max_retry_after: float = 6 * _HOUR
    #: An attempt's time limit for endpoints that set none.
    timeout: float = 15.0
    #: The longest time limit an endpoint may set; leases are sized from it.
    max_timeout: float = 60.0
    #: Added to `max_timeout` to size a lease; in-flight leases are renewed by a heartbeat
    #: every third of the lease, so only a stalled or killed worker lets one run out.
    lease_grace: float = 30.0
    #: Deliveries one worker attempts at once.
    concurrency: int = 64
    #: Seconds between looks at the store when nothing woke the worker.
    poll_interval: float = 1.0
    #: Disable an endpoint that has failed continuously this long; None never does.
    disable_after: float | None = 5 * _DAY
    #: Attempt log entries are deleted this long after they were made.
    attempt_retention: float = 30 * _DAY
    #: Finished deliveries, and messages left with none, are deleted this long after they
    #: were enqueued; None keeps them.
    message_retention: float | None = 30 * _DAY
    #: Seconds between purges.
    purge_interval: float = _HOUR
    #: Characters of a response body kept in the attempt log.
    response_excerpt: int = 1000
    #: The largest payload `enqueue` accepts, in bytes.
    max_payload: int = 1024 * 1024
    #: A circuit breaker per endpoint (its `scope` is always the endpoint); None for none.
    breaker: Breaker | None = field(default_factory=lambda: Breaker(scope="client"))
    #: How long a delivery may wait for its endpoint's rate limit before it is put back.
    rate_limit_wait: float = 5.0
    #: Seconds an endpoint's configuration is cached by a worker before it is read again.
    endpoint_ttl: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", check_schedule(self.schedule))
        if isinstance(self.jitter, bool) or not 0 <= self.jitter < 1:
            raise ConfigError("jitter must be a fraction from 0 to below 1")
        for name in (
            "max_retry_after",
            "timeout",
            "max_timeout",
            "lease_grace",
            "poll_interval",
            "attempt_retention",
            "purge_interval",
            "rate_limit_wait",
            "endpoint_ttl",
        ):
            _number(name, getattr(self, name))
        for name in ("disable_after", "message_retention"):
            if getattr(self, name) is not None:
                _number(name, getattr(self, name))
        for name in ("concurrency", "response_excerpt", "max_payload"):
            _count(name, getattr(self, name))
        if self.timeout > self.max_timeout:
            raise ConfigError("timeout must not exceed max_timeout")
        if self.breaker is not None and not isinstance(self.breaker, Breaker):
            raise ConfigError("breaker must be a tether.Breaker or None")

    @property
    def lease_seconds(self) -> float:
        """How long a claimed delivery stays invisible to other workers."""
        return self.max_timeout + self.lease_grace

    def retry_delay(
        self, attempt: int, *, schedule: tuple[float, ...] | None, rand: float
    ) -> float | None:
        """Seconds before the next attempt after failed attempt number `attempt` (1 first),
        or None when the schedule is spent and the delivery is dead."""
        steps = self.schedule if schedule is None else schedule
        if attempt < 1 or attempt > len(steps):
            return None
        return steps[attempt - 1] * (1.0 + self.jitter * (2.0 * rand - 1.0))

    def honour_retry_after(self, scheduled: float, retry_after: float | None) -> float:
        """The delay once the server's `Retry-After` is taken into account.

        Never sooner than the server asked (up to `max_retry_after`), never sooner than the
        schedule: advice can only push a retry later.
        """
        if retry_after is None:
            return scheduled
        return max(scheduled, min(retry_after, self.max_retry_after))
