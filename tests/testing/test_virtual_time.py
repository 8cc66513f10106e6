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
