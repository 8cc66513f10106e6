"""Stale-if-error (RFC 9111 §4.2.4, RFC 5861 §4): a stored response stands in for a failure
where the response or the client allows it, and never where must-revalidate forbids it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import tether
from tests.cache.conftest import RigFactory, reply
from tests.conftest import LoopbackServer
from tether._cache_config import Cache
from tether._config import Retry, Timeout
from tether._models import Request, Response
from tether._observe import Observer
from tether._types import Send
from tether.policies._retry import RetryPolicy
from tether.testing import FakeClock
from tether.transports._aiohttp import AiohttpTransport


class FailAfterFirst:
    """A pipeline link that lets the first call through, then raises `error` on every call."""

    def __init__(self, error: Callable[[], BaseException]) -> None:
        self.error = error
        self.calls = 0

    async def send(self, request: Request, next_: Send) -> Response:
        self.calls += 1
        if self.calls > 1:
            raise self.error()
        return await next_(request)


FAILURES: dict[str, Callable[[], BaseException]] = {
    "ConnectError": lambda: tether.ConnectError("refused"),
    "ConnectTimeout": lambda: tether.ConnectTimeout("slow connect"),
    "ReadTimeout": lambda: tether.ReadTimeout("slow answer"),
    "NetworkError": lambda: tether.NetworkError("reset"),
    "DeadlineExceeded": lambda: tether.DeadlineExceeded("out of time"),
    "RetryBudgetExhausted": lambda: tether.RetryBudgetExhausted("budget spent"),
    "CircuitOpenError": lambda: tether.CircuitOpenError("open", retry_at=0.0),
}

STALE_OK = {"Cache-Control": "max-age=10, stale-if-error=300"}


@pytest.mark.parametrize("kind", sorted(FAILURES))
async def test_each_failure_kind_gets_the_stale_response(
    server: LoopbackServer, make_rig: RigFactory, kind: str
) -> None:
    """RFC 5861 §4: within the response's stale-if-error window, any failure without a
    response is answered with the stale entry."""
    rig = make_rig(below=[FailAfterFirst(FAILURES[kind])])
    server.script("GET", "/x", reply(rig.clock, "v1", STALE_OK))
    await rig.get()
    rig.clock.advance(100)
    response = await rig.get()
    assert (response.status, response.text, response.from_cache) == (200, "v1", True)
    assert response.headers["Age"] == "100"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_error_statuses_get_the_stale_response(
    server: LoopbackServer, make_rig: RigFactory, status: int
) -> None:
    """RFC 5861 §4: a 500, 502, 503 or 504 from the origin is replaced by the stale entry."""
    rig = make_rig()
    server.script(
        "GET", "/x", reply(rig.clock, "v1", STALE_OK), reply(rig.clock, "down", status=status)
    )
    await rig.get()
    rig.clock.advance(100)
    response = await rig.get()
    assert (response.status, response.text, response.from_cache) == (200, "v1", True)
    assert server.count("/x") == 2


@pytest.mark.parametrize("status", [501, 505, 404, 429])
async def test_other_statuses_are_returned(
    server: LoopbackServer, make_rig: RigFactory, status: int
) -> None:
    """RFC 5861 §4: only 500/502/503/504 count as errors; other answers are the answer."""
    rig = make_rig()
    server.script(
        "GET", "/x", reply(rig.clock, "v1", STALE_OK), reply(rig.clock, "no", status=status)
    )
    await rig.get()
    rig.clock.advance(100)
    response = await rig.get()
    assert (response.status, response.from_cache) == (status, False)


async def test_client_option_allows_stale_on_error(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.2.4: the client may permit stale answers itself, with Cache(stale_if_error=...)."""
    rig = make_rig(Cache(stale_if_error=600), below=[FailAfterFirst(FAILURES["ConnectError"])])
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=10"}))
    await rig.get()
    rig.clock.advance(500)
    assert (await rig.get()).from_cache


async def test_request_directive_allows_stale_on_error(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """RFC 5861 §4: a request's own stale-if-error permits it for that request."""
    rig = make_rig(below=[FailAfterFirst(FAILURES["ReadTimeout"])])
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=10"}))
    await rig.get()
    rig.clock.advance(100)
    response = await rig.get(headers={"Cache-Control": "stale-if-error=200"})
    assert response.from_cache


async def test_without_permission_the_error_propagates(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.2.4: a stale response is not served on error unless someone allowed it."""
    rig = make_rig(below=[FailAfterFirst(FAILURES["ConnectError"])])
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=10"}))
    await rig.get()
    rig.clock.advance(100)
    with pytest.raises(tether.ConnectError):
        await rig.get()


async def test_past_the_window_the_error_propagates(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """RFC 5861 §4: past stale-if-error seconds of staleness the failure is the answer."""
    rig = make_rig(below=[FailAfterFirst(FAILURES["ConnectError"])])
    server.script("GET", "/x", reply(rig.clock, "v1", STALE_OK))
    await rig.get()
    rig.clock.advance(10 + 301)
    with pytest.raises(tether.ConnectError):
        await rig.get()


@pytest.mark.parametrize("directive", ["must-revalidate", "no-cache"])
async def test_must_revalidate_forbids_stale_on_error(
    server: LoopbackServer, make_rig: RigFactory, directive: str
) -> None:
    """§4.2.4, §5.2.2.2: must-revalidate (or no-cache) wins over any stale-if-error."""
    rig = make_rig(Cache(stale_if_error=600), below=[FailAfterFirst(FAILURES["ConnectError"])])
    headers = {"Cache-Control": f"max-age=10, {directive}, stale-if-error=600", "ETag": '"e"'}
    server.script("GET", "/x", reply(rig.clock, "v1", headers))
    await rig.get()
    rig.clock.advance(100)
    with pytest.raises(tether.ConnectError):
        await rig.get()


async def test_other_errors_are_not_masked(server: LoopbackServer, make_rig: RigFactory) -> None:
    """Errors that are not about reaching the API (bad configuration, auth) propagate."""
    rig = make_rig(
        Cache(stale_if_error=600),
        below=[FailAfterFirst(lambda: tether.ReauthRequired("grant revoked"))],
    )
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=10"}))
    await rig.get()
    rig.clock.advance(100)
    with pytest.raises(tether.ReauthRequired):
        await rig.get()


async def test_no_stored_response_means_the_error(make_rig: RigFactory) -> None:
    """With nothing stored there is nothing to fall back on."""
    failing = FailAfterFirst(FAILURES["ConnectError"])
    failing.calls = 1  # fails from the first call on
    rig = make_rig(Cache(stale_if_error=600), below=[failing])
    with pytest.raises(tether.ConnectError):
        await rig.get()


async def test_stale_after_retries_run_out(server: LoopbackServer, make_rig: RigFactory) -> None:
    """With the retry policy below, the stale entry answers once every attempt got a 503."""
    clock = FakeClock()
    retry = RetryPolicy(
        retry=Retry(attempts=3, jitter=False, base_delay=1.0, budget=None),
        timeout=Timeout(),
        clock=clock,
        observer=Observer(),
    )
    rig = make_rig(Cache(stale_if_error=600), below=[retry], clock=clock)
    server.script(
        "GET",
        "/x",
        reply(rig.clock, "v1", {"Cache-Control": "max-age=10"}),
        reply(rig.clock, "down", status=503),
    )
    await rig.get()
    rig.clock.advance(100)
    response = await rig.get()
    assert (response.text, response.from_cache) == ("v1", True)
    assert server.count("/x") == 4
    assert rig.clock.sleeps == [1.0, 2.0]


async def test_stale_when_the_connection_is_refused(
    server: LoopbackServer, make_rig: RigFactory, closed_port: int
) -> None:
    """A real refused connection (nothing listening) is answered from the stale entry."""
    live = {"up": True}

    def terminal(transport: AiohttpTransport) -> Send:
        async def send(request: Request) -> Response:
            if not live["up"]:
                request = request.copy()
                request.url = request.url.replace(server.url, f"http://127.0.0.1:{closed_port}")
            return await transport.send(request)

        return send

    rig = make_rig(Cache(stale_if_error=600), terminal=terminal)
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=10"}))
    await rig.get()
    live["up"] = False
    rig.clock.advance(100)
    response = await rig.get()
    assert (response.text, response.from_cache) == ("v1", True)
    assert response.url == f"{server.url}/x"
