"""Retries against a real loopback server: what is repeated, when, and after how long."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import tether
from tests.conftest import LoopbackServer
from tether.testing import FakeClock


def json(status: int, body: object = None, **headers: str):  # type: ignore[no-untyped-def]
    fields = {name.replace("_", "-"): value for name, value in headers.items()}
    payload = body if body is not None else {"status": status}
    return lambda: web.json_response(payload, status=status, headers=fields)


def client(server: LoopbackServer, clock: FakeClock, **options: object) -> tether.Client:
    options.setdefault("retry", tether.Retry(attempts=3, jitter=False, base_delay=1.0))
    return tether.Client(server.url, clock=clock, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
async def test_transient_status_is_retried(server: LoopbackServer, status: int) -> None:
    """A GET that meets a transient status is repeated and the success is returned."""
    clock = FakeClock()
    server.script("GET", "/x", json(status), json(200, {"ok": True}))
    async with client(server, clock) as c:
        response = await c.get("/x")
    assert response.json() == {"ok": True}
    assert response.attempts == 2
    assert server.count("/x") == 2
    assert clock.sleeps == [1.0]


async def test_backoff_doubles_up_to_the_cap(server: LoopbackServer) -> None:
    """Without jitter, waits are base, 2 x base, ... capped at max_delay."""
    clock = FakeClock()
    server.script("GET", "/x", json(503))
    retry = tether.Retry(attempts=5, jitter=False, base_delay=1.0, max_delay=3.0, budget=None)
    async with client(server, clock, retry=retry) as c:
        with pytest.raises(tether.ServerError) as info:
            await c.get("/x")
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0]
    assert info.value.response.attempts == 5
    assert "after 5 attempts" in str(info.value)


async def test_full_jitter_stays_under_the_ceiling(server: LoopbackServer) -> None:
    """With jitter, every wait is somewhere between zero and its ceiling."""
    clock = FakeClock()
    server.script("GET", "/x", json(503))
    retry = tether.Retry(attempts=4, base_delay=1.0, max_delay=8.0, budget=None)
    async with client(server, clock, retry=retry) as c:
        with pytest.raises(tether.ServerError):
            await c.get("/x")
    assert len(clock.sleeps) == 3
    for delay, ceiling in zip(clock.sleeps, [1.0, 2.0, 4.0], strict=True):
        assert 0 <= delay <= ceiling


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
async def test_permanent_status_is_not_retried(server: LoopbackServer, status: int) -> None:
    """Statuses outside the retry set raise at once, after one attempt."""
    clock = FakeClock()
    server.script("GET", "/x", json(status))
    async with client(server, clock) as c:
        with pytest.raises(tether.HTTPStatusError) as info:
            await c.get("/x")
    assert info.value.status == status
    assert server.count("/x") == 1
    assert clock.sleeps == []


async def test_post_is_not_repeated_after_sending(server: LoopbackServer) -> None:
    """A POST answered 503 may have been processed, so without a key it is not repeated."""
    clock = FakeClock()
    server.script("POST", "/charges", json(503), json(201))
    async with client(server, clock) as c:
        with pytest.raises(tether.ServerError):
            await c.post("/charges", json={"amount": 100})
    assert server.count("/charges") == 1


async def test_callers_idempotency_key_makes_post_repeatable(server: LoopbackServer) -> None:
    """A POST that carries the caller's idempotency key is repeated with that same key."""
    clock = FakeClock()
    server.script("POST", "/charges", json(503), json(201))
    async with client(server, clock) as c:
        response = await c.post("/charges", json={"amount": 1}, headers={"Idempotency-Key": "mine"})
    assert response.status == 201
    assert [s.headers["Idempotency-Key"] for s in server.seen] == ["mine", "mine"]


async def test_automatic_idempotency_key_is_reused_on_every_attempt(server: LoopbackServer) -> None:
    """With idempotency_key=True, one generated key travels on every attempt of one call."""
    clock = FakeClock()
    server.script("POST", "/charges", json(500), json(502), json(201))
    retry = tether.Retry(
        attempts=3, jitter=False, idempotency_key=True, idempotency_header="X-Idem"
    )
    async with client(server, clock, retry=retry) as c:
        await c.post("/charges", json={})
        await c.post("/charges", json={})
    keys = [s.headers.get("X-Idem") for s in server.seen]
    assert len(keys) == 4
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] not in (None, keys[0])


async def test_automatic_key_leaves_idempotent_methods_alone(server: LoopbackServer) -> None:
    """GET needs no idempotency key, so none is added."""
    clock = FakeClock()
    server.script("GET", "/x", json(200))
    retry = tether.Retry(idempotency_key=True)
    async with client(server, clock, retry=retry) as c:
        await c.get("/x")
    assert "Idempotency-Key" not in server.seen[0].headers


async def test_server_says_retry_wins_for_post(server: LoopbackServer) -> None:
    """x-should-retry: true lets a keyless POST be repeated."""
    clock = FakeClock()
    server.script("POST", "/x", json(503, x_should_retry="true"), json(200))
    async with client(server, clock) as c:
        assert (await c.post("/x")).status == 200
    assert server.count("/x") == 2


async def test_server_says_do_not_retry(server: LoopbackServer) -> None:
    """x-should-retry: false stops the retry of a GET 503."""
    clock = FakeClock()
    server.script("GET", "/x", json(503, x_should_retry="false"), json(200))
    async with client(server, clock) as c:
        with pytest.raises(tether.ServerError):
            await c.get("/x")
    assert server.count("/x") == 1


async def test_retry_none_means_one_attempt(server: LoopbackServer) -> None:
    """retry=None sends once and reports the failure."""
    clock = FakeClock()
    server.script("GET", "/x", json(503), json(200))
    async with tether.Client(server.url, clock=clock, retry=None) as c:
        with pytest.raises(tether.ServerError):
            await c.get("/x")
    assert server.count("/x") == 1


async def test_per_request_retry_override(server: LoopbackServer) -> None:
    """A call may pass its own Retry, or None, overriding the client's."""
    clock = FakeClock()
    server.script("GET", "/x", json(503), json(200))
    async with client(server, clock) as c:
        with pytest.raises(tether.ServerError):
            await c.get("/x", retry=None)
        assert (await c.get("/x", retry=tether.Retry(attempts=2, jitter=False))).status == 200


async def test_raise_for_status_off_returns_the_response(server: LoopbackServer) -> None:
    """With raise_for_status=False the final error response is returned, not raised."""
    clock = FakeClock()
    server.script("GET", "/x", json(404))
    async with client(server, clock, raise_for_status=False) as c:
        assert (await c.get("/x")).status == 404


class TestServerAdvice:
    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({"Retry-After": "7"}, 7.0),
            ({"retry-after-ms": "1500"}, 1.5),
            (
                {
                    "Retry-After": "Thu, 01 Jan 2026 00:00:12 GMT",
                    "Date": "Thu, 01 Jan 2026 00:00:00 GMT",
                },
                12.0,
            ),
            ({"Retry-After": "Wed, 31 Dec 2025 00:00:00 GMT"}, 0.0),
        ],
    )
    async def test_advised_wait_is_obeyed(
        self, server: LoopbackServer, headers: dict[str, str], expected: float
    ) -> None:
        """The wait before the retry is what the server advised, in each of its forms."""
        clock = FakeClock()
        server.script("GET", "/x", json(429, **headers), json(200))
        async with client(server, clock) as c:
            await c.get("/x")
        assert clock.sleeps == [pytest.approx(expected)]

    async def test_advice_over_the_cap_raises_at_once(self, server: LoopbackServer) -> None:
        """A Retry-After longer than max_retry_after raises RateLimitError without sleeping."""
        clock = FakeClock()
        server.script("GET", "/x", json(429, **{"Retry-After": "3600"}), json(200))
        async with client(server, clock) as c:
            with pytest.raises(tether.RateLimitError) as info:
                await c.get("/x")
        assert info.value.retry_after == 3600.0
        assert clock.sleeps == []
        assert server.count("/x") == 1
        assert "retry after 3600.0 s" in str(info.value)

    async def test_server_error_carries_its_advice(self, server: LoopbackServer) -> None:
        """A 503 whose advice exceeds the cap raises ServerError with retry_after set."""
        clock = FakeClock()
        server.script("GET", "/x", json(503, **{"Retry-After": "120"}))
        async with client(server, clock) as c:
            with pytest.raises(tether.ServerError) as info:
                await c.get("/x")
        assert info.value.retry_after == 120.0

    async def test_advice_past_the_deadline_raises_at_once(self, server: LoopbackServer) -> None:
        """Advice that would end after the call's deadline is not slept."""
        clock = FakeClock()
        server.script("GET", "/x", json(429, **{"Retry-After": "20"}), json(200))
        async with client(server, clock, timeout=10.0) as c:
            with pytest.raises(tether.RateLimitError) as info:
                await c.get("/x")
        assert info.value.retry_after == 20.0
        assert clock.sleeps == []

    async def test_pause_is_shared_by_every_request_to_the_host(
        self, server: LoopbackServer
    ) -> None:
        """While a server's advised pause runs, other requests to that host wait for it first."""
        clock = FakeClock()
        server.script("GET", "/a", json(429, **{"Retry-After": "5"}))
        server.script("GET", "/b", json(200))
        async with client(server, clock, retry=None) as c:
            with pytest.raises(tether.RateLimitError):
                await c.get("/a")
            clock.advance(2.0)
            await c.get("/b")
            assert clock.sleeps == [pytest.approx(3.0)]
            await c.get("/b")
        assert clock.sleeps == [pytest.approx(3.0)]

    async def test_long_pause_fails_fast_without_the_network(self, server: LoopbackServer) -> None:
        """A request arriving during a pause longer than it may wait raises without sending."""
        clock = FakeClock()
        server.script("GET", "/a", json(429, **{"Retry-After": "600"}))
        server.script("GET", "/b", json(200))
        async with client(server, clock) as c:
            with pytest.raises(tether.RateLimitError):
                await c.get("/a")
            with pytest.raises(tether.RateLimitError) as info:
                await c.get("/b")
        assert server.count("/b") == 0
        assert info.value.retry_after == pytest.approx(600.0)
        assert str(info.value).startswith("host paused by the server's advice")

    async def test_pause_is_per_host(self, server: LoopbackServer) -> None:
        """A pause for one host does not hold requests to another."""
        clock = FakeClock()
        server.script("GET", "/a", json(429, **{"Retry-After": "30"}))
        server.script("GET", "/b", json(200))
        other = server.url.replace("127.0.0.1", "localhost")
        async with client(server, clock, retry=None) as c:
            with pytest.raises(tether.RateLimitError):
                await c.get("/a")
            await c.get(other + "/b")
        assert clock.sleeps == []


class TestBudget:
    async def test_exhausted_budget_raises_instead_of_storming(
        self, server: LoopbackServer
    ) -> None:
        """Once the host's retry budget is spent, failures raise RetryBudgetExhausted."""
        clock = FakeClock()
        server.script("GET", "/x", json(503))
        budget = tether.RetryBudget(percent=0.0, min_per_second=0.1, window=10.0)
        retry = tether.Retry(attempts=3, jitter=False, budget=budget)
        async with client(server, clock, retry=retry) as c:
            with pytest.raises(tether.RetryBudgetExhausted) as info:
                await c.get("/x")
        # One retry was in the budget; the second retry was refused.
        assert server.count("/x") == 2
        assert isinstance(info.value.__cause__, tether.ServerError)


class TestBodies:
    async def test_streamed_body_is_never_resent(self, server: LoopbackServer) -> None:
        """A body from an async iterator cannot be replayed: the original error is raised."""
        clock = FakeClock()
        server.script("PUT", "/upload", json(503), json(200))

        async def chunks() -> AsyncIterator[bytes]:
            yield b"part one,"
            yield b"part two"

        async with client(server, clock) as c:
            with pytest.raises(tether.ServerError):
                await c.put("/upload", content=chunks())
        assert server.count("/upload") == 1
        assert server.seen[0].body == b"part one,part two"

    async def test_bytes_body_is_resent_whole(self, server: LoopbackServer) -> None:
        """A bytes body is sent again, complete, on every attempt."""
        clock = FakeClock()
        server.script("PUT", "/x", json(503), json(200))
        async with client(server, clock) as c:
            await c.put("/x", json={"a": 1})
        assert [s.body for s in server.seen] == [b'{"a":1}', b'{"a":1}']
