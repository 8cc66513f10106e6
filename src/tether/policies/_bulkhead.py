"""The bulkhead policy: a bounded number of requests in flight, a bounded queue behind them."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from tether._clock import Clock
from tether._errors import BulkheadFull, DeadlineExceeded
from tether._flow import Bulkhead
from tether._types import Send

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["BulkheadPolicy"]


class _Compartment:
    """One scope's slots; waiters are served in arrival order."""

    __slots__ = ("in_flight", "waiters")

    def __init__(self) -> None:
        self.in_flight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()


class BulkheadPolicy:
    __slots__ = ("_clock", "_compartments", "_limit", "_only", "_settings")

    def __init__(self, settings: Bulkhead, *, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._compartments: dict[str, _Compartment] = {}
        self._limit = settings.max_concurrent
        # scope="client" has one compartment for every request: found once, here.
        self._only: _Compartment | None = None
        if settings.scope != "host":
            self._only = self._compartments[""] = _Compartment()

    def _compartment(self, request: Request) -> _Compartment:
        if self._only is not None:
            return self._only
        url = request.url
        end = url.find("/", url.find("://") + 3)
        key = url if end < 0 else url[:end]
        compartment = self._compartments.get(key)
        if compartment is None:
            compartment = self._compartments[key] = _Compartment()
        return compartment

    async def send(self, request: Request, next_: Send) -> Response:
        compartment = self._only or self._compartment(request)
        if compartment.in_flight >= self._limit or compartment.waiters:
            await self._wait_turn(compartment, request)
        else:
            compartment.in_flight += 1
        try:
            return await next_(request)
        finally:
            if compartment.waiters:
                self._release(compartment)
            else:
                compartment.in_flight -= 1

    async def _wait_turn(self, compartment: _Compartment, request: Request) -> None:
        if len(compartment.waiters) >= self._settings.max_queue:
            raise BulkheadFull(
                f"{request.method} {request.redacted_url()}: {compartment.in_flight} requests "
                f"in flight and {len(compartment.waiters)} waiting; not queued"
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        compartment.waiters.append(turn)
        deadline = request.deadline
        timeout = None if deadline is None else max(0.0, deadline - self._clock.monotonic())
        try:
            # The slot is handed over by _release, which counts it for us before waking us.
            await asyncio.wait_for(asyncio.shield(turn), timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if turn.done() and not turn.cancelled():
                # Woken and given the slot just as we gave up: pass it on.
                self._release(compartment)
            else:
                turn.cancel()
                compartment.waiters.remove(turn)
            if isinstance(exc, TimeoutError):
                raise DeadlineExceeded(
                    f"{request.method} {request.redacted_url()}: the call's deadline passed "
                    "while waiting for a concurrency slot"
                ) from None
            raise

    @staticmethod
    def _release(compartment: _Compartment) -> None:
        while compartment.waiters:
            turn = compartment.waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot moves to the waiter; in_flight is unchanged
                return
        compartment.in_flight -= 1
