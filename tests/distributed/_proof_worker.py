"""One process of the multi-process proof: `tasks` callers sharing one RedisRateLimiter.

argv: base_url redis_url rate tasks duration policy share name. The worker prints "ready"
once it is set up and starts when the parent writes the start time (wall clock) to stdin.
Prints one JSON object: a list of (wall time, outcome, monotonic send time) per attempt,
outcome being the HTTP status, "closed" (refused by fail_closed) or "error".
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from tether._clock import SystemClock
from tether.distributed import RedisRateLimiter, SharedStateUnavailable


async def main() -> None:
    base_url, redis_url, rate, tasks, duration, policy, share, name = sys.argv[1:9]
    limiter = RedisRateLimiter(
        f"{rate}/s",
        redis=redis_url,
        name=name,
        max_wait=None,
        on_redis_error=policy,  # type: ignore[arg-type]
        local_share=float(share),
    )
    clock = SystemClock()
    records: list[tuple[float, int | str, float]] = []

    async def caller(session: aiohttp.ClientSession, end: float) -> None:
        while time.time() < end:
            try:
                await limiter.wait_turn("", clock=clock)
            except SharedStateUnavailable:
                records.append((time.time(), "closed", time.monotonic()))
                await asyncio.sleep(0.05)
                continue
            if time.time() >= end:
                await limiter.arefund("", clock=clock)
                return
            sent = time.monotonic()
            try:
                async with session.get(f"{base_url}/strict") as response:
                    await response.read()
                    records.append((time.time(), response.status, sent))
            except aiohttp.ClientError:
                records.append((time.time(), "error", sent))

    connector = aiohttp.TCPConnector(limit=int(tasks))
    async with aiohttp.ClientSession(connector=connector) as session:
        # Open every keep-alive connection now: connection setup under the measured load
        # would add its own delays to the departures the limiter spaces.
        async def warm() -> None:
            async with session.get(f"{base_url}/stats") as response:
                await response.read()

        await asyncio.gather(*(warm() for _ in range(int(tasks))))
        print("ready", flush=True)
        start = float(await asyncio.to_thread(sys.stdin.readline))
        end = start + float(duration)
        await asyncio.sleep(max(0.0, start - time.time()))
        await asyncio.gather(*(caller(session, end) for _ in range(int(tasks))))
    await limiter.aclose()
    print(json.dumps(records))


if __name__ == "__main__":
    asyncio.run(main())
