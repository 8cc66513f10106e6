"""Core client throughput: tether against raw aiohttp and the stacks people assemble today.

One command, one run, ratios printed:

    python bench/bench_client.py            # 20 000 GETs, 10 concurrent, + sequential sync
    python bench/bench_client.py --quick    # smaller counts for a smoke run

A loopback server in another process answers a small JSON body; every contender runs the same
number of requests with the same concurrency, in rounds, and the best round counts (the
machine is shared, so the best of several is the least disturbed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _process import server_process  # noqa: E402


async def drive(one: Callable[[], Awaitable[object]], total: int, concurrency: int) -> float:
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def raw_aiohttp(url: str, total: int, concurrency: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def one() -> object:
            async with session.get(url + "/devices/1") as response:
                response.raise_for_status()
                return await response.json()

        await drive(one, 200, concurrency)
        return await drive(one, total, concurrency)


async def tether_client(url: str, total: int, concurrency: int) -> float:
    import tether

    async with tether.Client(url, retry=tether.Retry(attempts=3), timeout=30.0) as client:

        async def one() -> object:
            return (await client.get("/devices/1")).json()

        await drive(one, 200, concurrency)
        return await drive(one, total, concurrency)


async def tether_all_policies(url: str, total: int, concurrency: int) -> float:
    import tether

    async with tether.Client(
        url,
        retry=tether.Retry(attempts=3),
        timeout=30.0,
        rate_limit=tether.RateLimiter("1000000/s", max_wait=None),
        breaker=tether.Breaker(),
        bulkhead=tether.Bulkhead(max_concurrent=100),
    ) as client:

        async def one() -> object:
            return (await client.get("/devices/1")).json()

        await drive(one, 200, concurrency)
        return await drive(one, total, concurrency)


async def httpx_tenacity_aiolimiter(url: str, total: int, concurrency: int) -> float:
    import httpx
    from aiolimiter import AsyncLimiter
    from tenacity import (
        AsyncRetrying,
        retry_if_exception_type,
        stop_after_attempt,
        wait_random_exponential,
    )

    limiter = AsyncLimiter(10_000_000, 1)  # never binding: measures its overhead only
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:

        async def one() -> object:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(3),
                wait=wait_random_exponential(multiplier=0.5, max=8),
                retry=retry_if_exception_type(httpx.TransportError),
                reraise=True,
            ):
                with attempt:
                    async with limiter:
                        response = await client.get("/devices/1")
                        response.raise_for_status()
                        return response.json()
            return None

        await drive(one, 200, concurrency)
        return await drive(one, total, concurrency)


async def raw_httpx2(url: str, total: int, concurrency: int) -> float:
    import httpx2

    async with httpx2.AsyncClient(base_url=url, timeout=30.0) as client:

        async def one() -> object:
            response = await client.get("/devices/1")
            response.raise_for_status()
            return response.json()

        await drive(one, 200, concurrency)
        return await drive(one, total, concurrency)


def sync_loop(call: Callable[[], object], total: int) -> float:
    for _ in range(50):
        call()
    start = time.perf_counter()
    for _ in range(total):
        call()
    return total / (time.perf_counter() - start)


def sync_tether(url: str, total: int) -> float:
    import tether

    with tether.SyncClient(url, timeout=30.0) as client:
        return sync_loop(lambda: client.get("/devices/1").json(), total)


def sync_requests(url: str, total: int) -> float:
    import requests

    with requests.Session() as session:

        def call() -> object:
            response = session.get(url + "/devices/1", timeout=30)
            response.raise_for_status()
            return response.json()

        return sync_loop(call, total)


def sync_httpx(url: str, total: int) -> float:
    import httpx

    with httpx.Client(base_url=url, timeout=30.0) as client:

        def call() -> object:
            response = client.get("/devices/1")
            response.raise_for_status()
            return response.json()

        return sync_loop(call, total)


def table(
    title: str, rows: dict[str, float], reference: str, paired: dict[str, float] | None = None
) -> None:
    print(f"\n{title}")
    print(f"{'contender':<50}{'req/s':>10}{'vs ' + reference:>22}{'paired':>9}")
    base = rows[reference]
    for name, rate in rows.items():
        column = f"{paired[name]:>8.2f}x" if paired else ""
        print(f"{name:<50}{rate:>10.0f}{rate / base:>21.2f}x{column}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--sync-requests", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.sync_requests, args.rounds = 2_000, 300, 1

    # "Logging on": the tether logger is live at INFO with a handler, as in production;
    # successful attempts log at DEBUG, so they cost one level check each.
    logging.getLogger("tether").addHandler(logging.NullHandler())
    logging.getLogger("tether").setLevel(logging.INFO)

    with server_process("_server.py") as url:
        time.sleep(0.3)
        contenders: dict[str, Callable[[str, int, int], Awaitable[float]]] = {
            "raw aiohttp": raw_aiohttp,
            "tether.Client (retry + deadline + logging)": tether_client,
            "tether.Client (+ rate limit, breaker, bulkhead)": tether_all_policies,
            "httpx + tenacity + aiolimiter": httpx_tenacity_aiolimiter,
            "httpx2": raw_httpx2,
        }
        rounds: list[dict[str, float]] = []
        order = list(contenders.items())
        for index in range(args.rounds):
            # Each round starts with a different contender, so none always runs first.
            shift = index % len(order)
            rounds.append(
                {
                    name: asyncio.run(run(url, args.requests, args.concurrency))
                    for name, run in order[shift:] + order[:shift]
                }
            )
        best = {name: max(r[name] for r in rounds) for name in contenders}
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.rounds} rounds; "
            "req/s is the best round, 'paired' the median of each round's own ratio"
        )
        table(
            f"async: {args.requests} GETs, {args.concurrency} concurrent",
            best,
            "raw aiohttp",
            paired={
                name: statistics.median(r[name] / r["raw aiohttp"] for r in rounds)
                for name in contenders
            },
        )
        for label, name, goal in (
            ("tether", "tether.Client (retry + deadline + logging)", 0.90),
            ("tether with every policy", "tether.Client (+ rate limit, breaker, bulkhead)", 0.85),
        ):
            paired = statistics.median(r[name] / r["raw aiohttp"] for r in rounds)
            print(
                f"{label} / raw aiohttp: best {best[name] / best['raw aiohttp']:.2f}, "
                f"paired median {paired:.2f} (goal >= {goal:.2f})"
            )
        stack = best["httpx + tenacity + aiolimiter"]
        print(
            "tether / httpx+tenacity+aiolimiter = "
            f"{best['tether.Client (retry + deadline + logging)'] / stack:.2f} (goal >= 5)"
        )
        sync_contenders: dict[str, Callable[[str, int], float]] = {
            "tether.SyncClient": sync_tether,
            "requests": sync_requests,
            "httpx (sync)": sync_httpx,
        }
        sync_best = dict.fromkeys(sync_contenders, 0.0)
        for _ in range(args.rounds):
            for name, run_sync in sync_contenders.items():
                sync_best[name] = max(sync_best[name], run_sync(url, args.sync_requests))
        table(f"sync: {args.sync_requests} sequential GETs", sync_best, "tether.SyncClient")


if __name__ == "__main__":
    main()
