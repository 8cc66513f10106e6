"""The circuit-breaker policy: stop calling a host that is down, probe it, recover."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tether._clock import Clock
from tether._core._breaker import (
    BreakerMetrics,
    BreakerState,
    CircuitState,
    ErrorKind,
    Transition,
    TransitionReason,
    classify,
)
from tether._errors import (
    CircuitOpenError,
    ConnectError,
    ConnectTimeout,
    RequestError,
    TimeoutError,
)
from tether._flow import Breaker, BreakerEvent
from tether._types import Send

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["BreakerPolicy"]

logger = logging.getLogger("tether")


def _error_kind(error: RequestError) -> ErrorKind:
    if isinstance(error, ConnectError | ConnectTimeout):
        return ErrorKind.CONNECT
    if isinstance(error, TimeoutError):
        return ErrorKind.TIMEOUT
    return ErrorKind.NETWORK


_CANCELLED = classify(None, ErrorKind.CANCELLED)


class BreakerPolicy:
    """Records every attempt's outcome; an open circuit raises `CircuitOpenError` unsent.

    It sits inside the retry loop, so each attempt counts and an opening circuit ends the
    remaining retries at once instead of letting them pile onto a failing host. With gossip,
    each call first tells it this circuit's state and learns, from its cached view, whether a
    quorum of instances report the circuit open; a closed circuit then opens on that evidence.
    """

    __slots__ = ("_by_url", "_clock", "_settings", "_states")

    def __init__(self, settings: Breaker, *, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._states: dict[str, BreakerState] = {}
        # Key and circuit by full URL: the URL is the client's cached string, so a repeated
        # URL costs one lookup instead of cutting out and hashing its host again.
        self._by_url: dict[str, tuple[str, BreakerState]] = {}

    def state(self, key: str) -> BreakerState:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = BreakerState(self._settings.config())
        return state

    def states(self) -> dict[str, CircuitState]:
        """The state of every circuit seen so far, by host (or "" for scope="client")."""
        return {key: state.state for key, state in self._states.items()}

    def metrics(self) -> dict[str, BreakerMetrics]:
        """Each circuit's counts and rates over its window, and its state, for exporters."""
        now = self._clock.monotonic()
        return {key: state.metrics(now) for key, state in self._states.items()}

    def _key(self, request: Request) -> str:
        if self._settings.scope == "client":
            return ""
        url = request.url
        end = url.find("/", url.find("://") + 3)
        return url if end < 0 else url[:end]

    def _circuit(self, request: Request) -> tuple[str, BreakerState]:
        key = self._key(request)
        found = key, self.state(key)
        if len(self._by_url) >= 1024:
            self._by_url.clear()
        self._by_url[request.url] = found
        return found

    async def send(self, request: Request, next_: Send) -> Response:
        clock = self._clock
        key, state = self._by_url.get(request.url) or self._circuit(request)
        started = clock.monotonic()
        gossip = self._settings.gossip
        if gossip is not None:
            current = state.state
            on_evidence = state.open_reason is TransitionReason.SHARED_EVIDENCE
            if (
                gossip.quorum_open(key, current, on_evidence=on_evidence)
                and current is CircuitState.CLOSED
            ):
                opened = state.open_on_evidence(started)
                if opened is not None:
                    self._report(key, opened)
        decision = state.allow(started)
        if decision.transition is not None:
            self._report(key, decision.transition)
        if not decision.admitted:
            retry_at = decision.retry_at if decision.retry_at is not None else started
            raise CircuitOpenError(
                f"{request.method} {request.redacted_url()}: the circuit for {key or 'this client'}"
                f" is open; it lets a probe through in {max(0.0, retry_at - started):.1f} s",
                retry_at=retry_at,
            )
        # Every admitted call must report back, or a half-open circuit waits for its probe
        # forever.
        outcome = _CANCELLED
        try:
            response = await next_(request)
        except RequestError as error:
            outcome = classify(None, _error_kind(error))
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            outcome = classify(None, ErrorKind.OTHER)
            raise
        else:
            outcome = classify(response.status, ignored_statuses=self._settings.ignore_statuses)
            return response
        finally:
            now = clock.monotonic()
            transition = state.record(now, outcome, now - started)
            if transition is not None:
                self._report(key, transition)

    def _report(self, key: str, transition: Transition) -> None:
        event = BreakerEvent.of(key, transition)
        level = logging.WARNING if event.to_state is CircuitState.OPEN else logging.INFO
        if logger.isEnabledFor(level):
            detail = ""
            if event.failure_rate is not None:
                detail = f" (failure rate {event.failure_rate:.0%}"
                if event.slow_call_rate:
                    detail += f", slow calls {event.slow_call_rate:.0%}"
                detail += ")"
            logger.log(
                level,
                "circuit for %s: %s -> %s, %s%s",
                key or "client",
                event.from_state,
                event.to_state,
                event.reason,
                detail,
                extra={"circuit": key, "circuit_state": str(event.to_state)},
            )
        gossip = self._settings.gossip
        if gossip is not None:
            gossip.on_state_change(event)
        hook = self._settings.on_state_change
        if hook is not None:
            hook(event)
