"""Success-path cost of flow control: tether's GCRA + breaker against common Python libraries.

    python bench/bench_core_flow.py             # 200 000 operations per contender
    python bench/bench_core_flow.py -n 50000    # fewer, for a smoke run

Every contender is set up so that it never waits or rejects (a huge limit, a healthy
circuit), which isolates the bookkeeping a request pays when all is well. Each is timed
with time.perf_counter over a tight loop, best of `--rounds` (the machine is shared, so the
least disturbed round counts), and reported in microseconds per operation with its ratio to
tether's limiter + breaker. Libraries that are not installed are skipped with a note:

    pip install aiolimiter pybreaker purgatory limits
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from tether._core._breaker import BreakerState, Outcome  # noqa: E402
from tether._core._ratelimit import GCRA, Limit  # noqa: E402

HUGE = 10**9

Timer = Callable[[int], float]
"""Runs `n` operations and returns the elapsed seconds."""


# -- tether ---------------------------------------------------------------------------------


def tether_limiter_and_breaker(n: int) -> float:
    """What the pipeline does per request: read the clock, reserve, allow, record."""
    gcra = GCRA(Limit(rate=HUGE, per=1, burst=HUGE))
    breaker = BreakerState()
    monotonic = time.monotonic
    success = Outcome.SUCCESS
    start = time.perf_counter()
    for _ in range(n):
        now = monotonic()
        gcra.reserve(now)
        breaker.allow(now)
        breaker.record(now, success, 0.001)
    return time.perf_counter() - start


def tether_limiter(n: int) -> float:
    gcra = GCRA(Limit(rate=HUGE, per=1, burst=HUGE))
    monotonic = time.monotonic
    start = time.perf_counter()
    for _ in range(n):
        gcra.reserve(monotonic())
    return time.perf_counter() - start


def tether_two_limits(n: int) -> float:
    gcra = GCRA(Limit(rate=HUGE, per=1, burst=HUGE), Limit(rate=HUGE, per=3600, burst=HUGE))
    monotonic = time.monotonic
    start = time.perf_counter()
    for _ in range(n):
        gcra.reserve(monotonic())
    return time.perf_counter() - start


def tether_breaker(n: int) -> float:
    breaker = BreakerState()
    monotonic = time.monotonic
    success = Outcome.SUCCESS
    start = time.perf_counter()
    for _ in range(n):
        now = monotonic()
        breaker.allow(now)
        breaker.record(now, success, 0.001)
    return time.perf_counter() - start


def tether_in_async(n: int) -> float:
    """Limiter + breaker inside an awaited coroutine, as the async policies will call them."""
    gcra = GCRA(Limit(rate=HUGE, per=1, burst=HUGE))
    breaker = BreakerState()
    success = Outcome.SUCCESS

    async def one() -> None:
        loop_time = loop.time()
        wait = gcra.reserve(loop_time)
        if wait:
            await asyncio.sleep(wait)
        breaker.allow(loop_time)
        breaker.record(loop_time, success, 0.001)

    async def main() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await one()
        return time.perf_counter() - start

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


# -- the field ------------------------------------------------------------------------------


def aiolimiter_acquire(n: int) -> float:
    from aiolimiter import AsyncLimiter

    async def main() -> float:
        limiter = AsyncLimiter(max_rate=HUGE, time_period=1)
        start = time.perf_counter()
        for _ in range(n):
            await limiter.acquire()
        return time.perf_counter() - start

    return asyncio.run(main())


def pybreaker_call(n: int) -> float:
    import pybreaker

    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)

    def noop() -> None:
        return None

    start = time.perf_counter()
    for _ in range(n):
        breaker.call(noop)
    return time.perf_counter() - start


def purgatory_async(n: int) -> float:
    from purgatory import AsyncCircuitBreakerFactory

    async def main() -> float:
        factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
        start = time.perf_counter()
        for _ in range(n):
            # The documented pattern: look the breaker up by name for every call.
            async with await factory.get_breaker("bench"):
                pass
        return time.perf_counter() - start

    return asyncio.run(main())


def limits_moving_window(n: int) -> float:
    from limits import RateLimitItemPerSecond
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    limiter = MovingWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(HUGE)
    start = time.perf_counter()
    for _ in range(n):
        limiter.hit(item, "bench")
    return time.perf_counter() - start


# -- running --------------------------------------------------------------------------------


def best_of(timer: Timer, n: int, rounds: int) -> float:
    timer(min(n, 2000))  # warm up imports and caches
    return min(timer(n) for _ in range(rounds)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=200_000, help="operations per contender")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n: int = args.n

    contenders: list[tuple[str, Timer, int]] = [
        ("tether GCRA + breaker (allow+record)", tether_limiter_and_breaker, n),
        ("tether GCRA reserve", tether_limiter, n),
        ("tether GCRA reserve, two limits", tether_two_limits, n),
        ("tether breaker allow+record", tether_breaker, n),
        ("tether GCRA + breaker in a coroutine", tether_in_async, n),
        ("aiolimiter AsyncLimiter.acquire", aiolimiter_acquire, n),
        ("pybreaker CircuitBreaker.call", pybreaker_call, n),
        ("purgatory async get_breaker + with", purgatory_async, n),
        # limits' memory moving window keeps one entry per hit in the window, so it is run
        # with fewer operations to stay within a sane time.
        ("limits MovingWindowRateLimiter.hit", limits_moving_window, max(1, n // 10)),
    ]
    results: list[tuple[str, float | None, int, str]] = []
    for name, timer, count in contenders:
        try:
            micros = best_of(timer, count, args.rounds)
        except ImportError as error:
            print(f"skipped {name}: {error} (pip install aiolimiter pybreaker purgatory limits)")
            results.append((name, None, count, "not installed"))
            continue
        results.append((name, micros, count, ""))

    ours = results[0][1]
    print()
    print(f"Python {sys.version.split()[0]}, best of {args.rounds} rounds")
    print(f"{'contender':<42} {'ops':>8} {'us/op':>8} {'vs ours':>8}")
    print("-" * 70)
    for name, micros, count, note in results:
        if micros is None:
            print(f"{name:<42} {count:>8} {'-':>8} {note:>8}")
            continue
        ratio = f"{micros / ours:.2f}x" if ours else "-"
        print(f"{name:<42} {count:>8} {micros:>8.3f} {ratio:>8}")
    if ours is not None:
        verdict = "within" if ours <= 3.0 else "OVER"
        print(f"\ntether limiter + breaker: {ours:.3f} us per request ({verdict} the 3 us budget)")


if __name__ == "__main__":
    main()
