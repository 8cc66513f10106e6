"""A RedisRateLimiter given to a client is acquired through Redis, shared across processes."""

from __future__ import annotations

import pytest

import tether
from tether.distributed import RedisRateLimiter
from tether.testing import MockTransport


def client_with(limiter: RedisRateLimiter) -> tether.Client:
    transport = MockTransport(lambda r: tether.Response(200))
    return tether.Client("https://api.example.com", transport=transport, rate_limit=limiter)


async def test_two_limiters_on_one_key_share_one_bucket(redis_url: str, prefix: str) -> None:
    """Two limiter objects with the same name (two processes, in effect) draw on one quota:
    after the first client's request, the second must wait, which max_wait=0 refuses."""
    first = RedisRateLimiter("1/h", redis=redis_url, name="shared", prefix=prefix, max_wait=0)
    second = RedisRateLimiter("1/h", redis=redis_url, name="shared", prefix=prefix, max_wait=0)
    try:
        async with client_with(first) as a, client_with(second) as b:
            assert (await a.get("/x")).status == 200
            with pytest.raises(tether.RateLimitWaitTooLong):
                await b.get("/x")
    finally:
        # A limiter may be shared by several clients, so its owner closes it, not a client.
        await first.aclose()
        await second.aclose()


async def test_other_names_are_other_buckets(redis_url: str, prefix: str) -> None:
    """Limiters with different names do not share a bucket."""
    one = RedisRateLimiter("1/h", redis=redis_url, name="one", prefix=prefix, max_wait=0)
    two = RedisRateLimiter("1/h", redis=redis_url, name="two", prefix=prefix, max_wait=0)
    try:
        async with client_with(one) as a, client_with(two) as b:
            await a.get("/x")
            await b.get("/x")
    finally:
        await one.aclose()
        await two.aclose()
