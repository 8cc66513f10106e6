"""Virtual time: the mock and the client share one FakeClock, so long waits cost no wall time."""

from __future__ import annotations

import time

import pytest

import tether
from tests.testing.conftest import connect
from tether.testing import (
    CursorPages,
    FakeClock,
    MockAPI,
    PageQuirks,
    RateLimited,
    Reply,
    Schedule,
    ServerError,
)


async def test_ten_minute_backoff_runs_in_milliseconds(mode: str) -> None:
    """A 600-second Retry-After is obeyed exactly, on virtual time, in a fraction of a second."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.stub("GET", "/report", RateLimited(retry_after=600), Reply(json={"ready": True}))
    retry = tether.Retry(attempts=2, max_retry_after=900, budget=None)
    started = time.monotonic()
    async with connect(api, mode, retry=retry, timeout=tether.Timeout(total=3600)) as client:
        response = await client.get("/report")
    assert response.json() == {"ready": True}
    assert clock.sleeps == [600.0]
    assert clock.monotonic() >= 600.0
    assert time.monotonic() - started < 5.0


async def test_advice_longer_than_the_cap_raises_at_once() -> None:
    """Advice above max_retry_after is not waited out: the error carries the advised wait."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.stub("GET", "/x", RateLimited(retry_after=3600))
    async with api.client(retry=tether.Retry(max_retry_after=60)) as client:
        with pytest.raises(tether.RateLimitError) as info:
            await client.get("/x")
    assert info.value.retry_after == 3600
    assert clock.sleeps == []


async def test_a_long_backoff_outlives_a_cursor(mode: str) -> None:
    """Waiting out a 120 s Retry-After mid-walk expires a 60 s cursor: the clock is shared."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.collection(
        "/items",
        items=[{"id": i} for i in range(4)],
        pagination=CursorPages(page_size=2),
        quirks=PageQuirks(cursor_ttl=60),
    )
    api.inject(RateLimited(retry_after=120), path="/items", schedule=Schedule(after=1, times=1))
    retry = tether.Retry(max_retry_after=300, budget=None)
    timeout = tether.Timeout(total=600)
    async with connect(api, mode, retry=retry, timeout=timeout, raise_for_status=False) as client:
        cursor = (await client.get("/items")).json()["next_cursor"]
        expired = await client.get("/items", params={"cursor": cursor})
    assert clock.sleeps == [120.0]
    assert expired.status == 400
    assert expired.json()["error"] == "cursor_expired"


async def test_rate_limit_spacing_is_virtual(mode: str) -> None:
    """The client's "60/min" limit spaces calls one second apart on the shared fake clock."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.stub("GET", "/x", Reply(json=1))
    started = time.monotonic()
    async with connect(api, mode, rate_limit="60/min", retry=None) as client:
        for _ in range(4):
            await client.get("/x")
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert time.monotonic() - started < 5.0


async def test_breaker_opens_on_a_burst_and_probes_after_virtual_time(mode: str) -> None:
    """A 5xx burst opens the breaker, which then spares the API; once the open window has
    passed on the fake clock, a probe goes through and closes it."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    stub = api.stub("GET", "/x", Reply(json="up"))
    api.inject(ServerError(503), path="/x", schedule=Schedule(times=5))
    breaker = tether.Breaker(minimum_calls=5, window=30, open_for=60, half_open_probes=1)
    async with connect(api, mode, breaker=breaker, retry=None, raise_for_status=False) as client:
        statuses = [(await client.get("/x")).status for _ in range(5)]
        with pytest.raises(tether.CircuitOpenError) as info:
            await client.get("/x")
        assert len(api.requests) == 5
        clock.advance(info.value.retry_at - clock.monotonic() + 0.001)
        probe = await client.get("/x")
    assert statuses == [503] * 5
    assert probe.json() == "up"
    assert stub.call_count == 1
