"""Breaker(gossip=...): breakers in three processes, each its own, opening on a quorum of others.

Three clients with their own BreakerGossip instances stand in for three processes against one
loopback server: /bad answers 503, /good 200, and both share one circuit (one host). Every
breaker opens after two calls at 50 % failures and probes once; each runs on its own FakeClock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from aiohttp import web

import tether
from tests.conftest import LoopbackServer
from tether.distributed import BreakerGossip
from tether.testing import FakeClock

DEAD = "redis://:s3cret-pw@127.0.0.1:1/0"


class Node:
    """One process: a client whose breaker gossips, its clock and the events it saw."""

    def __init__(self, server: LoopbackServer, gossip: BreakerGossip) -> None:
        self.gossip = gossip
        self.clock = FakeClock()
        self.events: list[tether.BreakerEvent] = []
        breaker = tether.Breaker(
            minimum_calls=2,
            open_for=5.0,
            half_open_probes=1,
            gossip=gossip,
            on_state_change=self.events.append,
        )
        self.client = tether.Client(server.url, breaker=breaker, retry=None, clock=self.clock)
        self.host = server.url

    async def fail_until_open(self) -> None:
        for _ in range(2):
            with pytest.raises(tether.ServerError):
                await self.client.get("/bad")
        assert self.state() == "open"
        await self.gossip.drain()

    def state(self) -> str:
        return self.client.circuits()[self.host]


NodeFactory = Callable[..., Node]


@pytest.fixture
async def make_node(
    server: LoopbackServer, redis_url: str, prefix: str, client: aioredis.Redis
) -> AsyncIterator[NodeFactory]:
    server.script("GET", "/bad", lambda: web.Response(status=503))
    server.script("GET", "/good", lambda: web.json_response({"ok": True}))
    made: list[Node] = []

    def make(instance: str, kind: type[BreakerGossip] = BreakerGossip, **options: object) -> Node:
        gossip = kind(redis=redis_url, prefix=prefix, instance=instance, **options)  # type: ignore[arg-type]
        node = Node(server, gossip)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.client.aclose()
        await node.gossip.aclose()


async def test_one_open_breaker_does_not_open_the_others(
    make_node: NodeFactory, server: LoopbackServer
) -> None:
    """A's circuit opens; B and C, which see one open report of three, keep calling."""
    a, b, c = make_node("a"), make_node("b"), make_node("c")
    for node in (b, c):
        await node.client.get("/good")
    await a.fail_until_open()
    for node in (b, c):
        await node.gossip.sync()
        assert (await node.client.get("/good")).status == 200
        assert node.state() == "closed"
    view = await c.gossip.view(a.host)
    assert (view.open, view.closed) == (1, 2)
    assert server.count("/good") == 4


async def test_two_open_breakers_open_the_third_which_then_probes(
    make_node: NodeFactory, server: LoopbackServer
) -> None:
    """With A and B open, C opens on shared evidence without a failure of its own (recorded as
    such in its event and metrics), then probes by itself once its open time is over."""
    a, b, c = make_node("a"), make_node("b"), make_node("c")
    await c.client.get("/good")
    await a.fail_until_open()
    await b.fail_until_open()
    await c.gossip.sync()
    with pytest.raises(tether.CircuitOpenError):
        await c.client.get("/good")
    assert server.count("/good") == 1
    assert c.state() == "open"
    assert c.events[-1].reason == "shared_evidence"
    assert c.client.circuit_metrics()[c.host].open_reason == "shared_evidence"
    await c.gossip.drain()
    view = await a.gossip.view(c.host)
    assert (view.open, view.open_shared, view.reporting) == (2, 1, 3)

    c.clock.advance(5.0)  # the longest its first open period can be
    assert (await c.client.get("/good")).status == 200  # its own probe
    assert server.count("/good") == 2
    assert [str(e.to_state) for e in c.events] == ["open", "half_open", "closed"]


async def test_followers_do_not_keep_a_quorum_alive(
    make_node: NodeFactory, server: LoopbackServer
) -> None:
    """Instances open on shared evidence are not evidence: once A recovers, B's open report and
    C's shared one are no quorum, and A stays closed."""
    a, b, c = make_node("a"), make_node("b"), make_node("c")
    await c.client.get("/good")
    await a.fail_until_open()
    await b.fail_until_open()
    await c.gossip.sync()
    with pytest.raises(tether.CircuitOpenError):
        await c.client.get("/good")
    a.clock.advance(5.0)
    assert (await a.client.get("/good")).status == 200  # A's probe closes its circuit
    await a.gossip.drain()
    await a.gossip.sync()
    assert (await a.client.get("/good")).status == 200
    assert a.state() == "closed"


async def test_expired_reports_stop_counting(
    make_node: NodeFactory, redis_url: str, prefix: str, server: LoopbackServer
) -> None:
    """Two instances that reported open and then died stop counting once their reports run
    out on the Redis clock: the third stays closed."""
    dead = [
        BreakerGossip(redis=redis_url, prefix=prefix, instance=f"gone{n}", ttl=0.3, interval=0.1)
        for n in range(2)
    ]
    c = make_node("c")
    for gossip in dead:
        await gossip.publish(c.host, "open")
    assert (await c.gossip.view(c.host)).quorum_open  # while they last, they would count
    deadline = time.monotonic() + 10
    while (await c.gossip.view(c.host)).open:
        assert time.monotonic() < deadline, "the reports never expired"
        await asyncio.sleep(0.02)
    await c.client.get("/good")
    await c.gossip.sync()
    assert (await c.client.get("/good")).status == 200
    assert c.state() == "closed"
    assert server.count("/good") == 2
    for gossip in dead:
        await gossip.aclose()


class CountingGossip(BreakerGossip):
    """Counts its syncs (its round trips to Redis, one per circuit)."""

    syncs = 0

    async def sync(self) -> None:
        self.syncs += 1
        await super().sync()


async def test_requests_read_a_cached_view(make_node: NodeFactory) -> None:
    """Fifty requests cost no Redis round trip each: the background sync runs once (on the
    circuit's first sight) within an interval much longer than the test."""
    node = make_node("a", CountingGossip, interval=5.0)
    gossip = node.gossip
    assert isinstance(gossip, CountingGossip)
    for _ in range(50):
        await node.client.get("/good")
    deadline = time.monotonic() + 10
    while not gossip.syncs:
        assert time.monotonic() < deadline, "the first sync never ran"
        await asyncio.sleep(0.01)
    assert gossip.syncs <= 2


async def test_redis_down_means_local_breakers_and_one_warning(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Without Redis the breaker works alone: it opens on its own failures, no gossip error
    reaches the caller, and one warning says so (the password never shown)."""
    server.script("GET", "/bad", lambda: web.Response(status=503))
    gossip = BreakerGossip(redis=DEAD, instance="lonely")
    node = Node(server, gossip)
    with caplog.at_level(logging.WARNING, logger="tether.distributed"):
        await node.fail_until_open()
        await gossip.sync()
        with pytest.raises(tether.CircuitOpenError):
            await node.client.get("/bad")
        await gossip.sync()
    warnings = [r for r in caplog.records if r.name == "tether.distributed"]
    assert len(warnings) == 1
    assert "s3cret" not in caplog.text
    assert server.count("/bad") == 2
    await node.client.aclose()
    await gossip.aclose()


def test_gossip_must_look_like_gossip() -> None:
    """Breaker(gossip=...) takes a BreakerGossip (or the same two methods); else ConfigError."""
    with pytest.raises(tether.ConfigError, match="gossip"):
        tether.Breaker(gossip=object())  # type: ignore[arg-type]
