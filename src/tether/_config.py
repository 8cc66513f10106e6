"""Client options as frozen value objects, validated on construction."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from tether._core._retry import DEFAULT_RETRY_STATUSES, IDEMPOTENT_METHODS
from tether._errors import ConfigError

__all__ = ["Retry", "RetryBudget", "Timeout"]

DEFAULT_TOTAL_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_ATTEMPT_TIMEOUT = 30.0


def _positive(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None:
        if not allow_none:
            raise ConfigError(f"{name} must be a number of seconds, not None")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeout:
    """Time limits. `total` bounds the whole call: every attempt and every wait between them.

    Each attempt gets `min(attempt, time left of total)`; `connect` bounds establishing the
    connection within an attempt. None means "no limit" for that field.
    """

    total: float | None = DEFAULT_TOTAL_TIMEOUT
    connect: float | None = DEFAULT_CONNECT_TIMEOUT
    attempt: float | None = DEFAULT_ATTEMPT_TIMEOUT

    def __post_init__(self) -> None:
        _positive("Timeout.total", self.total)
        _positive("Timeout.connect", self.connect)
        _positive("Timeout.attempt", self.attempt)

    @classmethod
    def coerce(cls, value: Timeout | float | None) -> Timeout:
        """`timeout=30.0` means 30 s for the whole call, each attempt included."""
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(total=None, connect=DEFAULT_CONNECT_TIMEOUT, attempt=None)
        _positive("timeout", value)
        return cls(total=value, connect=min(DEFAULT_CONNECT_TIMEOUT, value), attempt=value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """Retries may add `percent` of first attempts plus `min_per_second` over `window` seconds.

    Kept per client and host, like Finagle's retry budget: enough for a quiet client to retry,
    too little for a busy one to turn an outage into a retry storm.
    """

    percent: float = 0.2
    min_per_second: float = 10.0
    window: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 10:
            raise ConfigError(f"RetryBudget.percent must be within 0..10, got {self.percent!r}")
        if self.min_per_second < 0:
            raise ConfigError("RetryBudget.min_per_second must not be negative")
        _positive("RetryBudget.window", self.window, allow_none=False)


def _statuses(values: Iterable[int]) -> frozenset[int]:
    statuses = frozenset(values)
    for status in statuses:
        # Checked at run time too: configuration often comes from untyped TOML.
        candidate: object = status
        if not isinstance(candidate, int) or not 100 <= candidate <= 599:
            raise ConfigError(f"Retry.statuses holds {status!r}, not an HTTP status")
    return statuses


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """How failed attempts are repeated.

    Args:
        attempts: Total attempts, the first included (1 disables retrying).
        base_delay: First backoff ceiling in seconds; it doubles per retry, full jitter applied.
        max_delay: Largest backoff ceiling.
        jitter: Full jitter (a uniform draw below the ceiling); False waits the ceiling itself,
            which is predictable but lets clients that failed together retry together.
        max_retry_after: Longest server-advised wait honoured; longer advice raises at once
            with the advised wait on the exception.
        statuses: Statuses worth retrying.
        idempotent_methods: Methods repeated after the request may have reached the server.
        idempotency_key: Add an idempotency key to non-idempotent requests, generated once
            per call and reused on every attempt, so they become safe to repeat.
        idempotency_header: The header that carries it; a key the caller set wins.
        budget: The retry budget per client and host, or None for none.
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: bool = True
    max_retry_after: float = 60.0
    statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    idempotent_methods: frozenset[str] = field(default=IDEMPOTENT_METHODS)
    idempotency_key: bool = False
    idempotency_header: str = "Idempotency-Key"
    budget: RetryBudget | None = field(default_factory=RetryBudget)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigError(f"Retry.attempts must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise ConfigError(
                f"Retry.attempts counts the first try too, so must be >= 1, got {self.attempts}"
            )
        _positive("Retry.base_delay", self.base_delay, allow_none=False)
        _positive("Retry.max_delay", self.max_delay, allow_none=False)
        if self.max_retry_after < 0:
            raise ConfigError("Retry.max_retry_after must not be negative")
        object.__setattr__(self, "statuses", _statuses(self.statuses))
        object.__setattr__(
            self, "idempotent_methods", frozenset(m.upper() for m in self.idempotent_methods)
        )
        if not self.idempotency_header.strip():
            raise ConfigError("Retry.idempotency_header must name a header")


#: What `retry=None` means: one attempt, but server advice is still shared and obeyed.
NO_RETRY = Retry(attempts=1, budget=None)
