"""Redis rate limiter cost: tether's one-script GCRA against `limits`' Redis moving window.

    python bench/bench_redis_limiter.py            # 20 000 acquires per contender and mode
    python bench/bench_redis_limiter.py --quick    # 3 000

Both contenders run on the same Redis (127.0.0.1:6379 unless --redis) with a limit high
enough that nobody waits, so what is measured is the cost of one acquire: a round trip plus
the script. Reported per contender: acquires/s and p50/p99 latency, sequentially (one caller)
and with 50 concurrent callers, and tether's figures as ratios of `limits`'.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from limits import parse  # noqa: E402
from limits.aio.storage import RedisStorage  # noqa: E402
from limits.aio.strategies import MovingWindowRateLimiter  # noqa: E402

from tether._clock import SystemClock  # noqa: E402
from tether.distributed import RedisRateLimiter  # noqa: E402

Acquire = Callable[[], Awaitable[object]]


async def measure(acquire: Acquire, total: int, concurrency: int) -> tuple[float, float, float]:
    """acquires/s, p50 and p99 latency in microseconds."""
    latencies: list[float] = []
    per_task = total // concurrency

    async def caller() -> None:
        for _ in range(per_task):
            began = time.perf_counter()
            await acquire()
            latencies.append(time.perf_counter() - began)

    for _ in range(200):  # warm up connections and script caches
        await acquire()
    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    return len(latencies) / elapsed, statistics.median(latencies) * 1e6, p99 * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    total = 3_000 if args.quick else 20_000
    run = uuid.uuid4().hex[:8]
    clock = SystemClock()

    tether_limiter = RedisRateLimiter(
        "1000000/s", redis=args.redis, name=f"bench-{run}", prefix="tetherbench", max_wait=None
    )
    storage = RedisStorage(
        args.redis.replace("redis://", "async+redis://", 1), implementation="redispy"
    )
    moving = MovingWindowRateLimiter(storage)
    item = parse("1000000/second")
    key = f"bench-{run}"

    async def tether_acquire() -> object:
        return await tether_limiter.acquire("", clock=clock)

    async def limits_acquire() -> object:
        return await moving.hit(item, key)

    print(f"Redis {args.redis}; {total} acquires per row; limit never reached")
    header = f"{'contender':<36}{'callers':>8}{'acq/s':>10}{'p50 us':>9}{'p99 us':>9}"
    print(header)
    print("-" * len(header))
    for concurrency in (1, 50):
        ours = await measure(tether_acquire, total, concurrency)
        theirs = await measure(limits_acquire, total, concurrency)
        for name, (rate, p50, p99) in (
            ("tether RedisRateLimiter (GCRA)", ours),
            ("limits MovingWindowRateLimiter", theirs),
        ):
            print(f"{name:<36}{concurrency:>8}{rate:>10.0f}{p50:>9.0f}{p99:>9.0f}")
        print(
            f"{'  ratio tether/limits':<36}{concurrency:>8}{ours[0] / theirs[0]:>9.2f}x"
            f"{ours[1] / theirs[1]:>8.2f}x{ours[2] / theirs[2]:>8.2f}x"
        )
    client = tether_limiter._client
    keys = [k async for k in client.scan_iter(match=f"*{run}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await tether_limiter.aclose()


if __name__ == "__main__":
    asyncio.run(main())
