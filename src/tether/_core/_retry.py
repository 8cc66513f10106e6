"""Retry decisions: whether a failed attempt may be repeated, and how long to wait first.

The question "may we retry?" is answered by failure phase x method, as azure-core and Finagle do:
a request that never left the client is always safe to repeat; once it may have reached the
server, only idempotent methods (RFC 9110 §9.2.2) or requests carrying an idempotency key are.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from tether._core._advice import should_retry_header
from tether._core._backoff import full_jitter

__all__ = [
    "DEFAULT_RETRY_STATUSES",
    "IDEMPOTENT_METHODS",
    "Verdict",
    "Wait",
    "WaitKind",
    "attempt_limits",
    "classify_error",
    "classify_status",
    "plan_wait",
]

#: Seconds by which a deadline may overrun when it coincides with an attempt's own limit.
DEADLINE_SLACK = 0.001

#: RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

#: 408 Request Timeout, 425 Too Early, 429 Too Many Requests, and the transient 5xx.
DEFAULT_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether to retry, and the reason a log line or hook will show."""

    retry: bool
    reason: str


def _replay_safe(method: str, idempotent_methods: frozenset[str], has_key: bool) -> bool:
    return has_key or method in idempotent_methods


def classify_status(
    method: str,
    status: int,
    headers: Mapping[str, str],
    *,
    statuses: frozenset[int],
    idempotent_methods: frozenset[str],
    has_idempotency_key: bool,
) -> Verdict | None:
    """Verdict for a response, or None when the status is not a failure worth judging."""
    # The server knows best whether the request is safe to repeat (Stainless SDK convention).
    explicit = should_retry_header(headers)
    if explicit is True:
        return Verdict(retry=True, reason=f"status {status}, x-should-retry: true")
    if explicit is False:
        return Verdict(retry=False, reason=f"status {status}, x-should-retry: false")
    if status not in statuses:
        return None
    if _replay_safe(method, idempotent_methods, has_idempotency_key):
        return Verdict(retry=True, reason=f"status {status}")
    return Verdict(
        retry=False,
        reason=f"status {status}; {method} without an idempotency key is not repeated",
    )


def classify_error(
    method: str,
    *,
    sent: bool,
    kind: str,
    idempotent_methods: frozenset[str],
    has_idempotency_key: bool,
    retryable: bool = True,
) -> Verdict:
    """Verdict for a transport failure; `sent` is False when the server cannot have the request."""
    if not retryable:
        return Verdict(retry=False, reason=f"{kind} (repeating would fail the same way)")
    if not sent:
        return Verdict(retry=True, reason=f"{kind} (never sent)")
    if _replay_safe(method, idempotent_methods, has_idempotency_key):
        return Verdict(retry=True, reason=f"{kind} (outcome unknown)")
    return Verdict(
        retry=False,
        reason=f"{kind} after sending; {method} without an idempotency key is not repeated",
    )


class WaitKind(enum.Enum):
    SLEEP = "sleep"
    #: The server asked for longer than the client is willing to wait.
    ADVICE_TOO_LONG = "advice_too_long"
    #: The wait would end after the call's deadline.
    PAST_DEADLINE = "past_deadline"


@dataclass(frozen=True, slots=True)
class Wait:
    kind: WaitKind
    delay: float
    #: True when the delay came from the server rather than from our backoff.
    advised: bool


def plan_wait(
    *,
    retry: int,
    advised: float | None,
    base_delay: float,
    max_delay: float,
    max_retry_after: float,
    rand: float,
    remaining: float | None,
) -> Wait:
    """How long to wait before retry number `retry`, or why not to wait at all.

    Server advice replaces our backoff (the server knows when it will be ready); a wait that is
    longer than `max_retry_after` or would cross the deadline is never started, so no caller sits
    in a sleep whose end it cannot use.
    """
    if advised is not None:
        if advised > max_retry_after:
            return Wait(WaitKind.ADVICE_TOO_LONG, advised, advised=True)
        if remaining is not None and advised >= remaining:
            return Wait(WaitKind.PAST_DEADLINE, advised, advised=True)
        return Wait(WaitKind.SLEEP, advised, advised=True)
    delay = full_jitter(retry, base=base_delay, cap=max_delay, rand=rand)
    if remaining is not None and delay >= remaining:
        return Wait(WaitKind.PAST_DEADLINE, delay, advised=False)
    return Wait(WaitKind.SLEEP, delay, advised=False)


def attempt_limits(
    *, remaining: float | None, attempt: float | None, connect: float | None
) -> tuple[float | None, float | None, bool]:
    """This attempt's (time limit, connect limit, whether the deadline is what limits it).

    An attempt gets its own limit or what is left of the call, whichever is smaller, and the
    connect phase never gets more than the attempt (azure-core shrinks each attempt to the time
    left the same way).
    """
    # Within a millisecond the deadline and the attempt limit are the same limit (timeout=30.0
    # sets both): the attempt keeps its own, so the transport can reuse one timeout object.
    capped = remaining is not None and (attempt is None or remaining < attempt - DEADLINE_SLACK)
    limit = remaining if capped else attempt
    if connect is None or (limit is not None and limit < connect):
        return limit, limit, capped
    return limit, connect, capped
