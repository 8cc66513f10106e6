"""Breaker gossip: each process publishes its own state; a quorum of open is shared evidence."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from tether._core._breaker import CircuitState
from tether._errors import ConfigError
from tether._flow import BreakerEvent
from tether.distributed import BreakerGossip

DEAD = "redis://:s3cret-pw@127.0.0.1:1/0"
HOST = "https://api.example"


def gossips(url: str, prefix: str, count: int, **options: object) -> list[BreakerGossip]:
    return [
        BreakerGossip(redis=url, prefix=prefix, instance=f"i{n}", **options)  # type: ignore[arg-type]
        for n in range(count)
    ]


async def test_one_bad_node_does_not_poison_the_others(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """One open report among four is no quorum; three of four is."""
    nodes = gossips(redis_url, prefix, 4)
    for node in nodes:
        await node.publish(HOST, CircuitState.CLOSED)
    await nodes[0].publish(HOST, CircuitState.OPEN)
    view = await nodes[1].view(HOST)
    assert (view.open, view.closed, view.reporting) == (1, 3, 4)
    assert not view.quorum_open
    await nodes[1].publish(HOST, "open")
    assert not (await nodes[3].view(HOST)).quorum_open  # 2 of 4 is not more than half
    await nodes[2].publish(HOST, "open")
    assert (await nodes[3].view(HOST)).quorum_open
    assert not (await nodes[3].view("https://other.example")).quorum_open
    for node in nodes:
        await node.aclose()


async def test_too_few_reports_never_open(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A lone instance's open report is below min_reports and decides nothing."""
    (node,) = gossips(redis_url, prefix, 1, min_reports=2)
    await node.publish(HOST, CircuitState.OPEN)
    view = await node.view(HOST)
    assert view.open == 1
    assert not view.quorum_open
    await node.aclose()


async def test_reports_expire_on_the_redis_clock(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A process that stops reporting stops counting after ttl; the key itself expires too."""
    short, steady = gossips(redis_url, prefix, 2, ttl=0.2, interval=0.1, min_reports=1)
    await short.publish(HOST, "open")
    assert 0 < await client.pttl(short.redis_key(HOST)) <= 400
    assert (await steady.view(HOST)).open == 1
    deadline = time.monotonic() + 10
    while (await steady.view(HOST)).reporting:  # real expiry: Redis's clock decides
        assert time.monotonic() < deadline, "the report never expired"
        await asyncio.sleep(0.02)
    await short.aclose()
    await steady.aclose()


async def test_breaker_hook_publishes_transitions(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """Used as Breaker(on_state_change=...), every transition is published in the background;
    one instance's open report is never a quorum, even when min_reports allows one report."""
    (node,) = gossips(redis_url, prefix, 1, min_reports=1)
    event = BreakerEvent(
        key=HOST,
        from_state=CircuitState.CLOSED,
        to_state=CircuitState.OPEN,
        reason="failure_rate",
        retry_at=None,
        failure_rate=0.9,
        slow_call_rate=None,
    )
    node.on_state_change(event)
    await node.drain()
    view = await node.view(HOST)
    assert view.open == 1
    assert not view.quorum_open
    await node.aclose()


async def test_unreachable_redis_means_no_evidence() -> None:
    """Without Redis nothing is published, the view is empty, and the password stays hidden."""
    node = BreakerGossip(redis=DEAD, min_reports=1)
    await node.publish(HOST, "open")
    view = await node.view(HOST)
    assert view.reporting == 0
    assert not view.quorum_open
    assert "s3cret" not in repr(node)
    await node.aclose()


@pytest.mark.parametrize(
    "options",
    [
        {"quorum": 1.0},
        {"quorum": -0.1},
        {"quorum": True},
        {"min_reports": 0},
        {"ttl": 0},
        {"interval": 0},
        {"ttl": 1.0, "interval": 0.6},
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object]) -> None:
    """Invalid options fail at construction with a ConfigError."""
    with pytest.raises(ConfigError):
        BreakerGossip(redis=DEAD, **options)  # type: ignore[arg-type]


async def test_unknown_states_are_refused() -> None:
    """Publishing something that is not a circuit state is a ConfigError."""
    node = BreakerGossip(redis=DEAD)
    with pytest.raises(ConfigError):
        await node.publish(HOST, "broken")
    await node.aclose()
