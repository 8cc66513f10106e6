"""RedisCache: the cache-backend conformance tests of the built-in backends, and sharing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.cache import test_backends as conformance
from tests.cache.test_backends import (  # the shared behaviour, run here against Redis
    BackendFactory,
    stored,
    test_clear,
    test_delete_drops_every_variant,
    test_least_recently_used_is_evicted_by_bytes,
    test_one_large_response_evicts_several,
    test_partitions_are_separate_variants,
    test_response_larger_than_the_cache_is_not_kept,
    test_round_trip,
    test_same_variant_is_replaced,
    test_variants_live_side_by_side,
)
from tether._errors import ConfigError
from tether.cache import CacheBackend
from tether.cache._redis import RedisCache

__all__ = [
    "test_clear",
    "test_delete_drops_every_variant",
    "test_least_recently_used_is_evicted_by_bytes",
    "test_one_large_response_evicts_several",
    "test_partitions_are_separate_variants",
    "test_response_larger_than_the_cache_is_not_kept",
    "test_round_trip",
    "test_same_variant_is_replaced",
    "test_variants_live_side_by_side",
]

DEAD = "redis://:s3cret-pw@127.0.0.1:1/0"


@pytest.fixture
async def make_backend(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> AsyncIterator[BackendFactory]:
    made: list[RedisCache] = []

    def make(max_bytes: int = 2**20) -> CacheBackend:
        backend = RedisCache(
            redis=redis_url, prefix=prefix, name=f"c{len(made)}", max_bytes=max_bytes
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


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
    assert conformance.T0 > 0
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
