"""The Redis rate limiter: shared GCRA buckets, scopes, waits, refunds and the failure policy."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

import tether
from tether._errors import ConfigError, RateLimitWaitTooLong
from tether._flow import rate_limiters
from tether.distributed import RedisRateLimiter, SharedStateUnavailable
from tether.testing import FakeClock

DEAD = "redis://:s3cret-pw@127.0.0.1:1/0"


def limiter(url: str, prefix: str, *limits: str, **options: object) -> RedisRateLimiter:
    return RedisRateLimiter(*(limits or ("10/s",)), redis=url, prefix=prefix, **options)  # type: ignore[arg-type]


async def test_waits_are_spaced_at_the_rate(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """Back-to-back acquires are spaced one emission interval apart, the first going at once."""
    lim = limiter(redis_url, prefix, "10/s")
    clock = FakeClock()
    waits = [await lim.acquire("", clock=clock) for _ in range(4)]
    assert waits[0] == 0.0
    for index, wait in enumerate(waits[1:], start=1):
        assert wait == pytest.approx(0.1 * index, abs=0.02)
    await lim.aclose()


async def test_two_processes_share_one_bucket(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """Two limiter objects with the same name queue in one bucket, as two processes would."""
    first = limiter(redis_url, prefix, "10/s", name="api")
    second = limiter(redis_url, prefix, "10/s", name="api")
    clock = FakeClock()
    await first.acquire("", clock=clock)
    assert await second.acquire("", clock=clock) == pytest.approx(0.1, abs=0.02)
    other = limiter(redis_url, prefix, "10/s", name="other-api")
    assert await other.acquire("", clock=clock) == 0.0
    for item in (first, second, other):
        await item.aclose()


async def test_host_scope_stays_per_host(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A per-host limit keeps one bucket per host in Redis: hosts never share (issue #147)."""
    lim = limiter(redis_url, prefix, "10/s", scope="host")
    clock = FakeClock()
    await lim.acquire("https://a.example", clock=clock)
    assert await lim.acquire("https://b.example", clock=clock) == 0.0
    assert await lim.acquire("https://a.example", clock=clock) > 0.05
    key_a, key_b = lim.redis_key("https://a.example"), lim.redis_key("https://b.example")
    assert key_a != key_b
    assert key_a.startswith("{")
    assert key_a.endswith("}")
    assert "a.example" not in key_a
    assert await client.exists(key_a, key_b) == 2
    assert 0 < await client.pttl(key_a) <= 2000  # buckets at rest expire
    await lim.aclose()


async def test_refused_wait_commits_nothing(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """A wait beyond max_wait or the deadline raises and leaves the queue as it was."""
    lim = limiter(redis_url, prefix, "1/s", max_wait=0.5)
    clock = FakeClock()
    await lim.acquire("", clock=clock)
    with pytest.raises(RateLimitWaitTooLong) as caught:
        await lim.acquire("", clock=clock)
    assert caught.value.wait == pytest.approx(1.0, abs=0.05)
    with pytest.raises(RateLimitWaitTooLong):
        await lim.acquire("", clock=clock, deadline=clock.monotonic() + 0.1)
    unbounded = limiter(redis_url, prefix, "1/s", max_wait=None)
    assert await unbounded.acquire("", clock=clock) == pytest.approx(1.0, abs=0.05)
    await lim.aclose()
    await unbounded.aclose()


async def test_several_limits_and_weighted_costs(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """Several limits are charged together; a tuple cost weighs each limit separately."""
    lim = limiter(redis_url, prefix, "100/s", max_wait=None)
    lim2 = RedisRateLimiter(
        tether.RateLimit(rate=10, per=1),
        tether.RateLimit(rate=1000, per=1, burst=1000),
        redis=redis_url,
        prefix=prefix,
        max_wait=None,
    )
    clock = FakeClock()
    assert await lim2.acquire("", (1, 1000), clock=clock) == 0.0
    # The token limit (1000/s, all spent) now dominates the request limit (0.1 s).
    assert await lim2.acquire("", (1, 500), clock=clock) == pytest.approx(0.5, abs=0.03)
    assert await lim2.acquire("", (0, 0), clock=clock) == 0.0
    with pytest.raises(ConfigError):
        await lim2.acquire("", (1,), clock=clock)
    with pytest.raises(ConfigError):
        await lim.acquire("", 2.0, clock=clock)  # more than the burst can ever hold
    await lim.aclose()
    await lim2.aclose()


async def test_refund_returns_the_slot(redis_url: str, prefix: str, client: aioredis.Redis) -> None:
    """A refunded reservation is handed to the next caller."""
    lim = limiter(redis_url, prefix, "1/s", max_wait=None)
    clock = FakeClock()
    await lim.acquire("", clock=clock)
    assert await lim.acquire("", clock=clock) == pytest.approx(1.0, abs=0.05)
    await lim.arefund("", clock=clock)
    assert await lim.acquire("", clock=clock) == pytest.approx(1.0, abs=0.05)
    await lim.aclose()


async def test_fail_open_lets_requests_through() -> None:
    """Under fail_open an unreachable Redis means no waiting at all."""
    lim = RedisRateLimiter("1/s", redis=DEAD, on_redis_error="fail_open")
    clock = FakeClock()
    assert [await lim.acquire("", clock=clock) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.degraded
    await lim.aclose()


async def test_fail_closed_refuses_without_leaking_the_password() -> None:
    """Under fail_closed the request is refused with an error that names Redis but no secret."""
    lim = RedisRateLimiter("1/s", redis=DEAD, on_redis_error="fail_closed")
    with pytest.raises(SharedStateUnavailable) as caught:
        await lim.acquire("", clock=FakeClock())
    assert "127.0.0.1:1" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert "s3cret" not in repr(lim)
    await lim.aclose()


async def test_local_fallback_paces_at_the_share() -> None:
    """Under local, an unreachable Redis leaves each process its share of the quota."""
    lim = RedisRateLimiter("10/s", redis=DEAD, on_redis_error="local", local_share=0.25)
    clock = FakeClock()
    waits = [await lim.acquire("", clock=clock) for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.4, 0.8])
    await lim.aclose()


async def test_recovers_when_redis_returns(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    """After an outage the limiter tries Redis again within a second and goes back to it."""
    lim = limiter(redis_url, prefix, "10/s", local_share=0.5, max_wait=None)
    script = lim._scripts[0]

    async def broken(**_: object) -> object:
        raise ConnectionError("down")

    lim._scripts = (broken, lim._scripts[1])
    clock = FakeClock()
    assert await lim.acquire("", clock=clock) == 0.0
    assert lim.degraded
    lim._scripts = (script, lim._scripts[1])
    assert await lim.acquire("", clock=clock) == pytest.approx(0.2)  # still local: no probe yet
    clock.advance(1.0)
    assert await lim.acquire("", clock=clock) == 0.0  # Redis again, a fresh bucket
    assert not lim.degraded
    assert await client.exists(lim.redis_key("")) == 1
    await lim.aclose()


def test_accepted_as_a_client_rate_limit() -> None:
    """The client's rate_limit= option takes it like any RateLimiter, keeping its scope."""
    lim = RedisRateLimiter("5/s", redis="redis://127.0.0.1:6379/0", scope="host", paths="/x*")
    assert rate_limiters(lim) == (lim,)
    assert rate_limiters([lim, "1/s"])[1] is lim
    assert lim.applies("/x1")
    assert not lim.applies("/y")
    clock = FakeClock()
    # The synchronous interface paces locally at the share until the pipeline awaits acquire.
    assert lim.wait("h", clock.monotonic(), 1.0) == 0.0
    lim.reserve("h", clock.monotonic(), 1.0)
    assert lim.wait("h", clock.monotonic(), 1.0) == pytest.approx(0.8)


@pytest.mark.parametrize(
    "options",
    [
        {"on_redis_error": "ignore"},
        {"local_share": 0},
        {"local_share": 1.5},
        {"local_share": True},
        {"prefix": "{x}"},
        {"scope": "global"},
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object]) -> None:
    """Invalid options fail at construction with a ConfigError."""
    with pytest.raises(ConfigError):
        RedisRateLimiter("1/s", redis="redis://127.0.0.1:6379/0", **options)  # type: ignore[arg-type]


def test_needs_a_limit_and_a_redis() -> None:
    """A limiter without limits, or with something that is not Redis, is refused."""
    with pytest.raises(ConfigError):
        RedisRateLimiter(redis="redis://127.0.0.1:6379/0")
    with pytest.raises(ConfigError):
        RedisRateLimiter("1/s", redis="http://127.0.0.1:6379")
    with pytest.raises(ConfigError):
        RedisRateLimiter("1/s", redis=object())
