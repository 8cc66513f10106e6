"""The cache as a client option: outermost in the pipeline, so hits cost nothing downstream."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

import tether
from tests.conftest import LoopbackServer
from tether.testing import FakeClock


def cached(body: object, **headers: str):  # type: ignore[no-untyped-def]
    return lambda: web.json_response(body, headers=headers)


async def test_fresh_response_is_served_from_cache(server: LoopbackServer) -> None:
    """A response with max-age is answered from the cache on the next call."""
    server.script("GET", "/forecast", cached({"t": 21}, **{"Cache-Control": "max-age=60"}))
    async with tether.Client(server.url, cache=tether.Cache(), clock=FakeClock()) as client:
        first = await client.get("/forecast")
        second = await client.get("/forecast")
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.json() == {"t": 21}
    assert server.count("/forecast") == 1


async def test_per_call_ttl_for_apis_without_cache_headers(server: LoopbackServer) -> None:
    """cache_ttl= keeps a header-less response for that long; 0 bypasses the cache."""
    server.script("GET", "/air", cached({"aqi": 12}))
    clock = FakeClock()
    async with tether.Client(server.url, cache=tether.Cache(), clock=clock) as client:
        await client.get("/air", cache_ttl=3600)
        assert (await client.get("/air", cache_ttl=3600)).from_cache
        assert not (await client.get("/air", cache_ttl=0)).from_cache
        clock.advance(3601)
        assert not (await client.get("/air", cache_ttl=3600)).from_cache
    assert server.count("/air") == 3


async def test_hits_take_no_rate_limit_slot(server: LoopbackServer) -> None:
    """A cache hit never waits for the rate limiter: it sends nothing."""
    server.script("GET", "/x", cached({}, **{"Cache-Control": "max-age=600"}))
    clock = FakeClock()
    async with tether.Client(
        server.url, cache=tether.Cache(), rate_limit="1/min", clock=clock
    ) as client:
        for _ in range(5):
            await client.get("/x")
    assert clock.sleeps == []


async def test_open_circuit_is_answered_from_a_stale_entry(server: LoopbackServer) -> None:
    """With stale_if_error allowed, failures and then an open circuit are answered from the
    stale entry, and the open circuit keeps the last call off the network."""
    healthy = True

    async def handler(_: web.Request) -> web.StreamResponse:
        if healthy:
            return web.json_response({"v": 1}, headers={"Cache-Control": "max-age=1"})
        return web.json_response({}, status=503)

    server.route("GET", "/status", handler)
    clock = FakeClock()
    async with tether.Client(
        server.url,
        cache=tether.Cache(stale_if_error=3600),
        breaker=tether.Breaker(minimum_calls=3, window=10),
        retry=None,
        clock=clock,
    ) as client:
        await client.get("/status")
        clock.advance(5)
        healthy = False
        answers = [await client.get("/status") for _ in range(3)]
        assert client.circuits()[server.url] == "open"
    assert all(a.from_cache and a.json() == {"v": 1} for a in answers)
    # One healthy call and two failures reached the server; the open circuit kept the third off.
    assert server.count("/status") == 3


async def test_concurrent_identical_misses_make_one_request(server: LoopbackServer) -> None:
    """Ten concurrent GETs of one URL reach the server once."""
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def slow(_: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.json_response({"n": 1}, headers={"Cache-Control": "max-age=60"})

    server.route("GET", "/slow", slow)
    async with tether.Client(server.url, cache=tether.Cache()) as client:
        calls = [asyncio.create_task(client.get("/slow")) for _ in range(10)]
        await asyncio.wait_for(arrived.wait(), 5)
        release.set()
        responses = await asyncio.gather(*calls)
    assert all(r.json() == {"n": 1} for r in responses)
    assert server.count("/slow") == 1


def test_cache_option_is_checked() -> None:
    """cache= takes a tether.Cache."""
    with pytest.raises(tether.ConfigError):
        tether.Client("https://x.example.com", cache="memory")  # type: ignore[arg-type]


async def test_cache_ttl_without_a_cache_is_an_error() -> None:
    """cache_ttl= on a client without a cache would silently do nothing, so it is refused."""
    async with tether.Client("https://x.example.com") as client:
        with pytest.raises(tether.ConfigError, match="cache="):
            await client.get("/x", cache_ttl=60)


async def test_rate_limit_refusal_is_answered_from_a_stale_entry(server: LoopbackServer) -> None:
    """When the rate limit would hold a call too long, a stale entry stands in (stale_if_error)."""
    server.script("GET", "/x", cached({"v": 1}, **{"Cache-Control": "max-age=1"}))
    clock = FakeClock()
    limiter = tether.RateLimiter("1/h", max_wait=5)
    async with tether.Client(
        server.url, cache=tether.Cache(stale_if_error=3600), rate_limit=limiter, clock=clock
    ) as client:
        await client.get("/x")
        clock.advance(10)
        again = await client.get("/x")
    assert again.from_cache
    assert server.count("/x") == 1
