"""Rate-limit accuracy against a server that enforces N requests/s strictly.

    python bench/bench_ratelimit.py             # N=50/s for 10 s per contender
    python bench/bench_ratelimit.py --quick     # 3 s per contender

Every contender has many workers pushing as fast as the limiter lets them. Reported: the
share of N actually served and the number of 429s. Goals: tether with RateLimit(N/s)
>= 97 % of N with zero 429s; tether adaptive with no configured limit >= 90 % of N with
<= 1 % 429s after the first second. aiolimiter's AsyncLimiter(N, 1) runs in the same session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import tether  # noqa: E402
from _process import server_process  # noqa: E402


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/stats") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError("benchmark server did not start")


class Tally:
    def __init__(self) -> None:
        self.ok = 0
        self.limited = 0
        self.limited_after_first_second = 0
        self.start = 0.0


async def run(
    one: Callable[[], Awaitable[int]], seconds: float, workers: int, tally: Tally
) -> float:
    tally.start = time.monotonic()
    end = tally.start + seconds

    async def worker() -> None:
        while time.monotonic() < end:
            status = await one()
            if status == 429:
                tally.limited += 1
                if time.monotonic() - tally.start > 1.0:
                    tally.limited_after_first_second += 1
            else:
                tally.ok += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.monotonic() - tally.start


async def tether_static(url: str, limit: int, seconds: float, workers: int) -> tuple[Tally, float]:
    tally = Tally()
    async with tether.Client(
        url, rate_limit=tether.RateLimiter(f"{limit}/s", max_wait=None), retry=None,
        raise_for_status=False, timeout=None,
    ) as client:  # fmt: skip

        async def one() -> int:
            return (await client.get("/strict")).status

        return tally, await run(one, seconds, workers, tally)


async def tether_adaptive(
    url: str, limit: int, seconds: float, workers: int
) -> tuple[Tally, float]:
    tally = Tally()
    async with tether.Client(
        url, rate_limit="adaptive", retry=None, raise_for_status=False, timeout=None
    ) as client:

        async def one() -> int:
            return (await client.get("/adaptive")).status

        return tally, await run(one, seconds, workers, tally)


async def aiolimiter_static(
    url: str, limit: int, seconds: float, workers: int
) -> tuple[Tally, float]:
    from aiolimiter import AsyncLimiter

    tally = Tally()
    limiter = AsyncLimiter(limit, 1)
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with limiter, session.get(url + "/strict") as response:
                await response.read()
                return response.status

        return tally, await run(one, seconds, workers, tally)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 3.0
    with server_process("_strict_server.py", str(args.rate)) as url:
        asyncio.run(wait_ready(url))
        contenders = {
            f"tether RateLimit({args.rate}/s)": tether_static,
            "tether adaptive (no limit configured)": tether_adaptive,
            f"aiolimiter AsyncLimiter({args.rate}, 1)": aiolimiter_static,
        }
        print(
            f"server: {args.rate} req/s in fixed 1 s windows; {args.workers} workers; "
            f"{args.seconds:g} s each"
        )
        print(f"{'contender':<42}{'served/s':>10}{'% of N':>9}{'429s':>7}{'429s>1s':>9}")
        for name, contender in contenders.items():
            tally, elapsed = asyncio.run(contender(url, args.rate, args.seconds, args.workers))
            served = tally.ok / elapsed
            print(
                f"{name:<42}{served:>10.1f}{served / args.rate:>9.1%}{tally.limited:>7}"
                f"{tally.limited_after_first_second:>9}"
            )


if __name__ == "__main__":
    main()
