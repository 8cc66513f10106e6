"""`tether.streams.SSE` against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

import tether
from tests.streams.conftest import StreamServer
from tether.streams import (
    SSE,
    Disconnect,
    Reconnect,
    ServerSentEvent,
    StreamProtocolError,
    StreamState,
)
from tether.testing import FakeClock

NO_JITTER = Reconnect(jitter=False)
OPENED: list[SSE] = []


@pytest.fixture(autouse=True)
async def close_streams() -> AsyncIterator[None]:
    yield
    while OPENED:
        await OPENED.pop().close()


def make(server: StreamServer, path: str = "/events", **options: Any) -> SSE:
    options.setdefault("reconnect", NO_JITTER)
    options.setdefault("clock", FakeClock())
    stream = SSE(server.url + path, **options)
    OPENED.append(stream)
    return stream


async def collect(stream: SSE, n: int | None = None) -> list[ServerSentEvent]:
    got: list[ServerSentEvent] = []
    async with asyncio.timeout(10):
        async for event in stream:
            got.append(event)
            if n is not None and len(got) == n:
                break
    return got


def events(*chunks: str, end: str = "return") -> Any:
    """An SSE handler that writes `chunks`, then ends the response, cuts the TCP connection
    ("abort") or keeps it open ("hold")."""

    async def handler(request: web.Request, server: StreamServer) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk.encode())
        if end == "abort":
            assert request.transport is not None
            request.transport.abort()
        elif end == "hold":
            await asyncio.Event().wait()
        return response

    return handler


def status(code: int, headers: dict[str, str] | None = None, text: str = "") -> Any:
    async def handler(request: web.Request, server: StreamServer) -> web.StreamResponse:
        return web.Response(status=code, headers=headers, text=text)

    return handler


async def test_drop_and_resume_with_last_event_id(stream_server: StreamServer) -> None:
    """After the connection drops, the reconnect sends Last-Event-ID and the stream continues
    with the next event: no gap, no duplicate."""
    stream_server.on_http(
        events("id: 1\ndata: a\n\n", "id: 2\ndata: b\n\n", "id: 3\ndata: c\n\n", end="abort"),
        events("id: 4\ndata: d\n\n", "id: 5\ndata: e\n\n"),
        status(204),
    )
    disconnects: list[Disconnect] = []
    async with make(stream_server, on_disconnect=disconnects.append) as stream:
        got = await collect(stream)
    assert [(e.id, e.data) for e in got] == [
        ("1", "a"),
        ("2", "b"),
        ("3", "c"),
        ("4", "d"),
        ("5", "e"),
    ]
    sent = [headers.get("Last-Event-ID") for headers in stream_server.requests]
    assert sent == [None, "3", "5"]
    assert stream.state is StreamState.CLOSED
    assert [d.will_reconnect for d in disconnects] == [True, True]
    assert stream.stats().connections == 2


async def test_request_headers_follow_the_spec(stream_server: StreamServer) -> None:
    """Requests ask for text/event-stream, bypass caches, and resume from a given id."""
    stream_server.on_http(events("data: x\n\n", end="hold"))
    async with make(stream_server, last_event_id="41") as stream:
        await collect(stream, 1)
    headers = stream_server.requests[0]
    assert headers["Accept"] == "text/event-stream"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Last-Event-ID"] == "41"


async def test_server_retry_field_sets_the_reconnect_delay(stream_server: StreamServer) -> None:
    """`retry: 2500` makes the client wait 2.5 s before reconnecting (WHATWG §9.2.3)."""
    clock = FakeClock()
    stream_server.on_http(events("retry: 2500\ndata: a\n\n"), events("data: b\n\n"), status(204))
    async with make(stream_server, clock=clock) as stream:
        assert [e.data for e in await collect(stream)] == ["a", "b"]
        assert stream.retry == 2.5
    assert clock.sleeps == [2.5, 2.5]


async def test_204_on_first_request_ends_the_stream(stream_server: StreamServer) -> None:
    """HTTP 204 No Content tells the client to stop: no events, no reconnect."""
    stream_server.on_http(status(204))
    async with make(stream_server) as stream:
        assert await collect(stream) == []
    assert len(stream_server.requests) == 1


@pytest.mark.parametrize(
    ("code", "error"), [(401, tether.AuthenticationError), (404, tether.NotFoundError)]
)
async def test_refusals_that_would_repeat_raise(
    stream_server: StreamServer, code: int, error: type[Exception]
) -> None:
    """401 and other non-transient statuses raise at once, without retrying."""
    stream_server.on_http(status(code, text="go away"))
    stream = make(stream_server)
    with pytest.raises(error, match="go away"):
        await stream.connect()
    assert len(stream_server.requests) == 1


async def test_503_is_retried_after_retry_after(stream_server: StreamServer) -> None:
    """A 503 with Retry-After is waited out, then the stream opens."""
    clock = FakeClock()
    stream_server.on_http(status(503, {"Retry-After": "12"}), events("data: up\n\n", end="hold"))
    async with make(stream_server, clock=clock) as stream:
        assert [e.data for e in await collect(stream, 1)] == ["up"]
    assert clock.sleeps == [12.0]


async def test_wrong_content_type_fails_without_reconnecting(stream_server: StreamServer) -> None:
    """A 200 that is not text/event-stream fails the connection (WHATWG §9.2.3)."""

    async def json_answer(request: web.Request, server: StreamServer) -> web.StreamResponse:
        return web.json_response({"not": "a stream"})

    stream_server.on_http(json_answer)
    with pytest.raises(StreamProtocolError, match="application/json"):
        await make(stream_server).connect()
    assert len(stream_server.requests) == 1


async def test_silent_connection_is_reopened(stream_server: StreamServer) -> None:
    """A stream that sends nothing for read_timeout is presumed dead and reopened."""
    disconnects: list[Disconnect] = []
    stream_server.on_http(
        events("id: 1\ndata: a\n\n", end="hold"), events("data: b\n\n", end="hold")
    )
    stream = make(stream_server, read_timeout=0.3, on_disconnect=disconnects.append)
    async with stream:
        assert [e.data for e in await collect(stream, 2)] == ["a", "b"]
    assert "no data for 0.3 s" in disconnects[0].reason
    assert stream_server.requests[1]["Last-Event-ID"] == "1"


async def test_credentials_are_applied_on_every_connection(stream_server: StreamServer) -> None:
    """The credential applies itself to the first request and to every reconnect."""
    stream_server.on_http(events("data: 1\n\n"), events("data: 2\n\n"), status(204))
    async with make(stream_server, auth=tether.auth.Bearer("sse-token")) as stream:
        await collect(stream)
    assert [h["Authorization"] for h in stream_server.requests] == ["Bearer sse-token"] * 3


async def test_post_streams_resend_their_body(stream_server: StreamServer) -> None:
    """A POST event stream (as LLM APIs use) sends its JSON body on every connection."""
    stream_server.on_http(events("data: 1\n\n"), events("data: 2\n\n"), status(204))
    async with make(stream_server, method="POST", json={"prompt": "hi"}) as stream:
        await collect(stream)
    assert stream_server.bodies == [b'{"prompt":"hi"}'] * 3


async def test_reconnect_disabled_ends_with_the_response(stream_server: StreamServer) -> None:
    """With reconnect=None the stream ends when the server ends the response."""
    stream_server.on_http(events("data: only\n\n"))
    async with make(stream_server, reconnect=None) as stream:
        assert [e.data for e in await collect(stream)] == ["only"]
    assert len(stream_server.requests) == 1


async def test_hooks_see_the_lifecycle(stream_server: StreamServer) -> None:
    """on_connect, on_disconnect and on_reconnect fire in order with the backoff delay."""
    log: list[Any] = []
    stream_server.on_http(events("data: 1\n\n"), events("data: 2\n\n"), status(204))
    stream = make(
        stream_server,
        on_connect=lambda: log.append("connect"),
        on_disconnect=lambda d: log.append("disconnect"),
        on_reconnect=lambda attempt, delay: log.append(("reconnect", attempt, delay)),
    )
    async with stream:
        await collect(stream)
    assert log == [
        "connect",
        "disconnect",
        ("reconnect", 1, 1.0),
        "connect",
        "disconnect",
        ("reconnect", 2, 2.0),  # the first connection was brief: backoff keeps growing
    ]


async def test_secrets_never_leak(
    stream_server: StreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Canary: a query key never shows in the error, its causes, reprs or logs."""
    secret = "canary-sse-key-5e0b"
    caplog.set_level(logging.DEBUG)
    stream_server.on_http(status(503), status(403, text=f"bad key {secret}"))
    stream = make(stream_server, auth=tether.auth.ApiKey("key", secret, location="query"))
    with pytest.raises(tether.PermissionDeniedError) as info:
        await stream.connect()
    texts = [str(info.value), repr(info.value), info.value.body, repr(stream), caplog.text]
    cause = info.value.__cause__ or info.value.__context__
    if cause is not None:
        texts.append(str(cause))
    assert "bad key [REDACTED]" in str(info.value)
    assert all(secret not in text for text in texts)
