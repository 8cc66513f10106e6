"""The bulkhead: bounded concurrency, a bounded queue, no leaked slots."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

import tether
from tests.conftest import LoopbackServer


@pytest.fixture
def gated(server: LoopbackServer) -> tuple[LoopbackServer, asyncio.Event, list[int]]:
    """A /slow route that holds every request until the gate opens, counting the peak."""
    gate = asyncio.Event()
    in_flight = [0, 0]  # current, peak

    async def slow(_: web.Request) -> web.StreamResponse:
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        await gate.wait()
        in_flight[0] -= 1
        return web.json_response({})

    server.route("GET", "/slow", slow)
    return server, gate, in_flight


async def test_at_most_n_in_flight(gated: tuple[LoopbackServer, asyncio.Event, list[int]]) -> None:
    """Eight concurrent calls through a bulkhead of two never have more than two in flight."""
    server, gate, in_flight = gated
    async with tether.Client(server.url, bulkhead=tether.Bulkhead(max_concurrent=2)) as client:
        calls = [asyncio.create_task(client.get("/slow")) for _ in range(8)]
        while server.count("/slow") < 2:
            await asyncio.sleep(0.01)
        gate.set()
        responses = await asyncio.gather(*calls)
    assert all(r.status == 200 for r in responses)
    assert in_flight[1] == 2


async def test_full_queue_fails_fast(
    gated: tuple[LoopbackServer, asyncio.Event, list[int]],
) -> None:
    """With the slots taken and the queue full, a further call raises BulkheadFull unsent."""
    server, gate, _ = gated
    bulkhead = tether.Bulkhead(max_concurrent=1, max_queue=1)
    async with tether.Client(server.url, bulkhead=bulkhead) as client:
        first = asyncio.create_task(client.get("/slow"))
        while server.count("/slow") < 1:
            await asyncio.sleep(0.01)
        second = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0)
        with pytest.raises(tether.BulkheadFull):
            await client.get("/slow")
        gate.set()
        await asyncio.gather(first, second)
    assert server.count("/slow") == 2


async def test_waiting_ends_at_the_deadline(
    gated: tuple[LoopbackServer, asyncio.Event, list[int]],
) -> None:
    """A call waiting for a slot gives up with DeadlineExceeded when its time is up."""
    server, gate, _ = gated
    async with tether.Client(server.url, bulkhead=tether.Bulkhead(max_concurrent=1)) as client:
        first = asyncio.create_task(client.get("/slow"))
        while server.count("/slow") < 1:
            await asyncio.sleep(0.01)
        with pytest.raises(tether.DeadlineExceeded, match="concurrency slot"):
            await client.get("/slow", timeout=0.2)
        gate.set()
        await first
        # The slot of the call that gave up was not leaked: another call gets through.
        await client.get("/slow")


async def test_cancelled_waiter_leaks_nothing(
    gated: tuple[LoopbackServer, asyncio.Event, list[int]],
) -> None:
    """Cancelling a queued call frees its place; later calls still run."""
    server, gate, _ = gated
    async with tether.Client(server.url, bulkhead=tether.Bulkhead(max_concurrent=1)) as client:
        first = asyncio.create_task(client.get("/slow"))
        while server.count("/slow") < 1:
            await asyncio.sleep(0.01)
        queued = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.01)
        queued.cancel()
        gate.set()
        await first
        for _ in range(3):
            await client.get("/slow")
    assert server.count("/slow") == 4


def test_bad_settings() -> None:
    """A bulkhead of zero slots is a ConfigError."""
    with pytest.raises(tether.ConfigError):
        tether.Bulkhead(max_concurrent=0)
