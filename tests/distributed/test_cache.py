"""RedisCache beyond the backend conformance suite (tests/cache/test_backends.py runs that on
Redis too): sharing between processes, damaged values, an unreachable Redis."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from tests.cache.test_backends import stored
from tether._errors import ConfigError
from tether.cache import CacheBackend
from tether.cache._redis import RedisCache

DEAD = "redis://:s3cret-pw@127.0.0.1:1/0"


async def test_processes_share_one_cache_and_budget(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """What one process stores another reads, and the byte count is the cache's, not each's."""
    first = RedisCache(redis=redis_url, prefix=prefix)
    second = RedisCache(redis=redis_url, prefix=prefix)
    response = stored(b"shared")
    await first.set("k", response)
    assert list(await second.get("k")) == [response]
    assert await first.size() == await second.size() == response.size
    await second.delete("k")
    assert await first.size() == 0
    await first.aclose()
    await second.aclose()


async def test_damaged_values_read_as_absent(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A value that is not a framed response (damage, another version) is a miss."""
    cache = RedisCache(redis=redis_url, prefix=prefix)
    await cache.set("k", stored())
    await client.hset(cache._keys[0], "k\n", b"\x00\x00")
    assert list(await cache.get("k")) == []
    await cache.aclose()


async def test_unreachable_redis_is_a_miss_not_an_error() -> None:
    """Without Redis, lookups miss and stores are skipped; the password is never shown."""
    cache = RedisCache(redis=DEAD)
    assert list(await cache.get("k")) == []
    await cache.set("k", stored())
    await cache.delete("k")
    await cache.clear()
    assert "s3cret" not in repr(cache)
    assert isinstance(cache, CacheBackend)
    with pytest.raises(ConfigError):
        RedisCache(redis=DEAD, max_bytes=0)
    await cache.aclose()
