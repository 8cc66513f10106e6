"""The circuit breaker in the pipeline: what counts, when it opens, how it probes and recovers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiohttp import web

import tether
from tests.conftest import LoopbackServer
from tether.testing import FakeClock, MockTransport, no_wait


def breaker(**options: object) -> tether.Breaker:
    settings: dict[str, object] = {"minimum_calls": 4, "window": 10, "open_for": 5.0}
    settings.update(options)
    return tether.Breaker(**settings)  # type: ignore[arg-type]


def make(
    handler: Callable[[tether.Request], tether.Response], **options: object
) -> tuple[tether.Client, FakeClock, MockTransport]:
    clock = FakeClock()
    transport = MockTransport(handler)
    options.setdefault("retry", None)
    options.setdefault("breaker", breaker())
    client = tether.Client("https://api.example.com", transport=transport, clock=clock, **options)  # type: ignore[arg-type]
    return client, clock, transport


async def fail_n(client: tether.Client, n: int, exc: type[BaseException]) -> None:
    for _ in range(n):
        with pytest.raises(exc):
            await client.get("/x")


async def test_opens_on_failure_rate_and_fails_fast() -> None:
    """After enough 5xx the circuit opens and calls fail without touching the network."""
    client, _, transport = make(lambda r: tether.Response(503))
    async with client:
        await fail_n(client, 4, tether.ServerError)
        with pytest.raises(tether.CircuitOpenError) as info:
            await client.get("/x")
    assert len(transport.requests) == 4
    assert "circuit for https://api.example.com is open" in str(info.value)
    assert client.circuits() == {"https://api.example.com": "open"}
    metrics = client.circuit_metrics()["https://api.example.com"]
    assert (metrics.state, metrics.consecutive_openings) == ("open", 1)


async def test_minimum_calls_before_judging() -> None:
    """Fewer calls than minimum_calls never open the circuit, however bad."""
    client, _, _ = make(lambda r: tether.Response(500))
    async with client:
        await fail_n(client, 3, tether.ServerError)
    assert client.circuits() == {"https://api.example.com": "closed"}


@pytest.mark.parametrize("status", [429, 404, 400, 401])
async def test_throttles_and_client_errors_are_not_failures(status: int) -> None:
    """429 and other 4xx mean the server is up and answering: the circuit stays closed."""
    client, _, _ = make(lambda r: tether.Response(status))
    async with client:
        await fail_n(client, 10, tether.HTTPStatusError)
    assert client.circuits() == {"https://api.example.com": "closed"}


async def test_connection_errors_count(closed_port: int) -> None:
    """Refused connections are failures and open the circuit."""
    with no_wait():
        async with tether.Client(
            f"http://127.0.0.1:{closed_port}", breaker=breaker(), retry=None
        ) as client:
            await fail_n(client, 4, tether.ConnectError)
            with pytest.raises(tether.CircuitOpenError):
                await client.get("/x")


async def test_half_open_probes_then_close() -> None:
    """After open_for the circuit lets probes through; when they succeed it closes."""
    healthy = False
    events: list[tuple[str, str]] = []
    client, clock, transport = make(
        lambda r: tether.Response(200 if healthy else 503),
        breaker=breaker(
            half_open_probes=2,
            on_state_change=lambda e: events.append((e.from_state, e.to_state)),
        ),
    )
    async with client:
        await fail_n(client, 4, tether.ServerError)
        clock.advance(5.0)
        healthy = True
        await client.get("/x")
        await client.get("/x")
        await client.get("/x")
    assert events == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert len(transport.requests) == 7


async def test_failed_probe_reopens_for_longer() -> None:
    """A failing probe reopens the circuit, and the second opening lasts longer than the first."""
    retry_ats: list[float] = []

    def on_change(event: tether.BreakerEvent) -> None:
        if event.to_state == "open" and event.retry_at is not None:
            retry_ats.append(event.retry_at)

    client, clock, _ = make(
        lambda r: tether.Response(503), breaker=breaker(on_state_change=on_change)
    )
    async with client:
        await fail_n(client, 4, tether.ServerError)
        first_open = clock.monotonic()
        clock.advance(5.0)
        await fail_n(client, 1, tether.ServerError)
        second_open = clock.monotonic()
    first, second = retry_ats
    assert 2.5 <= first - first_open <= 5.0
    assert 5.0 <= second - second_open <= 10.0


async def test_slow_calls_open_the_circuit() -> None:
    """Calls slower than slow_call_duration count toward the slow-call rate."""
    clock_holder: list[FakeClock] = []

    def slow(request: tether.Request) -> tether.Response:
        clock_holder[0].advance(3.0)
        return tether.Response(200)

    client, clock, _ = make(slow, breaker=breaker(slow_call_duration=2.0, slow_call_rate=0.5))
    clock_holder.append(clock)
    async with client:
        for _ in range(4):
            await client.get("/x")
        with pytest.raises(tether.CircuitOpenError):
            await client.get("/x")


async def test_opening_circuit_ends_the_retries(server: LoopbackServer) -> None:
    """Inside the retry loop, an opening circuit stops further attempts at once."""
    server.script("GET", "/x", lambda: web.json_response({}, status=503))
    retry = tether.Retry(attempts=10, jitter=False, base_delay=0.1, budget=None)
    with no_wait():
        async with tether.Client(server.url, retry=retry, breaker=breaker()) as client:
            with pytest.raises(tether.CircuitOpenError):
                await client.get("/x")
    assert server.count("/x") == 4


async def test_per_host_circuits() -> None:
    """One host's open circuit does not stop calls to another host."""
    client, _, _ = make(lambda r: tether.Response(503 if "bad" in r.url else 200))
    async with client:
        for _ in range(4):
            with pytest.raises(tether.ServerError):
                await client.get("https://bad.example.com/x")
        await client.get("https://good.example.com/x")
    assert client.circuits() == {
        "https://bad.example.com": "open",
        "https://good.example.com": "closed",
    }


async def test_open_circuit_returns_the_rate_limit_slot() -> None:
    """A call refused by an open circuit gives its rate-limit slot back."""
    client, clock, _ = make(lambda r: tether.Response(503), rate_limit="1/s")
    async with client:
        await fail_n(client, 4, tether.ServerError)
        sleeps_before = len(clock.sleeps)
        clock.advance(1.0)
        with pytest.raises(tether.CircuitOpenError):
            await client.get("/x")
        with pytest.raises(tether.CircuitOpenError):
            await client.get("/x")
    assert len(clock.sleeps) == sleeps_before


def test_bad_settings() -> None:
    """Out-of-range thresholds are ConfigErrors."""
    with pytest.raises(tether.ConfigError):
        tether.Breaker(failure_rate=0)
    with pytest.raises(tether.ConfigError):
        tether.Breaker(scope="everyone")  # type: ignore[arg-type]
