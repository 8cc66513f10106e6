"""The rate-limit policy: wait for a slot before each attempt, in arrival order."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tether._clock import Clock
from tether._core._advice import parse_retry_after
from tether._core._ratelimit import Cost
from tether._errors import BulkheadFull, CircuitOpenError, RateLimitWaitTooLong
from tether._flow import RateLimiter
from tether._types import Send

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["COST_EXTENSION", "RateLimitPolicy"]

#: Key under which a request carries its weight (`cost=` on client calls).
COST_EXTENSION = "tether.cost"


def _origin_and_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/"


class RateLimitPolicy:
    """Acquires every applicable limiter atomically, then sends.

    Several limiters (say a client-wide 10/s and a `/search*` group at 30/min) are acquired
    together: the wait is the longest of them and every one is charged at the same departure
    time, so no limiter is spent while another still holds the request back.
    """

    __slots__ = (
        "_clock",
        "_credential_key",
        "_limiters",
        "_shared",
        "_simple",
        "_simple_key",
        "_split",
    )

    def __init__(
        self, limiters: Sequence[RateLimiter], *, clock: Clock, credential_key: str
    ) -> None:
        # Limiters whose state lives elsewhere (RedisRateLimiter) are awaited through
        # `wait_turn`; the others are decided here without I/O.
        self._shared = tuple(x for x in limiters if hasattr(x, "wait_turn"))
        self._limiters = tuple(x for x in limiters if not hasattr(x, "wait_turn"))
        # The common case, one configured limiter that does not adapt, takes a one-step path.
        only = self._limiters[0] if len(self._limiters) == 1 else None
        self._simple = only if only is not None and not only.adaptive and only.limits else None
        self._clock = clock
        self._credential_key = credential_key
        self._split: dict[str, tuple[str, str]] = {}
        # A limiter for every path with one bucket per client (or credential) has the same key
        # for every request: known now, the URL need not be looked at per request.
        self._simple_key: str | None = None
        if self._simple is not None and self._simple.paths is None:
            scope = self._simple.scope
            if scope == "client":
                self._simple_key = ""
            elif scope == "credential":
                self._simple_key = credential_key

    def _locate(self, url: str) -> tuple[str, str]:
        located = self._split.get(url)
        if located is None:
            located = _origin_and_path(url)
            if len(self._split) >= 4096:
                self._split.clear()
            self._split[url] = located
        return located

    def _key(self, limiter: RateLimiter, origin: str) -> str:
        if limiter.scope == "client":
            return ""
        if limiter.scope == "host":
            return origin
        return self._credential_key

    def send(self, request: Request, next_: Send) -> Awaitable[Response]:
        # Not a coroutine itself: the common case goes straight to its own, one frame less.
        if self._simple is not None and not self._shared:
            return self._send_simple(self._simple, request, next_)
        return self._send(request, next_)

    async def _send(self, request: Request, next_: Send) -> Response:
        clock = self._clock
        cost: Cost = request.extensions.get(COST_EXTENSION, 1.0)
        origin, path = self._locate(request.url)
        shared: list[tuple[RateLimiter, str]] = []
        for limiter in self._shared:
            # Awaited first: their wait is spent here, so the local limiters below are charged
            # at the real departure time.
            if limiter.applies(path):
                key = self._key(limiter, origin)
                await limiter.wait_turn(key, cost, deadline=request.deadline, clock=clock)
                shared.append((limiter, key))
        now = clock.monotonic()
        if self._simple is not None and not shared:
            return await self._send_simple(self._simple, request, next_)
        held: list[tuple[RateLimiter, str]] = []
        wait = 0.0
        max_wait: float | None = None
        for limiter in self._limiters:
            if not limiter.applies(path):
                continue
            key = self._key(limiter, origin)
            held.append((limiter, key))
            wait = max(wait, limiter.wait(key, now, cost))
            if limiter.max_wait is not None:
                max_wait = limiter.max_wait if max_wait is None else min(max_wait, limiter.max_wait)
        if not held:
            if not shared:
                return await next_(request)
            try:
                return await next_(request)
            except (CircuitOpenError, BulkheadFull):
                await self._refund_shared(shared, cost)
                raise
        deadline = request.deadline
        if max_wait is not None and wait > max_wait:
            raise RateLimitWaitTooLong(
                f"{request.method} {request.redacted_url()}: the rate limit would hold this "
                f"request {wait:.1f} s, more than max_wait={max_wait:g} s",
                wait=wait,
            )
        if deadline is not None and wait > 0 and now + wait >= deadline:
            raise RateLimitWaitTooLong(
                f"{request.method} {request.redacted_url()}: the rate limit would hold this "
                f"request {wait:.1f} s, past the call's deadline",
                wait=wait,
            )
        departure = now + wait
        for limiter, key in held:
            limiter.reserve(key, departure, cost)
        if wait > 0:
            try:
                await clock.sleep(wait)
            except asyncio.CancelledError:
                # A caller that gave up must not keep a slot the next request could use.
                for limiter, key in held:
                    limiter.refund(key, clock.monotonic(), cost)
                raise
        try:
            response = await next_(request)
        except (CircuitOpenError, BulkheadFull):
            # Refused locally, nothing was sent: the slot goes back to the next request.
            for limiter, key in held:
                limiter.refund(key, clock.monotonic(), cost)
            await self._refund_shared(shared, cost)
            raise
        if any(limiter.adaptive for limiter, _ in held):
            self._observe(held, response)
        return response

    async def _send_simple(self, limiter: RateLimiter, request: Request, next_: Send) -> Response:
        """One configured, non-adaptive limiter: reserve in a single step (the common case)."""
        cost: Cost = request.extensions.get(COST_EXTENSION, 1.0)
        key = self._simple_key
        if key is None:
            origin, path = self._locate(request.url)
            if not limiter.applies(path):
                return await next_(request)
            key = self._key(limiter, origin)
        clock = self._clock
        now = clock.monotonic()
        deadline = request.deadline
        allowed = math.inf if limiter.max_wait is None else limiter.max_wait
        if deadline is not None and deadline - now < allowed:
            allowed = deadline - now
        wait = limiter.try_reserve(key, now, cost, allowed)
        if wait is None:
            # Refused and nothing reserved: say how long it would have been, and why.
            needed = limiter.wait(key, now, cost)
            reason = (
                f"more than max_wait={limiter.max_wait:g} s"
                if limiter.max_wait is not None and needed > limiter.max_wait
                else "past the call's deadline"
            )
            raise RateLimitWaitTooLong(
                f"{request.method} {request.redacted_url()}: the rate limit would hold this "
                f"request {needed:.1f} s, {reason}",
                wait=needed,
            )
        if wait > 0:
            try:
                await clock.sleep(wait)
            except asyncio.CancelledError:
                limiter.refund(key, clock.monotonic(), cost)
                raise
        try:
            return await next_(request)
        except (CircuitOpenError, BulkheadFull):
            limiter.refund(key, clock.monotonic(), cost)
            raise

    async def _refund_shared(self, shared: list[tuple[RateLimiter, str]], cost: Cost) -> None:
        for limiter, key in shared:
            await limiter.arefund(key, cost, clock=self._clock)  # type: ignore[attr-defined]

    def _observe(self, held: list[tuple[RateLimiter, str]], response: Response) -> None:
        clock = self._clock
        now_wall = clock.time()
        retry_after = (
            parse_retry_after(response.headers, now_wall=now_wall)
            if response.status == 429
            else None
        )
        for limiter, key in held:
            limiter.observe(
                key,
                clock.monotonic(),
                status=response.status,
                headers=response.headers,
                now_wall=now_wall,
                retry_after=retry_after,
            )
