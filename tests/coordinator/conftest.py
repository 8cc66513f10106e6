"""A stepped clock: sleepers wait until the test moves time past their wake-up, so a scheduler
can be observed at any virtual instant (FakeClock, which jumps at once, cannot show a debounce)."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class SteppedClock:
    """Implements `tether.Clock`; `await clock.advance(s)` runs everything due by then, in order."""

    def __init__(self, *, start: float = 0.0, wall: float = 1_767_225_600.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    async def settle(self) -> None:
        """Let every runnable task run until it waits on something again."""
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            wake_at, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self._now = max(self._now, wake_at)
            future.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    def pending(self) -> list[float]:
        """Wake-up times of sleepers still waiting (cancelled ones excluded)."""
        return sorted(w for w, _, f in self._sleepers if not f.done())
