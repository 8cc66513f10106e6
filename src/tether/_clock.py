"""Time sources: the real clock, a fake clock for tests, and the switch that removes waits.

Every wait in tether goes through a `Clock`, so a test can run a ten-minute backoff in
milliseconds and still see the delays it would have slept.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock", "waits_disabled"]


class _Testing:
    """Process-wide test switch; a plain object so the blocking facade's loop thread sees it."""

    __slots__ = ("no_wait",)

    def __init__(self) -> None:
        self.no_wait = False


TESTING = _Testing()


def waits_disabled() -> bool:
    """Whether `tether.testing.no_wait()` is in force."""
    return TESTING.no_wait


@runtime_checkable
class Clock(Protocol):
    """Where tether reads time and how it waits."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; deadlines and windows use it."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch; HTTP dates and webhook timestamps use it."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (or not at all under `no_wait()`)."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    # The C functions themselves: a clock read on the hot path costs no Python frame.
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        if TESTING.no_wait or seconds <= 0:
            # Still yield: a retry loop must stay cancellable and fair even when it never sleeps.
            await asyncio.sleep(0)
            return
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """Virtual time for tests: `sleep` jumps time forward instead of waiting.

    Each sleeper's wake-up time is computed when it starts sleeping; after yielding once to the
    event loop, time is moved to at least that point. Concurrent sleepers therefore each see at
    least their own delay pass, and `sleeps` records every delay asked for, in order.
    """

    __slots__ = ("_now", "_wall_offset", "sleeps")

    def __init__(self, *, start: float = 0.0, wall: float = 1_767_225_600.0) -> None:
        # The default wall time is 2026-01-01T00:00:00Z: fixed so HTTP-date tests are exact.
        self._now = start
        self._wall_offset = wall - start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` without anyone sleeping."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        wake_at = self._now + seconds
        await asyncio.sleep(0)
        self._now = max(self._now, wake_at)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now:.3f})"
