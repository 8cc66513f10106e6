"""Rate limiting in the pipeline: spacing, bursts, weights, atomic limits, scopes, adaptivity."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

import tether
from tests.conftest import LoopbackServer
from tether.testing import FakeClock, MockTransport


def make(handler=None, **options: object) -> tuple[tether.Client, FakeClock, MockTransport]:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    transport = MockTransport(handler or (lambda r: tether.Response(200)))
    options.setdefault("retry", None)
    client = tether.Client(
        "https://api.example.com",
        transport=transport,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )
    return client, clock, transport


async def test_per_minute_is_spaced_not_bursted() -> None:
    """ "60/min" sends the first request at once and then one per second, never 60 at once."""
    client, clock, _ = make(rate_limit="60/min")
    async with client:
        for _ in range(4):
            await client.get("/x")
    assert clock.sleeps == [pytest.approx(1.0)] * 3


async def test_explicit_burst_with_start_full() -> None:
    """burst=3 with start_full admits three at once, then spaces the rest."""
    client, clock, _ = make(rate_limit=tether.RateLimit(rate=1, per=1, burst=3, start_full=True))
    async with client:
        for _ in range(5):
            await client.get("/x")
    assert clock.sleeps == [pytest.approx(1.0)] * 2


async def test_no_surprise_burst_without_start_full() -> None:
    """With a burst but start_full=False, the bucket starts empty: no initial burst."""
    client, clock, _ = make(rate_limit=tether.RateLimit(rate=1, per=1, burst=3))
    async with client:
        for _ in range(3):
            await client.get("/x")
    assert clock.sleeps == [pytest.approx(1.0)] * 2


async def test_several_limits_are_acquired_together() -> None:
    """With 10/s and 3/min, the tighter limit decides and both are charged at departure."""
    client, clock, _ = make(rate_limit=["10/s", "3/min"])
    async with client:
        for _ in range(3):
            await client.get("/x")
    assert clock.sleeps == [pytest.approx(20.0)] * 2


async def test_weighted_cost() -> None:
    """A request of cost 4 uses four slots of a 2/s limit with burst 4."""
    client, clock, _ = make(rate_limit=tether.RateLimit(rate=2, per=1, burst=4))
    async with client:
        await client.get("/x", cost=4)
        await client.get("/x")
    assert clock.sleeps == [pytest.approx(0.5)]


async def test_cost_beyond_burst_is_a_config_error() -> None:
    """A cost that could never fit the bucket is refused instead of waiting forever."""
    client, _, _ = make(rate_limit="1/s")
    async with client:
        with pytest.raises(tether.ConfigError, match="burst"):
            await client.get("/x", cost=2)


async def test_concurrent_callers_are_served_in_arrival_order() -> None:
    """Concurrent requests wait in FIFO order, each one interval after the previous."""
    order: list[int] = []
    client, clock, _ = make(
        lambda r: order.append(int(r.url.rsplit("/", 1)[1])) or tether.Response(200),  # type: ignore[func-returns-value]
        rate_limit="1/s",
    )
    async with client:
        await asyncio.gather(*(client.get(f"/{n}") for n in range(5)))
    assert order == [0, 1, 2, 3, 4]
    assert sorted(clock.sleeps) == [pytest.approx(x) for x in (1.0, 2.0, 3.0, 4.0)]


async def test_max_wait_refuses_and_commits_nothing() -> None:
    """A wait over max_wait raises RateLimitWaitTooLong and takes no slot from the next request."""
    limiter = tether.RateLimiter("1/min", max_wait=5)
    client, clock, _ = make(rate_limit=limiter)
    async with client:
        await client.get("/x")
        with pytest.raises(tether.RateLimitWaitTooLong) as info:
            await client.get("/x")
        assert info.value.wait == pytest.approx(60.0)
        clock.advance(60)
        await client.get("/x")
    assert clock.sleeps == []


async def test_wait_past_the_deadline_is_refused() -> None:
    """A slot that would come after the call's deadline is not waited for."""
    client, _, _ = make(rate_limit=tether.RateLimiter("1/min", max_wait=None), timeout=10.0)
    async with client:
        await client.get("/x")
        with pytest.raises(tether.RateLimitWaitTooLong, match="deadline"):
            await client.get("/x")


async def test_cancelled_waiter_gives_its_slot_back() -> None:
    """A caller cancelled while waiting releases its reservation for the next one."""
    clock = FakeClock()
    gate = asyncio.Event()

    class BlockingClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            await gate.wait()

    clock = BlockingClock()
    client = tether.Client(
        "https://api.example.com",
        transport=MockTransport(lambda r: tether.Response(200)),
        clock=clock,
        retry=None,
        rate_limit="1/s",
    )
    async with client:
        await client.get("/x")
        waiter = asyncio.create_task(client.get("/x"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        clock.advance(1.0)
        gate.set()
        await client.get("/x")
    assert clock.sleeps == [pytest.approx(1.0)]


class TestScopes:
    async def test_host_scope_keeps_hosts_apart(self) -> None:
        """scope="host" gives each host its own bucket."""
        limiter = tether.RateLimiter("1/s", scope="host")
        client, clock, _ = make(rate_limit=limiter)
        async with client:
            await client.get("https://a.example.com/x")
            await client.get("https://b.example.com/x")
            assert clock.sleeps == []
            await client.get("https://a.example.com/y")
        assert clock.sleeps == [pytest.approx(1.0)]

    async def test_shared_limiter_is_shared_on_purpose(self) -> None:
        """One RateLimiter passed to two clients counts both clients' requests."""
        limiter = tether.RateLimiter("1/s")
        clock = FakeClock()
        transport = MockTransport(lambda r: tether.Response(200))
        a = tether.Client(
            "https://a.example.com", transport=transport, clock=clock, rate_limit=limiter
        )
        b = tether.Client(
            "https://b.example.com", transport=transport, clock=clock, rate_limit=limiter
        )
        async with a, b:
            await a.get("/x")
            await b.get("/x")
        assert clock.sleeps == [pytest.approx(1.0)]

    async def test_credential_scope(self) -> None:
        """scope="credential": clients with the same credential share, different ones do not."""
        limiter = tether.RateLimiter("1/s", scope="credential")
        clock = FakeClock()
        transport = MockTransport(lambda r: tether.Response(200))
        key_one = tether.auth.Bearer("one")
        clients = [
            tether.Client("https://api.example.com", transport=transport, clock=clock,
                          rate_limit=limiter, auth=auth)
            for auth in (key_one, key_one, tether.auth.Bearer("two"))
        ]  # fmt: skip
        for c in clients:
            await c.get("/x")
        assert clock.sleeps == [pytest.approx(1.0)]

    async def test_endpoint_group(self) -> None:
        """A limiter with paths= applies only to matching endpoints, beside the client limit."""
        client, clock, _ = make(
            rate_limit=[tether.RateLimiter("10/s"), tether.RateLimiter("1/min", paths="/search*")]
        )
        async with client:
            await client.get("/search?q=a")
            await client.get("/items")
            assert clock.sleeps == [pytest.approx(0.1)]
            await client.get("/search/more")
        # The group's slot frees 60 s after the first search; 0.1 s of that has passed.
        assert clock.sleeps[-1] == pytest.approx(59.9)

    def test_bad_options(self) -> None:
        """Unknown scopes, empty limiters and junk limits are ConfigErrors."""
        with pytest.raises(tether.ConfigError):
            tether.RateLimiter("1/s", scope="global")  # type: ignore[arg-type]
        with pytest.raises(tether.ConfigError):
            tether.RateLimiter()
        with pytest.raises(tether.ConfigError):
            tether.Client("https://x.example.com", rate_limit="fast")
        with pytest.raises(tether.ConfigError):
            tether.Client("https://x.example.com", rate_limit=5)  # type: ignore[arg-type]


class TestAdaptive:
    async def test_exhausted_quota_pauses_until_reset(self) -> None:
        """X-RateLimit-Remaining: 0 with a reset holds the next request until the reset."""
        quota = {
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "30",
        }
        answers = iter([tether.Response(200, headers=quota), tether.Response(200)])
        client, clock, _ = make(lambda r: next(answers), rate_limit="adaptive")
        async with client:
            await client.get("/x")
            await client.get("/x")
        assert clock.sleeps == [pytest.approx(30.0)]

    async def test_low_quota_is_spread_over_the_window(self) -> None:
        """With little quota left, requests are spaced to make it last until the reset."""
        headers = {"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=5;t=10'}
        client, clock, _ = make(
            lambda r: tether.Response(200, headers=headers), rate_limit="adaptive"
        )
        async with client:
            for _ in range(3):
                await client.get("/x")
        assert clock.sleeps == [pytest.approx(2.0)] * 2

    async def test_advertised_policy_sets_the_pace(self) -> None:
        """With RateLimit-Policy q=10;w=1 the client paces at 10/s, and the last slot of a
        window (r=0, t=1) does not stall it a whole second."""
        left = iter([5, 0, 9])

        def handler(_: tether.Request) -> tether.Response:
            headers = {
                "RateLimit-Policy": '"default";q=10;w=1',
                "RateLimit": f'"default";r={next(left)};t=1',
            }
            return tether.Response(200, headers=headers)

        client, clock, _ = make(handler, rate_limit="adaptive")
        async with client:
            for _ in range(3):
                await client.get("/x")
        assert clock.sleeps == [pytest.approx(0.1)] * 2

    async def test_refusal_under_a_policy_waits_as_advised(self) -> None:
        """A 429 that carries the policy pauses for its Retry-After, not for a halved rate."""
        answers = iter([429, 200])

        def handler(_: tether.Request) -> tether.Response:
            headers = {
                "RateLimit-Policy": '"default";q=10;w=1',
                "RateLimit": '"default";r=0;t=1',
                "Retry-After": "3",
            }
            return tether.Response(next(answers), headers=headers)

        limiter = tether.RateLimiter(adaptive=True)
        client, clock, _ = make(handler, rate_limit=limiter)
        async with client:
            with pytest.raises(tether.RateLimitError):
                await client.get("/x")
            await client.get("/x")
        assert limiter.current_rate() == pytest.approx(10.0)
        assert clock.sleeps == [pytest.approx(3.0)]

    async def test_throttle_halves_the_measured_rate(self) -> None:
        """A bare 429 cuts the rate the client was sending at."""
        statuses = iter([200] * 10 + [429] + [200] * 3)
        limiter = tether.RateLimiter(adaptive=True)
        client, clock, _ = make(lambda r: tether.Response(next(statuses)), rate_limit=limiter)
        async with client:
            for _ in range(10):
                await client.get("/x")
                clock.advance(0.1)
            with pytest.raises(tether.RateLimitError):
                await client.get("/x")
            rate = limiter.current_rate()
            assert rate is not None
            assert 3.0 <= rate <= 7.0
            await client.get("/x")
            await client.get("/x")
        assert clock.sleeps
        assert max(clock.sleeps) == pytest.approx(1 / rate, rel=0.05)


async def test_against_a_real_server(server: LoopbackServer) -> None:
    """On a real loopback server the limiter spaces requests the same way."""
    server.script("GET", "/x", lambda: web.json_response({}))
    clock = FakeClock()
    async with tether.Client(server.url, clock=clock, rate_limit="2/s") as client:
        for _ in range(3):
            await client.get("/x")
    assert server.count("/x") == 3
    assert clock.sleeps == [pytest.approx(0.5)] * 2
