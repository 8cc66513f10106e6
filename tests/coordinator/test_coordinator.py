"""The polling coordinator on a stepped clock: schedules, staleness, backoff, debounce, auth."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

import tether
from tests.coordinator.conftest import SteppedClock
from tether._coordinator import Coordinator, Endpoint, Snapshot
from tether.testing import MockTransport


class Source:
    """A fetch function that records when it was called and answers from a script."""

    def __init__(self, clock: SteppedClock, *answers: Any) -> None:
        self.clock = clock
        self.answers = list(answers) or [{"v": 1}]
        self.calls: list[float] = []

    async def __call__(self) -> Any:
        self.calls.append(self.clock.monotonic())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def coordinator(clock: SteppedClock, **options: Any) -> Coordinator:
    return Coordinator(clock=clock, rand=random.Random(7), **options)


def api(clock: SteppedClock, *responses: tether.Response) -> tether.Client:
    """A real client on an in-memory transport: errors come out of the real pipeline."""
    script = list(responses)

    def handler(request: tether.Request) -> tether.Response:
        return script.pop(0) if len(script) > 1 else script[0]

    return tether.Client(
        "https://api.example.com", transport=MockTransport(handler), retry=None, clock=clock
    )


async def test_each_endpoint_keeps_its_own_interval() -> None:
    """Endpoints poll at once on start, then every own interval."""
    clock = SteppedClock()
    fast, slow = Source(clock), Source(clock)
    coord = coordinator(clock)
    coord.endpoint("fast", fast, interval=10, jitter=0)
    coord.endpoint("slow", slow, interval=25, jitter=0)
    async with coord:
        await clock.advance(60)
    assert fast.calls == [0, 10, 20, 30, 40, 50, 60]
    assert slow.calls == [0, 25, 50]


async def test_jitter_stretches_each_wait_within_bounds() -> None:
    """With jitter 0.2 every wait lies in [interval, 1.2 x interval] and they differ."""
    clock = SteppedClock()
    source = Source(clock)
    coord = coordinator(clock)
    coord.endpoint("x", source, interval=100, jitter=0.2)
    async with coord:
        await clock.advance(1000)
    gaps = [b - a for a, b in zip(source.calls, source.calls[1:], strict=False)]
    assert all(100 <= gap <= 120 for gap in gaps)
    assert len(set(gaps)) == len(gaps)


async def test_last_good_data_survives_failures_until_the_threshold() -> None:
    """Failures keep the last good data available until N in a row; the snapshot says why."""
    clock = SteppedClock()
    boom = tether.NetworkError("connection reset")
    source = Source(clock, {"temp": 21}, boom, boom, boom)
    coord = coordinator(clock)
    endpoint = coord.endpoint(
        "weather", source, interval=10, jitter=0, failure_interval=10, unavailable_after_failures=3
    )
    async with coord:
        await clock.advance(0)
        assert endpoint.snapshot().available
        await clock.advance(20)  # two failures
        snapshot = endpoint.snapshot()
        assert snapshot.data == {"temp": 21}
        assert snapshot.available
        assert snapshot.consecutive_failures == 2
        assert snapshot.last_error is boom
        assert snapshot.last_success == clock.time() - 20
        assert snapshot.age == 20
        await clock.advance(20)  # third failure (after a doubled wait)
        assert not endpoint.available
        assert endpoint.data == {"temp": 21}


async def test_staleness_alone_makes_data_unavailable() -> None:
    """Data older than unavailable_after is unavailable even below the failure threshold."""
    clock = SteppedClock()
    source = Source(clock, {"v": 1}, tether.NetworkError("down"))
    coord = coordinator(clock)
    endpoint = coord.endpoint(
        "x",
        source,
        interval=60,
        jitter=0,
        unavailable_after_failures=100,
        unavailable_after=300,
    )
    async with coord:
        await clock.advance(299)
        assert endpoint.available
        await clock.advance(2)
        assert not endpoint.available
        assert endpoint.consecutive_failures < 100


async def test_listeners_hear_of_staleness_between_polls() -> None:
    """Data that ages past unavailable_after is reported unavailable at that moment, even when
    the next poll is a long backoff away."""
    clock = SteppedClock()
    source = Source(clock, {"v": 1}, tether.NetworkError("down"))
    heard: list[tuple[float, bool]] = []
    coord = coordinator(clock)
    endpoint = coord.endpoint(
        "x",
        source,
        interval=50,
        jitter=0,
        failure_interval=1000,
        unavailable_after_failures=100,
        unavailable_after=120,
    )
    endpoint.add_listener(lambda s: heard.append((clock.monotonic(), s.available)))
    async with coord:
        await clock.advance(500)
    assert source.calls == [0, 50]
    assert heard[0] == (0, True)
    assert heard[1][1] is False
    assert 120 < heard[1][0] < 121
    assert len(heard) == 2


async def test_failures_back_off_exponentially_then_recover() -> None:
    """Consecutive failures double the wait up to the cap; a success returns to the interval."""
    clock = SteppedClock()
    source = Source(clock, *([RuntimeError("boom")] * 6), {"ok": True})
    coord = coordinator(clock)
    coord.endpoint("x", source, interval=100, jitter=0, failure_interval=5, max_failure_interval=60)
    async with coord:
        await clock.advance(400)
    gaps = [b - a for a, b in zip(source.calls, source.calls[1:], strict=False)]
    assert gaps[:7] == [5, 10, 20, 40, 60, 60, 100]


async def test_rate_limit_retry_after_is_honoured() -> None:
    """A 429 with Retry-After from the client delays the next poll to what the server asked."""
    clock = SteppedClock()
    client = api(
        clock,
        tether.Response(429, headers={"Retry-After": "120"}),
        tether.Response(200, json={"ok": True}),
    )
    calls: list[float] = []

    async def fetch() -> Any:
        calls.append(clock.monotonic())
        return await client.get_json("/grid")

    coord = coordinator(clock)
    endpoint = coord.endpoint("grid", fetch, interval=10, jitter=0, failure_interval=1)
    async with coord:
        await clock.advance(0)
        assert isinstance(endpoint.last_error, tether.RateLimitError)
        await clock.advance(130)
    assert calls[:2] == [0, 120]
    assert endpoint.data == {"ok": True}
    await client.aclose()


async def test_request_refresh_is_debounced_and_coalesced() -> None:
    """Requests within the cooldown become one poll at its end; a later one runs at once."""
    clock = SteppedClock()
    source = Source(clock)
    coord = coordinator(clock, cooldown=10)
    endpoint = coord.endpoint("x", source, interval=600, jitter=0)
    async with coord:
        await clock.advance(1)
        for _ in range(5):
            endpoint.request_refresh()
        await clock.advance(20)
        assert source.calls == [0, 10]
        await clock.advance(20)  # t = 41
        endpoint.request_refresh()
        await clock.settle()
        assert source.calls == [0, 10, 41]
        await clock.advance(600)
    assert source.calls == [0, 10, 41, 641]  # the regular schedule restarts from the refresh


async def test_request_during_a_poll_runs_one_more_after_it() -> None:
    """Requests made while a poll is in flight schedule exactly one more poll."""
    clock = SteppedClock()
    release = asyncio.Event()
    calls: list[float] = []

    async def fetch() -> int:
        calls.append(clock.monotonic())
        if len(calls) == 2:
            await release.wait()
        return len(calls)

    coord = coordinator(clock, cooldown=5)
    endpoint = coord.endpoint("x", fetch, interval=600, jitter=0)
    async with coord:
        await clock.advance(30)
        endpoint.request_refresh()
        await clock.settle()
        assert calls == [0, 30]
        endpoint.request_refresh()
        endpoint.request_refresh()
        release.set()
        await clock.advance(10)
    assert calls == [0, 30, 35]
    assert endpoint.data == 3


async def test_refresh_joins_a_poll_in_flight() -> None:
    """Concurrent refresh() calls share one fetch."""
    clock = SteppedClock()
    release = asyncio.Event()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    coord = coordinator(clock)
    endpoint = coord.endpoint("x", fetch, interval=60)
    first = asyncio.create_task(endpoint.refresh())
    second = asyncio.create_task(endpoint.refresh())
    await clock.settle()
    release.set()
    snapshots = await asyncio.gather(first, second)
    assert calls == 1
    assert [s.data for s in snapshots] == [1, 1]


async def test_listeners_hear_only_about_changes() -> None:
    """Equal data twice notifies once; new data or a change of availability notifies again."""
    clock = SteppedClock()
    boom = tether.NetworkError("down")
    source = Source(clock, {"v": 1}, {"v": 1}, {"v": 2}, boom, boom, {"v": 2})
    heard: list[tuple[Any, bool]] = []
    coord = coordinator(clock)
    endpoint = coord.endpoint(
        "x", source, interval=10, jitter=0, failure_interval=10, unavailable_after_failures=2
    )
    endpoint.add_listener(lambda s: heard.append((s.data, s.available)))
    async with coord:
        await clock.advance(60)
    assert heard == [({"v": 1}, True), ({"v": 2}, True), ({"v": 2}, False), ({"v": 2}, True)]


async def test_always_update_and_removing_listeners() -> None:
    """always_update notifies after every poll; a removed listener hears nothing more."""
    clock = SteppedClock()
    source = Source(clock)
    heard: list[Snapshot[Any]] = []
    removed: list[Snapshot[Any]] = []
    coord = coordinator(clock)
    endpoint = coord.endpoint("x", source, interval=10, jitter=0, always_update=True)
    endpoint.add_listener(heard.append)
    remove = endpoint.add_listener(removed.append)
    async with coord:
        await clock.advance(0)
        remove()
        await clock.advance(20)
    assert len(heard) == 3
    assert len(removed) == 1


async def test_auth_failure_stops_polling_and_calls_the_hook() -> None:
    """A 401 stops the endpoint's polling and calls on_auth_failure; resume() restarts it."""
    clock = SteppedClock()
    client = api(clock, tether.Response(401, text="token revoked"), tether.Response(200, json=[1]))
    failures: list[tuple[str, BaseException]] = []
    calls: list[float] = []

    async def fetch() -> Any:
        calls.append(clock.monotonic())
        return await client.get_json("/devices")

    coord = coordinator(clock, on_auth_failure=lambda name, error: failures.append((name, error)))
    endpoint: Endpoint[Any] = coord.endpoint("devices", fetch, interval=10, jitter=0)
    other = Source(clock)
    coord.endpoint("other", other, interval=10, jitter=0)
    async with coord:
        await clock.advance(100)
        assert calls == [0]
        assert not endpoint.polling
        assert not endpoint.snapshot().polling
        assert [(name, type(error)) for name, error in failures] == [
            ("devices", tether.AuthenticationError)
        ]
        assert len(other.calls) == 11  # other endpoints keep going
        endpoint.resume()
        await clock.advance(0)
        assert calls == [0, 100]
        assert endpoint.data == [1]
    await client.aclose()


async def test_stop_cancels_every_task_and_keeps_data() -> None:
    """stop() leaves no coordinator task behind; the last data stays readable."""
    clock = SteppedClock()
    coord = coordinator(clock)
    endpoint = coord.endpoint("x", Source(clock, {"v": 9}), interval=10)
    async with coord:
        await clock.advance(0)
    assert not any(t.get_name().startswith("tether-coordinator") for t in asyncio.all_tasks())
    assert endpoint.data == {"v": 9}
    assert not endpoint.polling


async def test_fetch_errors_are_logged_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    """The first failure of an outage is a warning, the recovery an info line; repeats are
    debug only."""
    clock = SteppedClock()
    boom = tether.NetworkError("down")
    coord = coordinator(clock)
    coord.endpoint("x", Source(clock, boom, boom, boom, {"v": 1}), interval=10, jitter=0)
    caplog.set_level("INFO", logger="tether.coordinator")
    async with coord:
        await clock.advance(200)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["x failed: NetworkError: down", "x recovered"]


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0},
        {"interval": 10, "jitter": 2},
        {"interval": 10, "unavailable_after_failures": 0},
        {"interval": 10, "unavailable_after": -1},
        {"interval": True},
    ],
)
def test_bad_endpoint_options_are_config_errors(options: dict[str, Any]) -> None:
    """Nonsense schedules are refused when the endpoint is added."""
    coord = Coordinator()
    fetch: Callable[[], Any] = lambda: None  # noqa: E731
    with pytest.raises(tether.ConfigError):
        coord.endpoint("x", fetch, **options)


def test_duplicate_endpoint_names_are_refused() -> None:
    """Two endpoints cannot share a name: snapshots and hooks are keyed by it."""
    coord = Coordinator()

    async def fetch() -> int:
        return 1

    coord.endpoint("x", fetch, interval=1)
    with pytest.raises(tether.ConfigError):
        coord.endpoint("x", fetch, interval=1)
