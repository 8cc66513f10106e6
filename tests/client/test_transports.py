"""Transport faults map to the error tree and are retried by phase, on every transport."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest

import tether
from tests.conftest import FaultServer, LoopbackServer
from tether.testing import no_wait
from tether.transports import AiohttpTransport, AsyncTransport, HttpxTransport

TransportFactory = Callable[[], AsyncTransport | None]

TRANSPORTS: dict[str, TransportFactory] = {
    "aiohttp": lambda: None,
    "httpx": lambda: HttpxTransport(module="httpx"),
    "httpx2": lambda: HttpxTransport(module="httpx2"),
}


@pytest.fixture(params=sorted(TRANSPORTS))
def make_transport(request: pytest.FixtureRequest) -> TransportFactory:
    return TRANSPORTS[request.param]


def retrying(**options: object) -> tether.Retry:
    settings: dict[str, object] = {"attempts": 3, "jitter": False, "budget": None}
    settings.update(options)
    return tether.Retry(**settings)  # type: ignore[arg-type]


async def test_connection_refused_is_retried_for_any_method(
    closed_port: int, make_transport: TransportFactory
) -> None:
    """A refused connection was never sent: even a POST is retried, then ConnectError."""
    retries: list[tether.RetryEvent] = []
    url = f"http://127.0.0.1:{closed_port}"
    with no_wait():
        async with tether.Client(
            url, retry=retrying(), transport=make_transport(), on_retry=retries.append
        ) as c:
            with pytest.raises(tether.ConnectError) as info:
                await c.post("/x", json={})
    assert len(retries) == 2
    assert not info.value.sent
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(("method", "attempts"), [("GET", 3), ("POST", 1)])
async def test_dropped_connection_is_retried_only_when_safe(
    fault_server: FaultServer, make_transport: TransportFactory, method: str, attempts: int
) -> None:
    """A connection lost after sending: GET is retried, POST is not (outcome unknown)."""
    fault_server.mode = "drop"
    with no_wait():
        async with tether.Client(
            fault_server.url, retry=retrying(), transport=make_transport()
        ) as c:
            with pytest.raises(tether.NetworkError) as info:
                await c.request(method, "/x")
    assert info.value.sent
    assert fault_server.requests == attempts


async def test_truncated_body_is_retried(
    fault_server: FaultServer, make_transport: TransportFactory
) -> None:
    """An error while reading the body is retried like any other failure after sending."""
    fault_server.plan = ["truncate"]
    with no_wait():
        async with tether.Client(
            fault_server.url, retry=retrying(), transport=make_transport()
        ) as c:
            response = await c.get("/x")
    assert response.json() == {"ok": True}
    assert fault_server.requests == 2


async def test_attempt_timeout_then_success(
    fault_server: FaultServer, make_transport: TransportFactory
) -> None:
    """An attempt that hangs past its own limit times out and the next attempt succeeds."""
    fault_server.plan = ["hang"]
    timeout = tether.Timeout(total=20, attempt=0.2, connect=5)
    with no_wait():
        async with tether.Client(
            fault_server.url, retry=retrying(), timeout=timeout, transport=make_transport()
        ) as c:
            response = await c.get("/x")
    assert response.attempts == 2


async def test_deadline_bounds_all_attempts(
    fault_server: FaultServer, make_transport: TransportFactory
) -> None:
    """When attempts keep hanging, the total deadline ends the call with DeadlineExceeded."""
    fault_server.mode = "hang"
    timeout = tether.Timeout(total=0.5, attempt=0.2, connect=5)
    with no_wait():
        async with tether.Client(
            fault_server.url,
            retry=retrying(attempts=10, base_delay=0.01),
            timeout=timeout,
            transport=make_transport(),
        ) as c:
            with pytest.raises(tether.DeadlineExceeded) as info:
                await c.get("/x")
    assert isinstance(info.value.__cause__, tether.ReadTimeout)
    # Two full attempts fit, the third is cut to what is left of 0.5 s.
    assert fault_server.requests == 3


async def test_read_timeout_on_post_is_not_retried(
    fault_server: FaultServer, make_transport: TransportFactory
) -> None:
    """A POST that timed out waiting for the answer may have been processed: not repeated."""
    fault_server.mode = "hang"
    timeout = tether.Timeout(total=20, attempt=0.2, connect=5)
    with no_wait():
        async with tether.Client(
            fault_server.url, retry=retrying(), timeout=timeout, transport=make_transport()
        ) as c:
            with pytest.raises(tether.ReadTimeout):
                await c.post("/x", json={})
    assert fault_server.requests == 1


async def test_status_answers_are_identical(
    server: LoopbackServer, make_transport: TransportFactory
) -> None:
    """Headers, body, status and reason come through every transport the same way."""
    from aiohttp import web

    server.script(
        "GET",
        "/x",
        lambda: web.json_response({"a": [1, 2]}, headers={"X-Request-Id": "req-1"}),
    )
    async with tether.Client(server.url, transport=make_transport()) as c:
        response = await c.get("/x", params={"q": "a b", "flag": True, "skip": None, "n": [1, 2]})
    assert response.status == 200
    assert response.reason == "OK"
    assert response.json() == {"a": [1, 2]}
    assert response.request_id == "req-1"
    assert response.headers["content-type"].startswith("application/json")
    assert server.seen[0].query_pairs == [("q", "a b"), ("flag", "true"), ("n", "1"), ("n", "2")]
    assert server.seen[0].headers["User-Agent"] == f"tether/{tether.__version__}"


class TestSessionOwnership:
    async def test_lent_session_is_never_closed(self, server: LoopbackServer) -> None:
        """A lent session (Home Assistant's shared one) stays open after the client closes."""
        from aiohttp import web

        server.script("GET", "/x", lambda: web.json_response({}))
        async with aiohttp.ClientSession() as session:
            async with tether.Client(server.url, session=session) as c:
                await c.get("/x")
            assert not session.closed
            async with session.get(server.url + "/x") as again:
                assert again.status == 200

    async def test_own_session_is_closed(self, server: LoopbackServer) -> None:
        """The pool a client created itself is closed with the client."""
        from aiohttp import web

        server.script("GET", "/x", lambda: web.json_response({}))
        transport = AiohttpTransport()
        async with tether.Client(server.url, transport=transport) as c:
            await c.get("/x")
            session = transport._session
            assert session is not None
        assert session.closed

    async def test_closed_client_refuses_work(self, server: LoopbackServer) -> None:
        """Using a closed client is a ConfigError, not a confusing aiohttp error."""
        c = tether.Client(server.url)
        await c.aclose()
        with pytest.raises(tether.ConfigError, match="closed"):
            await c.get("/x")

    async def test_session_and_transport_together_is_an_error(self) -> None:
        """Passing both session= and transport= is refused before any I/O."""
        async with aiohttp.ClientSession() as session:
            with pytest.raises(tether.ConfigError):
                tether.Client(
                    "https://api.example.com", session=session, transport=HttpxTransport()
                )


async def test_slow_drip_is_bounded_by_the_attempt(
    fault_server: FaultServer, make_transport: TransportFactory
) -> None:
    """A body that trickles in, each read fast, still ends when the attempt's time is up."""
    fault_server.mode = "drip"
    timeout = tether.Timeout(total=20, attempt=0.3, connect=5)
    async with tether.Client(
        fault_server.url, retry=None, timeout=timeout, transport=make_transport()
    ) as c:
        with pytest.raises(tether.ReadTimeout):
            await c.get("/x")


def test_verify_belongs_to_the_transport_tether_builds() -> None:
    """verify= together with transport= is refused instead of being silently ignored."""
    with pytest.raises(tether.ConfigError, match="TLS options"):
        tether.Client("https://x.example.com", transport=HttpxTransport(), verify=False)
