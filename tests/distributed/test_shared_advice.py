"""Client(shared_advice=...): a Retry-After seen by one process pauses every process for that host.

Two clients with their own stores stand in for two processes (and one test runs a real second
process); each has its own FakeClock, so a pause is waited out in virtual time while Redis
keeps it on its own clock.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web

import tether
from tests.conftest import LoopbackServer
from tether.distributed import RedisAdviceStore
from tether.testing import FakeClock

DEAD = "redis://:s3cret-pw@127.0.0.1:1/0"


def throttled(seconds: int = 30) -> web.Response:
    return web.Response(status=429, text="slow down", headers={"Retry-After": str(seconds)})


def ok() -> web.Response:
    return web.json_response({"ok": True})


class CountingAdvice:
    """A RedisAdviceStore that counts its round trips."""

    def __init__(self, store: RedisAdviceStore) -> None:
        self.store = store
        self.refresh = store.refresh
        self.lookups = 0
        self.pauses = 0

    async def pause(self, key: str, seconds: float, *, status: int = 429) -> float:
        self.pauses += 1
        return await self.store.pause(key, seconds, status=status)

    async def lookup(self, key: str) -> tuple[float, int]:
        self.lookups += 1
        return await self.store.lookup(key)


@pytest.fixture
async def stores(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> AsyncIterator[list[RedisAdviceStore]]:
    """Two stores on one Redis, as two processes would have; their keys go with the test."""
    made = [RedisAdviceStore(redis=redis_url, prefix=prefix) for _ in range(2)]
    yield made
    for store in made:
        await store.aclose()


def make_client(
    server: LoopbackServer, advice: object, clock: FakeClock, **options: object
) -> tether.Client:
    return tether.Client(server.url, shared_advice=advice, clock=clock, **options)  # type: ignore[arg-type]


async def test_a_pause_seen_by_one_client_holds_the_other(
    server: LoopbackServer, stores: list[RedisAdviceStore]
) -> None:
    """B, which never saw a 429, waits out the pause A was told about, then sends once."""
    server.script("GET", "/x", throttled, ok)
    a_clock, b_clock = FakeClock(), FakeClock()
    async with make_client(server, stores[0], a_clock, retry=None) as a:
        with pytest.raises(tether.RateLimitError):
            await a.get("/x")
    async with make_client(server, stores[1], b_clock) as b:
        response = await b.get("/x")
    assert response.status == 200
    assert server.count("/x") == 2
    (waited,) = b_clock.sleeps
    assert 25.0 < waited <= 30.0


async def test_a_pause_longer_than_max_retry_after_fails_b_unsent(
    server: LoopbackServer, stores: list[RedisAdviceStore]
) -> None:
    """With max_retry_after below the shared pause, B raises RateLimitError at once, naming the
    wait, and sends nothing."""
    server.script("GET", "/x", throttled, ok)
    async with make_client(server, stores[0], FakeClock(), retry=None) as a:
        with pytest.raises(tether.RateLimitError):
            await a.get("/x")
    b_clock = FakeClock()
    async with make_client(server, stores[1], b_clock, retry=tether.Retry(max_retry_after=5)) as b:
        with pytest.raises(tether.RateLimitError) as caught:
            await b.get("/x")
    assert server.count("/x") == 1
    assert b_clock.sleeps == []
    assert caught.value.retry_after is not None
    assert 25.0 < caught.value.retry_after <= 30.0
    assert str(caught.value).startswith("host paused by the server's advice (seen by another")


async def test_a_pause_past_b_deadline_fails_b_unsent(
    server: LoopbackServer, stores: list[RedisAdviceStore]
) -> None:
    """A call whose deadline ends before the shared pause raises at once, like a local pause."""
    server.script("GET", "/x", throttled, ok)
    async with make_client(server, stores[0], FakeClock(), retry=None) as a:
        with pytest.raises(tether.RateLimitError):
            await a.get("/x")
    async with make_client(server, stores[1], FakeClock(), timeout=10) as b:
        with pytest.raises(tether.RateLimitError):
            await b.get("/x")
    assert server.count("/x") == 1


async def test_a_503_pause_is_shared_with_its_status(
    server: LoopbackServer, stores: list[RedisAdviceStore]
) -> None:
    """The status that asked for the pause travels with it: B raises ServerError for a 503."""
    server.script("GET", "/x", lambda: web.Response(status=503, headers={"Retry-After": "40"}), ok)
    async with make_client(server, stores[0], FakeClock(), retry=None) as a:
        with pytest.raises(tether.ServerError):
            await a.get("/x")
    async with make_client(
        server, stores[1], FakeClock(), retry=tether.Retry(max_retry_after=5)
    ) as b:
        with pytest.raises(tether.ServerError) as caught:
            await b.get("/x")
    assert caught.value.status == 503
    assert server.count("/x") == 1


async def test_other_hosts_are_not_held(
    server: LoopbackServer, stores: list[RedisAdviceStore]
) -> None:
    """The pause is keyed by scheme, host and port: the same server under another name is free."""
    server.script("GET", "/x", throttled, ok)
    async with make_client(server, stores[0], FakeClock(), retry=None) as a:
        with pytest.raises(tether.RateLimitError):
            await a.get("/x")
    other = server.url.replace("127.0.0.1", "localhost")
    async with tether.Client(other, shared_advice=stores[1], clock=FakeClock()) as b:
        assert (await b.get("/x")).status == 200


async def test_lookups_are_cached_not_one_per_request(
    server: LoopbackServer, stores: list[RedisAdviceStore]
) -> None:
    """Fifty requests, twenty of them at once, cost one lookup while the view is fresh; the
    next lookup comes once `refresh` has passed."""
    server.script("GET", "/x", ok)
    counting = CountingAdvice(stores[0])
    clock = FakeClock()
    async with make_client(server, counting, clock) as b:
        await asyncio.gather(*(b.get("/x") for _ in range(20)))
        for _ in range(30):
            await b.get("/x")
        assert counting.lookups == 1
        clock.advance(counting.refresh)
        await b.get("/x")
        assert counting.lookups == 2
    assert counting.pauses == 0


async def test_the_client_publishes_under_its_host_key(
    server: LoopbackServer, stores: list[RedisAdviceStore]
) -> None:
    """A's pause is in the store under the host key (scheme, host and port) for Retry-After."""
    server.script("GET", "/x", lambda: throttled(12), ok)
    async with make_client(server, stores[0], FakeClock(), retry=None) as a:
        with pytest.raises(tether.RateLimitError):
            await a.get("/x")
    left, status = await stores[1].lookup(server.url)
    assert 10.0 < left <= 12.0
    assert status == 429


async def test_unreachable_redis_means_local_advice_and_one_warning(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Without Redis, requests go on (the local pause still holds) and one warning is logged."""
    server.script("GET", "/x", lambda: throttled(2), ok)
    store = RedisAdviceStore(redis=DEAD)
    clock = FakeClock()
    with caplog.at_level(logging.WARNING):
        async with make_client(server, store, clock) as c:
            for _ in range(5):
                assert (await c.get("/x")).status == 200
                clock.advance(1.0)
    assert clock.sleeps == [2.0]  # the pause this process saw itself
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "s3cret" not in caplog.text
    await store.aclose()


def test_a_store_without_the_protocol_is_a_config_error() -> None:
    """shared_advice= must look like an advice store; anything else fails at construction."""
    with pytest.raises(tether.ConfigError, match="shared_advice"):
        tether.Client("https://api.example.com", shared_advice=object())  # type: ignore[arg-type]


async def test_a_real_second_process_pauses_this_one(
    server: LoopbackServer, redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A pause another OS process was told about holds this process's client, unsent."""
    server.script("GET", "/x", throttled, ok)
    worker = Path(__file__).with_name("_advice_worker.py")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(worker),
        redis_url,
        prefix,
        server.url + "/x",
        stdout=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0
    assert out.decode().strip() == "429"
    store = RedisAdviceStore(redis=redis_url, prefix=prefix)
    async with make_client(server, store, FakeClock(), retry=tether.Retry(max_retry_after=5)) as b:
        with pytest.raises(tether.RateLimitError):
            await b.get("/x")
    assert server.count("/x") == 1
    await store.aclose()
