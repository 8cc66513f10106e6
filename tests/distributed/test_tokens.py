"""The Redis token store beyond the conformance suite (tests/auth/test_stores.py runs that on
Redis too): sharing between processes, the fenced lease, and secrecy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.auth import test_stores as conformance
from tether._errors import AuthError, ConfigError
from tether.auth import TokenStore
from tether.distributed import RedisTokenStore

DEAD = "redis://:s3cret-pw@127.0.0.1:1/0"
token = conformance.token


@pytest.fixture
async def store(redis_url: str, prefix: str, client: aioredis.Redis) -> AsyncIterator[TokenStore]:
    made = RedisTokenStore(redis=redis_url, prefix=prefix)
    yield made
    await made.aclose()


async def test_two_processes_see_one_token(redis_url: str, prefix: str, store: TokenStore) -> None:
    """A token saved through one store object is loaded and swapped through another."""
    other = RedisTokenStore(redis=redis_url, prefix=prefix)
    assert other.identity == store.identity
    await store.save("k", token(1), expected_version=None)
    assert await other.load("k") == token(1)
    assert await other.save("k", token(2), expected_version=1)
    assert not await store.save("k", token(2, "late"), expected_version=1)
    await other.aclose()


async def test_the_lock_excludes_other_processes(redis_url: str, prefix: str) -> None:
    """While one process holds the refresh lock another waits, then gets it."""
    first = RedisTokenStore(redis=redis_url, prefix=prefix)
    second = RedisTokenStore(redis=redis_url, prefix=prefix, lock_timeout=5)
    order: list[str] = []
    released = asyncio.Event()

    async def holder() -> None:
        async with first.lock("k"):
            order.append("first in")
            await released.wait()
            order.append("first out")

    async def waiter() -> None:
        async with second.lock("k"):
            order.append("second in")

    task = asyncio.create_task(holder())
    while not order:
        await asyncio.sleep(0)
    other = asyncio.create_task(waiter())
    await asyncio.sleep(0.1)
    assert order == ["first in"]
    released.set()
    await asyncio.gather(task, other)
    assert order == ["first in", "first out", "second in"]
    await first.aclose()
    await second.aclose()


async def test_a_lapsed_lease_cannot_overwrite_the_next_holder(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A holder whose lease ran out has its save refused once another process took the lock."""
    slow = RedisTokenStore(redis=redis_url, prefix=prefix, lock_timeout=0.2)
    fast = RedisTokenStore(redis=redis_url, prefix=prefix, lock_timeout=5)
    await slow.save("k", token(1), expected_version=None)
    taken, saved = asyncio.Event(), asyncio.Event()

    async def next_holder() -> None:  # another process: its own task, its own lease
        async with fast.lock("k"):
            taken.set()
            await saved.wait()
            assert await fast.save("k", token(2, "fresh"), expected_version=1)

    async with slow.lock("k"):
        await asyncio.sleep(0.3)  # the lease (0.2 s) runs out: a stalled refresh
        other = asyncio.create_task(next_holder())
        await taken.wait()
        # Same version, so compare-and-swap alone would accept it: the fence refuses it.
        assert not await slow.save("k", token(2, "stale"), expected_version=1)
        saved.set()
        await other
    loaded = await fast.load("k")
    assert loaded is not None
    assert loaded.access_token.get_secret_value() == "fresh-2"
    await slow.aclose()
    await fast.aclose()


async def test_lock_times_out(redis_url: str, prefix: str) -> None:
    """A lock held elsewhere for longer than lock_timeout raises AuthError."""
    holder = RedisTokenStore(redis=redis_url, prefix=prefix, lock_timeout=5)
    waiter = RedisTokenStore(redis=redis_url, prefix=prefix, lock_timeout=0.1)
    async with holder.lock("k"):
        with pytest.raises(AuthError, match="timed out"):
            async with waiter.lock("k"):
                pass
    await holder.aclose()
    await waiter.aclose()


async def test_keys_and_errors_hold_no_secrets(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """Key names are digests of the token key; errors and reprs never show the password."""
    store = RedisTokenStore(redis=redis_url, prefix=prefix)
    await store.save("client-id:alice@example.com", token(1), expected_version=None)
    names = [name async for name in client.scan_iter(match=f"*{prefix}*")]
    assert names
    assert all(b"alice" not in name for name in names)
    dead = RedisTokenStore(redis=DEAD)
    with pytest.raises(AuthError) as caught:
        await dead.load("k")
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(dead)
    assert "s3cret" not in dead.identity
    with pytest.raises(ConfigError):
        RedisTokenStore(redis=DEAD, lock_timeout=0)
    await store.aclose()
    await dead.aclose()
