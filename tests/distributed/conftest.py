"""Redis for the distributed tests: skipped when absent, except under CI where it must exist."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("TETHER_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _reachable() -> bool:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def require_redis() -> str:
    """The test Redis URL; skips the calling test when Redis is unreachable (fails under CI)."""
    if not _reachable():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required under CI=true")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    return REDIS_URL


async def delete_prefixed(url: str, prefix: str) -> None:
    """Delete every key whose name contains `prefix` (a test's own, see `prefix`)."""
    connection = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in connection.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await connection.delete(*keys)
    finally:
        await connection.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_redis()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test (or run) shares."""
    return f"tt{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def client(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client for the test; every key under the test's prefix is deleted afterwards."""
    connection = aioredis.Redis.from_url(redis_url)
    yield connection
    keys = [key async for key in connection.scan_iter(match=f"*{prefix}*", count=1000)]
    if keys:
        await connection.delete(*keys)
    await connection.aclose()
