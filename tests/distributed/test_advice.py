"""Shared server advice: one process's Retry-After pauses every process for that key."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from tether._errors import ConfigError
from tether.distributed import RedisAdviceStore

DEAD = "redis://:s3cret-pw@127.0.0.1:1/0"


async def test_a_pause_is_seen_by_every_process(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A pause recorded by one store object is read by another, as a second process would."""
    first = RedisAdviceStore(redis=redis_url, prefix=prefix)
    second = RedisAdviceStore(redis=redis_url, prefix=prefix)
    assert await second.paused_for("https://api.example") == 0.0
    assert await first.pause("https://api.example", 30) == 30.0
    assert 29.0 < await second.paused_for("https://api.example") <= 30.0
    assert await second.paused_for("https://other.example") == 0.0
    await first.aclose()
    await second.aclose()


async def test_a_shorter_pause_never_cuts_a_longer_one(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A later, shorter Retry-After leaves the longer pause in force; a longer one extends it."""
    store = RedisAdviceStore(redis=redis_url, prefix=prefix)
    await store.pause("h", 20)
    assert 19.0 < await store.pause("h", 2) <= 20.0
    assert await store.pause("h", 40) == 40.0
    await store.clear("h")
    assert await store.paused_for("h") == 0.0
    await store.aclose()


async def test_the_pause_expires_on_the_redis_clock(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """The key carries a millisecond expiry (PX) under a hash tag and names no host."""
    store = RedisAdviceStore(redis=redis_url, prefix=prefix)
    await store.pause("https://user:pw@api.example", 1.5)
    key = store.redis_key("https://user:pw@api.example")
    assert key.startswith("{")
    assert "api.example" not in key
    assert "pw" not in key.split(":", 2)[-1]
    assert 1000 < await client.pttl(key) <= 1500
    await store.aclose()


async def test_zero_nan_and_huge_pauses(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """Zero or NaN pause nothing, a pause beyond a day is capped, a non-number is refused."""
    store = RedisAdviceStore(redis=redis_url, prefix=prefix)
    assert await store.pause("h", 0) == 0.0
    assert await store.pause("h", float("nan")) == 0.0
    assert await store.pause("h", 10**9) == 86_400.0
    with pytest.raises(ConfigError):
        await store.pause("h", "30")  # type: ignore[arg-type]
    await store.aclose()


async def test_unreachable_redis_is_advisory() -> None:
    """Without Redis nothing is shared, nothing is raised, and the password stays hidden."""
    store = RedisAdviceStore(redis=DEAD)
    assert await store.pause("h", 10) == 0.0
    assert await store.paused_for("h") == 0.0
    await store.clear("h")
    assert "s3cret" not in repr(store)
    await store.aclose()


async def test_lookup_says_how_long_and_which_status(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A pause keeps the status that asked for it; a non-error status is refused."""
    store = RedisAdviceStore(redis=redis_url, prefix=prefix)
    assert await store.lookup("h") == (0.0, 0)
    await store.pause("h", 20, status=503)
    left, status = await store.lookup("h")
    assert 19.0 < left <= 20.0
    assert status == 503
    with pytest.raises(ConfigError):
        await store.pause("h", 5, status=200)
    with pytest.raises(ConfigError):
        RedisAdviceStore(redis=redis_url, refresh=-1)
    await store.aclose()
