"""Faults: each kind ends a call the same way in-process and over real loopback sockets,
and schedules are seeded, so a seed replays the same failures.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import pytest

import tether
from tests.testing.conftest import connect, no_retry_jitter
from tether.testing import (
    Drip,
    EmptyResponse,
    FakeClock,
    Hang,
    Latency,
    MockAPI,
    RateLimited,
    Reply,
    Reset,
    Schedule,
    ServerError,
    Truncate,
)

#: A real short attempt limit for loopback; in-process it is virtual and costs nothing.
SHORT = tether.Timeout(total=30.0, connect=5.0, attempt=0.3)


@pytest.mark.parametrize(
    "fault",
    [Reset(), EmptyResponse(), Reset(after_headers=True), Truncate(keep=3)],
    ids=["reset-before-headers", "empty-response", "reset-after-headers", "truncated-body"],
)
async def test_broken_connections_are_network_errors(mode: str, fault: object) -> None:
    """Every connection fault surfaces as NetworkError (sent, outcome unknown) in both modes."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/x", Reply(json={"payload": "0123456789"}, fault=fault))  # type: ignore[arg-type]
    async with connect(api, mode, retry=None) as client:
        with pytest.raises(tether.NetworkError) as info:
            await client.get("/x")
    assert info.value.sent


@pytest.mark.parametrize(("method", "attempts"), [("GET", 3), ("POST", 1)])
async def test_reset_is_retried_only_when_safe(mode: str, method: str, attempts: int) -> None:
    """After a reset the client repeats a GET but not a keyless POST, in both modes."""
    api = MockAPI(clock=FakeClock())
    stub = api.stub(method, "/x", Reset())
    async with connect(api, mode, retry=no_retry_jitter()) as client:
        with pytest.raises(tether.NetworkError):
            await client.request(method, "/x")
    assert stub.call_count == attempts


async def test_processed_reset_leaves_the_side_effect(mode: str) -> None:
    """Reset(processed=True) lets the API create the item before the connection dies."""
    api = MockAPI(clock=FakeClock())
    orders = api.collection("/orders")
    api.inject(Reset(processed=True), method="POST", path="/orders", schedule=Schedule(times=1))
    async with connect(api, mode, retry=no_retry_jitter()) as client:
        with pytest.raises(tether.NetworkError):
            await client.post("/orders", json={"sku": "a"})
    assert [o["sku"] for o in orders.items] == ["a"]


async def test_truncation_that_keeps_everything_is_no_fault(mode: str) -> None:
    """Truncate(keep=n) with n at least the body length delivers the whole body."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/x", Reply(body=b"abc", fault=Truncate(keep=10)))
    async with connect(api, mode) as client:
        assert (await client.get("/x")).content == b"abc"


async def test_hang_ends_in_the_clients_read_timeout(mode: str) -> None:
    """A hang is only escaped by the attempt timeout: ReadTimeout, and the GET is retried."""
    api = MockAPI(clock=FakeClock())
    stub = api.stub("GET", "/x", Hang(), Reply(json={"ok": True}))
    async with connect(api, mode, timeout=SHORT, retry=no_retry_jitter()) as client:
        response = await client.get("/x")
    assert response.json() == {"ok": True}
    assert stub.call_count == 2


async def test_in_process_hang_costs_virtual_time_only() -> None:
    """In-process, a 30-second hang moves the fake clock 30 s and no wall time."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.stub("GET", "/x", Hang())
    started = time.monotonic()
    async with api.client(timeout=tether.Timeout(total=100, attempt=30), retry=None) as client:
        with pytest.raises(tether.ReadTimeout):
            await client.get("/x")
    assert clock.monotonic() == 30.0
    assert time.monotonic() - started < 1.0
    # The mock's own waits are not the client's: FakeClock.sleeps lists only the client's.
    assert clock.sleeps == []


async def test_hang_without_a_timeout_is_still_bounded() -> None:
    """With no client timeout, a hang gives up after the mock's hang_limit."""
    clock = FakeClock()
    api = MockAPI(clock=clock, hang_limit=120)
    api.stub("GET", "/x", Hang())
    async with api.client(timeout=None, retry=None) as client:
        with pytest.raises(tether.ReadTimeout, match="hang_limit"):
            await client.get("/x")
    assert clock.monotonic() == 120.0


async def test_latency_within_the_limit_only_delays(mode: str) -> None:
    """Latency below the attempt timeout delays the answer without failing it."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.stub("GET", "/x", Reply(json=1, fault=Latency(0.05)))
    async with connect(api, mode, timeout=SHORT) as client:
        started = time.monotonic()
        assert (await client.get("/x")).json() == 1
    if mode == "in_process":
        assert clock.monotonic() == pytest.approx(0.05)
    else:
        assert time.monotonic() - started >= 0.05


async def test_latency_beyond_the_limit_is_a_read_timeout(mode: str) -> None:
    """Latency above the attempt timeout fails the attempt with ReadTimeout."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/x", Reply(json=1, fault=Latency(2.0)))
    async with connect(api, mode, timeout=SHORT, retry=None) as client:
        with pytest.raises(tether.ReadTimeout):
            await client.get("/x")


async def test_drip_delivers_the_whole_body_slowly(mode: str) -> None:
    """A dripped body arrives complete, after the drip's duration."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.stub("GET", "/x", Reply(body=b"0123456789", fault=Drip(chunks=5, duration=0.1)))
    async with connect(api, mode, timeout=SHORT) as client:
        started = time.monotonic()
        assert (await client.get("/x")).content == b"0123456789"
    if mode == "in_process":
        assert clock.monotonic() == pytest.approx(0.1)
    else:
        assert time.monotonic() - started >= 0.1


async def test_drip_slower_than_the_limit_times_out(mode: str) -> None:
    """A drip that outlasts the attempt timeout ends in ReadTimeout."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/x", Reply(body=b"0123456789", fault=Drip(chunks=5, duration=2.0)))
    async with connect(api, mode, timeout=SHORT, retry=None) as client:
        with pytest.raises(tether.ReadTimeout):
            await client.get("/x")


@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
async def test_rate_limit_advice_is_obeyed(mode: str, as_date: bool) -> None:
    """429 with Retry-After, in seconds or as a date, makes the client wait exactly that."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.stub("GET", "/x", RateLimited(retry_after=7, as_date=as_date), Reply(json={"ok": True}))
    async with connect(api, mode, retry=no_retry_jitter()) as client:
        response = await client.get("/x")
    assert response.json() == {"ok": True}
    assert clock.sleeps == [7.0]


def test_rate_limit_date_is_an_http_date() -> None:
    """as_date=True renders an RFC 9110 IMF-fixdate on the mock's wall clock."""
    clock = FakeClock()
    status, headers, _ = Reply(fault=RateLimited(retry_after=30, as_date=True)).render(
        now_wall=clock.time()
    )
    value = dict(headers)["Retry-After"]
    assert status == 429
    assert value.endswith(" GMT")
    assert parsedate_to_datetime(value).timestamp() == clock.time() + 30


async def test_injected_burst_follows_its_schedule(mode: str) -> None:
    """Schedule(after=2, times=3) lets two requests through, fails three, then recovers."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/x", Reply(json="ok"))
    rule = api.inject(ServerError(502), path="/x", schedule=Schedule(after=2, times=3))
    async with connect(api, mode, retry=None, raise_for_status=False) as client:
        statuses = [(await client.get("/x")).status for _ in range(7)]
    assert statuses == [200, 200, 502, 502, 502, 200, 200]
    assert rule.fired == 3
    assert [event.request for event in api.fault_log] == [3, 4, 5]


async def test_every_and_length_make_periodic_bursts() -> None:
    """Schedule(every=4, length=2) fails the first two of every four matching requests."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/x")
    api.inject(ServerError(503), path="/x", schedule=Schedule(every=4, length=2))
    async with api.client(retry=None, raise_for_status=False) as client:
        statuses = [(await client.get("/x")).status for _ in range(8)]
    assert statuses == [503, 503, 200, 200, 503, 503, 200, 200]


async def test_replacing_faults_keep_requests_from_the_api() -> None:
    """A fault that answers instead of the API leaves the stub uncalled."""
    api = MockAPI(clock=FakeClock())
    stub = api.stub("GET", "/x")
    api.inject(RateLimited(retry_after=1), path="/x", schedule=Schedule(times=1))
    async with api.client(retry=None, raise_for_status=False) as client:
        assert (await client.get("/x")).status == 429
        assert (await client.get("/x")).status == 200
    assert stub.call_count == 1


async def _statuses(seed: int, count: int = 60) -> tuple[list[int], list[int]]:
    api = MockAPI(clock=FakeClock(), seed=seed)
    api.stub("GET", "/x")
    api.inject(ServerError(503), path="/x", schedule=Schedule(probability=0.3), name="flaky")
    api.inject(Latency(0.1, jitter=0.5), path="/x", name="slow")
    async with api.client(retry=None, raise_for_status=False) as client:
        statuses = [(await client.get("/x")).status for _ in range(count)]
    return statuses, [event.request for event in api.fault_log if event.rule == "flaky"]


async def test_same_seed_replays_the_same_failures() -> None:
    """Two runs with one seed fail on the same requests; another seed fails elsewhere."""
    first, first_log = await _statuses(seed=1234)
    second, second_log = await _statuses(seed=1234)
    other, _ = await _statuses(seed=99)
    assert first == second
    assert first_log == second_log
    assert 5 < first.count(503) < 35
    assert other != first


async def test_a_new_rule_does_not_reshuffle_existing_ones() -> None:
    """Each rule draws from its own seeded generator, so adding a rule keeps the others' plan."""
    baseline, baseline_log = await _statuses(seed=7)
    api = MockAPI(clock=FakeClock(), seed=7)
    api.inject(Latency(0.2, jitter=1.0), path="/x", name="added first")
    api.stub("GET", "/x")
    api.inject(ServerError(503), path="/x", schedule=Schedule(probability=0.3), name="flaky")
    async with api.client(retry=None, raise_for_status=False) as client:
        statuses = [(await client.get("/x")).status for _ in range(60)]
    assert statuses == baseline
    assert [e.request for e in api.fault_log if e.rule == "flaky"] == baseline_log


async def test_reset_replays_the_schedule_from_the_start() -> None:
    """After reset() the same requests meet the same seeded faults again."""
    api = MockAPI(clock=FakeClock(), seed=5)
    api.stub("GET", "/x")
    api.inject(ServerError(500), path="/x", schedule=Schedule(probability=0.5))
    async with api.client(retry=None, raise_for_status=False) as client:
        first = [(await client.get("/x")).status for _ in range(20)]
        api.reset()
        second = [(await client.get("/x")).status for _ in range(20)]
    assert first == second
    assert set(first) == {200, 500}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Latency(-1), "Latency.seconds"),
        (lambda: Latency(float("nan")), "Latency.seconds"),
        (lambda: RateLimited(status=200), "error status"),
        (lambda: ServerError(404), "5xx"),
        (lambda: Truncate(keep=-1), "Truncate.keep"),
        (lambda: Drip(chunks=0), "Drip.chunks"),
        (lambda: Schedule(every=0), "Schedule.every"),
        (lambda: Schedule(every=2, length=3), "cannot exceed"),
        (lambda: Schedule(probability=1.5), "probability"),
        (lambda: Schedule(times=True), "Schedule.times"),
    ],
)
def test_fault_values_are_validated(build: object, message: str) -> None:
    """Nonsense fault settings are refused with a ConfigError naming the field."""
    with pytest.raises(tether.ConfigError, match=message):
        build()  # type: ignore[operator]
