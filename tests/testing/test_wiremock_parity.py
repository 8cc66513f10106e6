"""Parity with WireMock: one MockAPI definition, exported to a real WireMock peer, gives the
client the same outcomes as the MockAPI loopback server for every fault kind both share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

import tether
from tests.testing.wiremock_peer import WireMock, start_wiremock
from tether.testing import (
    ANY,
    STARTED,
    Drip,
    EmptyResponse,
    FakeClock,
    Latency,
    MalformedChunk,
    MockAPI,
    RateLimited,
    Reply,
    Reset,
    ServerError,
    to_wiremock,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def wiremock() -> AsyncIterator[WireMock]:
    async for peer in start_wiremock():
        yield peer


Observation = tuple[Any, ...]


async def observe(client: tether.Client, method: str, path: str, **kwargs: Any) -> Observation:
    """What the caller sees: status and body, or the exception class, plus attempts."""
    try:
        response = await client.request(method, path, **kwargs)
    except tether.HTTPStatusError as exc:
        return (type(exc).__name__, exc.status, exc.response.attempts)
    except tether.TetherError as exc:
        return (type(exc).__name__,)
    body = response.json() if "json" in response.headers.get("Content-Type", "") else response.text
    return (response.status, body, response.attempts)


RETRY = tether.Retry(attempts=3, jitter=False, base_delay=1.0, budget=None)
SHORT = tether.Timeout(total=30.0, connect=5.0, attempt=0.3)


@dataclass(frozen=True)
class Case:
    """A client scenario: stubs to define, calls to make, and what the caller must see."""

    name: str
    define: Callable[[MockAPI], object]
    exercise: Callable[[tether.Client], Awaitable[list[Observation]]]
    expected: list[Observation]
    sleeps: list[float] = field(default_factory=list)
    calls: tuple[str, str, int] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Other outcomes accepted when the client's reaction is a race, not a decision.
    racy: tuple[list[Observation], ...] = ()


def one(
    method: str, path: str, **kwargs: Any
) -> Callable[[tether.Client], Awaitable[list[Observation]]]:
    async def run(client: tether.Client) -> list[Observation]:
        return [await observe(client, method, path, **kwargs)]

    return run


def repeat(
    times: int, method: str, path: str
) -> Callable[[tether.Client], Awaitable[list[Observation]]]:
    async def run(client: tether.Client) -> list[Observation]:
        return [await observe(client, method, path) for _ in range(times)]

    return run


async def _charges(client: tether.Client) -> list[Observation]:
    params = {"expand": "customer"}
    key = {"Idempotency-Key": "k1"}
    return [
        await observe(
            client, "POST", "/charges", params=params, headers=key, json={"currency": "eur", "n": 1}
        ),
        await observe(client, "POST", "/charges", params=params, json={"currency": "eur"}),
        await observe(
            client, "POST", "/charges", params=params, headers=key, json={"currency": "usd"}
        ),
    ]


CASES = [
    Case(
        "plain-json",
        lambda api: api.stub("GET", "/ok", Reply(json={"ok": True})) and None,
        one("GET", "/ok"),
        [(200, {"ok": True}, 1)],
    ),
    Case(
        "fail-twice-then-succeed",
        lambda api: api.stub("GET", "/flaky", Reply(503, times=2), Reply(json="up")) and None,
        one("GET", "/flaky"),
        [(200, "up", 3)],
        sleeps=[1.0, 2.0],
        calls=("GET", "/flaky", 3),
    ),
    Case(
        "rate-limited-then-ok",
        lambda api: api.stub("GET", "/limited", RateLimited(retry_after=2), Reply(json=1)) and None,
        one("GET", "/limited"),
        [(200, 1, 2)],
        sleeps=[2.0],
    ),
    Case(
        "5xx-burst-with-advice",
        lambda api: api.stub("GET", "/down", ServerError(503, retry_after=1)) and None,
        one("GET", "/down"),
        [("ServerError", 503, 3)],
        sleeps=[1.0, 1.0],
        calls=("GET", "/down", 3),
    ),
    Case(
        "reset-get-is-retried",
        lambda api: api.stub("GET", "/reset", Reset()) and None,
        one("GET", "/reset"),
        [("NetworkError",)],
        sleeps=[1.0, 2.0],
        calls=("GET", "/reset", 3),
    ),
    Case(
        "reset-post-is-not-retried",
        lambda api: api.stub("POST", "/reset", Reset()) and None,
        one("POST", "/reset", json={"a": 1}),
        [("NetworkError",)],
        calls=("POST", "/reset", 1),
    ),
    Case(
        "empty-response",
        lambda api: api.stub("GET", "/empty", EmptyResponse()) and None,
        one("GET", "/empty", retry=None),
        [("NetworkError",)],
    ),
    Case(
        # aiohttp reports the garbage chunk as a payload error when it arrives with the
        # headers, but misses the close and waits for the attempt timeout when it arrives
        # after them; which happens is TCP timing, on either server. Never a success.
        "malformed-chunk",
        lambda api: api.stub("GET", "/cut", Reply(json="x" * 200, fault=MalformedChunk())),
        one("GET", "/cut", retry=None, timeout=SHORT),
        [("NetworkError",)],
        racy=([("ReadTimeout",)],),
    ),
    Case(
        "latency-beyond-timeout",
        lambda api: api.stub("GET", "/slow", Reply(json=1, fault=Latency(1.5))) and None,
        one("GET", "/slow", retry=None, timeout=SHORT),
        [("ReadTimeout",)],
    ),
    Case(
        "latency-within-timeout",
        lambda api: api.stub("GET", "/quick", Reply(json=1, fault=Latency(0.05))) and None,
        one("GET", "/quick", timeout=SHORT),
        [(200, 1, 1)],
    ),
    Case(
        "slow-drip",
        lambda api: api.stub(
            "GET", "/drip", Reply(body="abcdefgh", fault=Drip(chunks=4, duration=0.2))
        ),
        one("GET", "/drip"),
        [(200, "abcdefgh", 1)],
    ),
    Case(
        "scenario-states",
        lambda api: (
            [
                api.stub(
                    "GET", "/job", Reply(json="queued"), scenario="job", when=STARTED, then="run"
                ),
                api.stub(
                    "GET", "/job", Reply(json="running"), scenario="job", when="run", then="done"
                ),
                api.stub("GET", "/job", Reply(json="done"), scenario="job", when="done"),
            ]
        ),
        repeat(4, "GET", "/job"),
        [(200, "queued", 1), (200, "running", 1), (200, "done", 1), (200, "done", 1)],
    ),
    Case(
        "matchers-and-unmatched",
        lambda api: api.stub(
            "POST",
            "/charges",
            Reply(201, json={"id": "ch_1"}),
            headers={"Idempotency-Key": ANY},
            query={"expand": "customer"},
            json_partial={"currency": "eur"},
        ),
        _charges,
        [(201, {"id": "ch_1"}, 1), ("NotFoundError", 404, 1), ("NotFoundError", 404, 1)],
    ),
]


async def run_case(case: Case, url: str) -> tuple[list[Observation], list[float]]:
    clock = FakeClock()
    options: dict[str, Any] = {"retry": RETRY, "clock": clock, **case.options}
    async with tether.Client(url, **options) as client:
        observed = await case.exercise(client)
    return observed, clock.sleeps


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_mockapi_and_wiremock_agree(case: Case, wiremock: WireMock) -> None:
    """The same definition gives the same outcomes, waits and server-side call counts on the
    MockAPI loopback server and on WireMock, and both match what the scenario expects."""
    api = MockAPI(clock=FakeClock(), strict=False)
    case.define(api)
    async with api.serve() as server:
        ours, our_sleeps = await run_case(case, server.url)
    await wiremock.reset()
    await wiremock.add(to_wiremock(api))
    theirs, their_sleeps = await run_case(case, wiremock.url)
    if case.racy:
        accepted = [case.expected, *case.racy]
        assert ours in accepted
        assert theirs in accepted
    else:
        assert ours == theirs == case.expected
    assert our_sleeps == their_sleeps == case.sleeps
    if case.calls is not None:
        method, path, count = case.calls
        assert sum(1 for r in api.requests if (r.method, r.path) == (method, path)) == count
        assert await wiremock.count(method, path) == count
