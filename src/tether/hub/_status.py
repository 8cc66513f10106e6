"""Per-integration health, as the hub's clients see it: the rows of `GET /integrations`.

Each integration's `tether.Client` is built with event hooks that count attempts and their
outcomes; the pollers report each call's failure (with its class and a redacted message),
which also covers what never reached the wire (an open circuit, a rate-limit wait refused).
The breaker state comes from `client.circuits()`, the rate-limit budget from the client's
limiters. Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from tether._client import Client
from tether._errors import HTTPStatusError, RequestError
from tether._flow import RateLimiter
from tether._models import Request, Response
from tether._observe import RetryEvent

__all__ = ["IntegrationHealth", "PollerView", "Status", "error_info", "worst_circuit"]

Status = Literal["ok", "degraded", "down"]

_CIRCUIT_ORDER = {"closed": 0, "half_open": 1, "open": 2}
#: Longest error message kept: enough to read, short enough for a status page.
_MAX_MESSAGE = 500


def error_info(error: BaseException, redact: Callable[[str], str], at: float) -> dict[str, Any]:
    """`{"class", "message", "at"}` of an error, its message redacted and shortened."""
    text = redact(str(error).replace("\n", " ").strip())
    return {"class": type(error).__name__, "message": text[:_MAX_MESSAGE], "at": at}


def worst_circuit(circuits: Iterable[str]) -> str | None:
    """The worst state among a client's circuits (one per host): open > half_open > closed."""
    states = list(circuits)
    if not states:
        return None
    return max(states, key=lambda state: _CIRCUIT_ORDER.get(state, 0))


@dataclass(frozen=True, slots=True)
class PollerView:
    """What the status of an integration needs to know about one of its pollers."""

    name: str
    available: bool
    failing: bool


@dataclass(slots=True)
class IntegrationHealth:
    """Counters and the last outcome of one integration's client, fed by its event hooks."""

    name: str
    clock: Callable[[], float] = time.time
    requests: int = 0
    failures: int = 0
    #: Attempts by outcome: success, http_error, transport_error, rejected.
    outcomes: dict[str, int] = field(default_factory=dict)
    last_success: float | None = None
    last_error: dict[str, Any] | None = None
    last_failed: bool = False
    client: Client | None = None
    #: Whether the breaker is on, so a client with no circuits yet reads "closed", not null.
    has_breaker: bool = False
    redact: Callable[[str], str] = str

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    # -- the client's event hooks -------------------------------------------------------------

    def on_request(self, request: Request) -> None:
        del request
        self.requests += 1

    def on_response(self, response: Response) -> None:
        if response.status < 400:
            self._count("success")
            self.last_success = self.clock()
            self.last_failed = False
            return
        self._count("http_error")
        self.failures += 1
        self.last_failed = True

    def on_retry(self, event: RetryEvent) -> None:
        # A retried attempt that got no answer at all; answered ones were counted above.
        if event.response is None and event.error is not None:
            self._count("transport_error")
            self.failures += 1
            self.last_failed = True
            self.last_error = error_info(event.error, self.redact, self.clock())

    def hooks(self) -> dict[str, Any]:
        """The `Client(...)` keyword arguments that feed this tracker."""
        return {
            "on_request": self.on_request,
            "on_response": self.on_response,
            "on_retry": self.on_retry,
        }

    # -- whole calls --------------------------------------------------------------------------

    def call_failed(self, error: BaseException) -> None:
        """A call raised: its last attempt's error, or a refusal before any attempt."""
        self.last_error = error_info(error, self.redact, self.clock())
        self.last_failed = True
        if isinstance(error, HTTPStatusError):
            return  # its attempt was counted when the response came in
        if isinstance(error, RequestError):
            self._count("transport_error")
            self.failures += 1
        else:
            self._count("rejected")

    def call_succeeded(self) -> None:
        self.last_failed = False

    # -- reading ------------------------------------------------------------------------------

    def breaker(self) -> str | None:
        client = self.client
        if client is None or not self.has_breaker:
            return None
        return worst_circuit(client.circuits().values()) or "closed"

    def rate_limit(self, now_monotonic: float) -> dict[str, Any] | None:
        """`{"limit", "available", "retry_after"}` of the client's first limiter, or None."""
        client = self.client
        limiters: tuple[RateLimiter, ...] = getattr(client, "rate_limiters", ()) or ()
        for limiter in limiters:
            limits = limiter.limits
            if not limits:
                continue
            limit = limits[0]
            buckets = [b for b in getattr(limiter, "_buckets", {}).values() if b.gcra is not None]
            if buckets:
                available = min(b.gcra.available(now_monotonic) for b in buckets)
                retry_after = max(b.gcra.peek(now_monotonic) for b in buckets)
            else:
                available, retry_after = float(limit.burst), 0.0
            return {
                "limit": _limit_text(limit.rate, limit.per),
                "available": round(available, 3),
                "retry_after": round(retry_after, 3),
            }
        return None

    def status(self, pollers: Iterable[PollerView]) -> Status:
        """down: breaker open, or every poller unavailable. degraded: breaker half open, a
        poller unavailable or failing, or the last request failed. ok otherwise."""
        views = list(pollers)
        breaker = self.breaker()
        if breaker == "open" or (views and not any(v.available for v in views)):
            return "down"
        if (
            breaker == "half_open"
            or any(not v.available or v.failing for v in views)
            or self.last_failed
        ):
            return "degraded"
        return "ok"


def _limit_text(rate: float, per: float) -> str:
    units = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "day"}
    if per in units:
        return f"{rate:g}/{units[per]}"
    return f"{rate:g}/{per:g}s"
