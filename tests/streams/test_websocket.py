"""`tether.streams.WebSocket` against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

import tether
from tests.streams.conftest import StreamServer, eventually, read_messages
from tether._core._oauth import TokenSet
from tether._redact import Redactor
from tether.auth import TokenSource
from tether.streams import (
    AuthMessage,
    CloseAction,
    Disconnect,
    MessageTooBig,
    NotConnected,
    Overflow,
    Reconnect,
    StreamClosed,
    StreamState,
    WebSocket,
)
from tether.testing import FakeClock

NO_JITTER = Reconnect(jitter=False)

OPENED: list[WebSocket] = []


@pytest.fixture(autouse=True)
async def close_streams() -> AsyncIterator[None]:
    """A failed assertion must not leave a stream reconnecting on virtual time forever."""
    yield
    while OPENED:
        await OPENED.pop().close()


def make(server: StreamServer, **options: Any) -> WebSocket:
    options.setdefault("heartbeat", None)
    options.setdefault("reconnect", NO_JITTER)
    options.setdefault("clock", FakeClock())
    ws = WebSocket(options.pop("url", server.ws_url), **options)
    OPENED.append(ws)
    return ws


async def take(ws: WebSocket, n: int) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(10):
        async for message in ws:
            got.append(message)
            if len(got) == n:
                break
    return got


def send_then_hold(*messages: Any) -> Any:
    async def handler(
        request: web.Request, ws: web.WebSocketResponse, server: StreamServer
    ) -> None:
        for message in messages:
            if isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_json(message)
        await read_messages(ws, server)

    return handler


def close_with(code: int, message: bytes = b"", *before: Any) -> Any:
    async def handler(
        request: web.Request, ws: web.WebSocketResponse, server: StreamServer
    ) -> None:
        for item in before:
            await ws.send_json(item)
        await ws.close(code=code, message=message)

    return handler


# -- messages -------------------------------------------------------------------------------


async def test_json_messages_arrive_in_order(stream_server: StreamServer) -> None:
    """Messages are decoded from JSON and iterated in the order the server sent them."""
    stream_server.on_ws(send_then_hold({"a": 1}, [2], "3", None))
    async with make(stream_server) as ws:
        assert await take(ws, 4) == [{"a": 1}, [2], 3, None]
        assert ws.stats().received == 4


async def test_invalid_json_is_logged_redacted_and_skipped(
    stream_server: StreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A message that is not JSON is skipped and logged, with the credential's secret hidden."""
    secret = "canary-token-4f1d"
    stream_server.on_ws(send_then_hold(f"not json {secret}", {"ok": True}))
    caplog.set_level(logging.DEBUG)
    async with make(stream_server, auth=tether.auth.Bearer(secret)) as ws:
        assert await take(ws, 1) == [{"ok": True}]
        assert ws.stats().invalid == 1
    assert "not JSON" in caplog.text
    assert "[REDACTED]" in caplog.text
    assert secret not in caplog.text


async def test_callbacks_receive_messages_and_a_failing_callback_does_not_stop_them(
    stream_server: StreamServer,
) -> None:
    """on_message gets every message; an exception in it is logged and delivery goes on."""
    got: list[Any] = []

    async def on_message(message: Any) -> None:
        if message == 1:
            raise RuntimeError("boom")
        got.append(message)

    stream_server.on_ws(send_then_hold(1, 2, 3))
    async with make(stream_server, on_message=on_message) as ws:
        await eventually(lambda: got == [2, 3])
        with pytest.raises(tether.ConfigError):
            aiter(ws)


async def test_send_needs_a_connection(stream_server: StreamServer) -> None:
    """send() delivers on an open link and raises NotConnected when there is none."""
    stream_server.on_ws(send_then_hold())
    ws = make(stream_server)
    with pytest.raises(NotConnected):
        await ws.send({"x": 1})
    async with ws:
        await ws.send({"x": 1})
        await eventually(lambda: stream_server.received[0] == [{"x": 1}])
    with pytest.raises(NotConnected):
        await ws.send({"x": 2})


# -- subscriptions and reconnects -----------------------------------------------------------


async def test_subscriptions_are_replayed_after_a_reconnect(stream_server: StreamServer) -> None:
    """Every active subscription is sent again, in order, on the next connection."""
    clock = FakeClock()
    reconnects: list[tuple[int, float]] = []
    connects: list[int] = []
    ws = make(
        stream_server,
        clock=clock,
        on_reconnect=lambda attempt, delay: reconnects.append((attempt, delay)),
        on_connect=lambda: connects.append(len(stream_server.sockets)),
    )
    async with ws:
        await ws.subscribe({"op": "subscribe", "channel": "a"})
        await ws.subscribe({"op": "subscribe", "channel": "b"})
        assert await take(ws, 2) == [{"channel": "a", "n": 0}, {"channel": "b", "n": 0}]
        await stream_server.sockets[0].close(code=1001)
        assert await take(ws, 2) == [{"channel": "a", "n": 0}, {"channel": "b", "n": 0}]
    subscribes = [[m["channel"] for m in stream_server.received[i]] for i in (0, 1)]
    assert subscribes == [["a", "b"], ["a", "b"]]
    assert reconnects == [(1, 1.0)]
    assert clock.sleeps == [1.0]
    assert connects == [1, 2]


async def test_unsubscribed_messages_are_not_replayed(stream_server: StreamServer) -> None:
    """unsubscribe() sends the unsubscribe message and drops the subscription from replays."""
    async with make(stream_server) as ws:
        keep = await ws.subscribe({"op": "subscribe", "channel": "keep"})
        gone = await ws.subscribe(
            {"op": "subscribe", "channel": "gone"}, unsubscribe={"op": "unsubscribe"}
        )
        await take(ws, 2)
        await gone.unsubscribe()
        await gone.unsubscribe()  # idempotent
        await eventually(lambda: {"op": "unsubscribe"} in stream_server.received[0])
        await stream_server.sockets[0].close(code=1012)
        assert await take(ws, 1) == [{"channel": "keep", "n": 0}]
        assert ws.subscriptions == (keep,)
        assert not gone.active
    assert [m["channel"] for m in stream_server.received[1]] == ["keep"]


async def test_subscription_made_before_connecting_is_sent_once(
    stream_server: StreamServer,
) -> None:
    """A subscription registered before start() goes out on the first connection, once."""
    ws = make(stream_server)
    await ws.subscribe({"op": "subscribe", "channel": "early"})
    async with ws:
        assert await take(ws, 1) == [{"channel": "early", "n": 0}]
        await eventually(lambda: len(stream_server.received[0]) == 1)
    assert stream_server.received[0] == [{"op": "subscribe", "channel": "early"}]


async def test_lost_connection_reconnects_with_growing_backoff(
    stream_server: StreamServer,
) -> None:
    """Connections that drop at once keep the backoff growing instead of resetting it."""
    clock = FakeClock()
    disconnects: list[Disconnect] = []
    stream_server.on_ws(
        close_with(1011, b"oops"), close_with(1011), close_with(1011), send_then_hold({"up": 1})
    )
    ws = make(stream_server, clock=clock, on_disconnect=disconnects.append)
    async with ws:
        assert await take(ws, 1) == [{"up": 1}]
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert [d.code for d in disconnects] == [1011, 1011, 1011]
    assert disconnects[0].reason == "1011 internal error: oops"
    assert all(d.action is CloseAction.RECONNECT for d in disconnects)


async def test_crashed_server_connection_reconnects(stream_server: StreamServer) -> None:
    """A TCP connection cut without a close frame is reported as lost and reconnected."""
    disconnects: list[Disconnect] = []
    stream_server.on_ws(send_then_hold({"n": 1}), send_then_hold({"n": 2}))
    async with make(stream_server, on_disconnect=disconnects.append) as ws:
        assert await take(ws, 1) == [{"n": 1}]
        stream_server.abort_all()
        assert await take(ws, 1) == [{"n": 2}]
    assert disconnects[0].code is None
    assert disconnects[0].will_reconnect


async def test_stable_connection_resets_the_backoff(stream_server: StreamServer) -> None:
    """A connection that lasted `stable_after` starts the next backoff from the beginning."""
    clock = FakeClock()
    stream_server.on_ws(
        close_with(1011), send_then_hold({"n": 1}), close_with(1011), send_then_hold({"n": 2})
    )
    ws = make(stream_server, clock=clock, reconnect=Reconnect(jitter=False, stable_after=30))
    async with ws:
        assert await take(ws, 1) == [{"n": 1}]
        clock.advance(31)
        await stream_server.sockets[1].close(code=1001)
        assert await take(ws, 1) == [{"n": 2}]
    assert clock.sleeps == [1.0, 1.0, 2.0]


async def test_reconnect_disabled_ends_cleanly_on_normal_close(
    stream_server: StreamServer,
) -> None:
    """With reconnect=None, a 1000 close ends iteration after the queued messages."""
    stream_server.on_ws(close_with(1000, b"", {"last": True}))
    async with make(stream_server, reconnect=None) as ws:
        assert [m async for m in ws] == [{"last": True}]
        await ws.wait_closed()
    assert len(stream_server.sockets) == 1


async def test_reconnect_disabled_raises_on_abnormal_close(stream_server: StreamServer) -> None:
    """With reconnect=None, an error close raises StreamClosed to the consumer."""
    stream_server.on_ws(close_with(1011))
    async with make(stream_server, reconnect=None) as ws:
        with pytest.raises(StreamClosed) as info:
            await take(ws, 1)
    assert info.value.code == 1011


async def test_max_attempts_gives_up_with_the_last_error(stream_server: StreamServer) -> None:
    """After max_attempts consecutive failures the stream stops with the last failure."""
    stream_server.refuse = [(502, {})] * 5
    ws = make(stream_server, reconnect=Reconnect(jitter=False, max_attempts=2))
    with pytest.raises(tether.ServerError) as info:
        await ws.connect()
    assert "gave up after 2 failed reconnect attempts" in "".join(info.value.__notes__)
    assert len(stream_server.handshakes) == 3
    assert ws.state is StreamState.CLOSED


# -- close codes ----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [4401, 1008, 3000])
async def test_auth_close_codes_stop_with_reauth_required(
    stream_server: StreamServer, code: int
) -> None:
    """A close that means "credentials rejected" stops the stream with ReauthRequired."""
    stream_server.on_ws(close_with(code, b"token expired"))
    async with make(stream_server) as ws:
        with pytest.raises(tether.ReauthRequired, match="token expired"):
            await take(ws, 1)
        assert isinstance(ws.error, tether.ReauthRequired)
    assert len(stream_server.sockets) == 1


async def test_server_message_too_big_close_fails_loudly(stream_server: StreamServer) -> None:
    """A 1009 close from the server raises MessageTooBig instead of reconnecting forever."""
    stream_server.on_ws(close_with(1009, b"frame too large"))
    async with make(stream_server) as ws:
        with pytest.raises(MessageTooBig) as info:
            await take(ws, 1)
    assert info.value.code == 1009
    assert len(stream_server.sockets) == 1


async def test_oversized_message_fails_loudly(stream_server: StreamServer) -> None:
    """A message over max_message_size closes with 1009 and raises MessageTooBig."""
    stream_server.on_ws(send_then_hold({"small": 1}, {"big": "x" * 5000}))
    async with make(stream_server, max_message_size=1024) as ws:
        assert await take(ws, 1) == [{"small": 1}]
        with pytest.raises(MessageTooBig):
            await take(ws, 1)


async def test_close_code_overrides(stream_server: StreamServer) -> None:
    """close_codes= changes the policy: here an application code is made fatal."""
    stream_server.on_ws(close_with(4500, b"account suspended"))
    async with make(stream_server, close_codes={4500: CloseAction.FAIL}) as ws:
        with pytest.raises(StreamClosed, match="account suspended"):
            await take(ws, 1)


# -- handshake ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
async def test_refused_handshake_honours_retry_after(
    stream_server: StreamServer, status: int
) -> None:
    """A 429 or 503 upgrade answer is retried after the server's Retry-After, not sooner."""
    clock = FakeClock()
    stream_server.refuse = [(status, {"Retry-After": "7"})]
    stream_server.on_ws(send_then_hold({"ok": 1}))
    async with make(stream_server, clock=clock) as ws:
        assert await take(ws, 1) == [{"ok": 1}]
        assert ws.stats().failed_attempts == 1
    assert clock.sleeps == [7.0]


async def test_retry_after_longer_than_allowed_stops(stream_server: StreamServer) -> None:
    """Advice past max_retry_after raises RateLimitError carrying the advised wait."""
    stream_server.refuse = [(429, {"Retry-After": "3600"})]
    ws = make(stream_server, reconnect=Reconnect(max_retry_after=60))
    with pytest.raises(tether.RateLimitError) as info:
        await ws.connect()
    assert info.value.retry_after == 3600
    assert len(stream_server.handshakes) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, tether.AuthenticationError), (403, tether.PermissionDeniedError)],
)
async def test_rejected_credentials_stop_at_once(
    stream_server: StreamServer, status: int, error: type[Exception]
) -> None:
    """A server that rejects the credential gets one attempt, and the caller the status error."""
    stream_server.refuse = [(status, {})] * 3
    ws = make(stream_server, auth=tether.auth.Bearer("wrong"))
    with pytest.raises(error):
        await ws.connect()
    assert len(stream_server.handshakes) == 1


async def test_connection_refused_retries_until_connect_timeout(closed_port: int) -> None:
    """With nothing listening, attempts repeat until connect()'s timeout, then ConnectTimeout."""
    ws = WebSocket(
        f"ws://127.0.0.1:{closed_port}/ws",
        heartbeat=None,
        reconnect=Reconnect(initial_delay=0.01, max_delay=0.02),
    )
    with pytest.raises(tether.ConnectTimeout, match="last failure"):
        await ws.connect(timeout=0.3)
    assert ws.stats().failed_attempts >= 2
    assert ws.state is StreamState.CLOSED


# -- auth -----------------------------------------------------------------------------------


async def test_header_auth_is_applied_by_the_credential(stream_server: StreamServer) -> None:
    """Header and query credentials put themselves on every handshake."""
    stream_server.on_ws(close_with(1001), send_then_hold({"n": 1}))
    bearer = make(stream_server, auth=tether.auth.Bearer("tok-1"))
    async with bearer as ws:
        await take(ws, 1)
    assert [h["Authorization"] for h in stream_server.handshakes] == ["Bearer tok-1"] * 2
    keyed = make(stream_server, auth=tether.auth.ApiKey("key", "k-2", location="query"))
    async with keyed as ws:
        await take(ws, 1)
    assert stream_server.queries[-1] == {"key": "k-2"}


class RotatingSource(TokenSource):
    """A token source whose first token the server rejects."""

    def __init__(self) -> None:
        self.tokens = ["stale-token", "fresh-token"]
        self.renewals = 0

    async def current_token(self) -> TokenSet:
        return TokenSet(access_token=SecretStr(self.tokens[0]))

    async def renew_token(self, rejected: TokenSet) -> TokenSet:
        self.renewals += 1
        self.tokens.pop(0)
        return await self.current_token()

    def redactor_for(self, base: Redactor) -> Redactor:
        return base.merge(Redactor(secrets=["stale-token", "fresh-token"]))

    def redactor(self) -> Redactor:
        return Redactor(secrets=["stale-token", "fresh-token"])


async def test_token_source_renews_after_a_401_handshake(stream_server: StreamServer) -> None:
    """The credential sees the real 401 of the upgrade, renews once, and the retry succeeds."""
    source = RotatingSource()
    stream_server.refuse = [(401, {})]
    stream_server.on_ws(send_then_hold({"n": 1}))
    async with make(stream_server, auth=tether.auth.Bearer(source)) as ws:
        assert await take(ws, 1) == [{"n": 1}]
    assert [h["Authorization"] for h in stream_server.handshakes] == [
        "Bearer stale-token",
        "Bearer fresh-token",
    ]
    assert source.renewals == 1


def first_message_auth(valid: str) -> Any:
    """Home Assistant's protocol: auth_required, then auth_ok or auth_invalid and a close."""

    async def handler(
        request: web.Request, ws: web.WebSocketResponse, server: StreamServer
    ) -> None:
        await ws.send_json({"type": "auth_required"})
        message = await ws.receive_json()
        server.received[server.sockets.index(ws)].append(message)
        if message == {"type": "auth", "access_token": valid}:
            await ws.send_json({"type": "auth_ok"})
            await ws.send_json({"type": "event", "n": 1})
            await read_messages(ws, server)
        else:
            await ws.send_json({"type": "auth_invalid", "message": "Invalid access token"})
            await ws.close(code=1008)

    return handler


async def test_first_message_auth_succeeds(stream_server: StreamServer) -> None:
    """With AuthMessage the token goes in the first message, not the handshake headers."""
    stream_server.on_ws(first_message_auth("ha-token"))
    ws = make(stream_server, auth=tether.auth.Bearer("ha-token"), auth_message=AuthMessage())
    async with ws:
        assert await take(ws, 1) == [{"type": "event", "n": 1}]
    assert "Authorization" not in stream_server.handshakes[0]


async def test_first_message_auth_rejected_raises_redacted(
    stream_server: StreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """auth_invalid raises AuthenticationError, once, with the token hidden everywhere."""
    secret = "canary-ha-token-91c"
    stream_server.on_ws(first_message_auth("another-token"))
    caplog.set_level(logging.DEBUG)
    ws = make(stream_server, auth=tether.auth.Bearer(secret), auth_message=AuthMessage())
    with pytest.raises(tether.AuthenticationError) as info:
        await ws.connect()
    assert "Invalid access token" in str(info.value)
    assert len(stream_server.sockets) == 1
    seen = [str(info.value), repr(info.value), info.value.body, repr(ws), caplog.text]
    assert all(secret not in text for text in seen)


async def test_auth_message_requires_a_credential() -> None:
    """First-message auth without auth= is a configuration error, raised before any I/O."""
    with pytest.raises(tether.ConfigError):
        WebSocket("ws://127.0.0.1:1/ws", auth_message=AuthMessage())


def test_credentials_over_plain_ws_to_a_remote_host_are_refused() -> None:
    """A credential over ws:// to a non-loopback host is refused unless allowed by name."""
    with pytest.raises(tether.ConfigError, match="plain ws"):
        WebSocket("ws://api.example.com/ws", auth=tether.auth.Bearer("t"))
    WebSocket("ws://api.example.com/ws", auth=tether.auth.Bearer("t"), allow_insecure_http=True)
    WebSocket("wss://api.example.com/ws", auth=tether.auth.Bearer("t"))


# -- heartbeat ------------------------------------------------------------------------------


def silent(request: web.Request, ws: web.WebSocketResponse, server: StreamServer) -> Any:
    """A server that neither answers pings nor sends anything: a dead peer."""
    return read_messages(ws, server)


async def test_dead_connection_is_detected_and_replaced(stream_server: StreamServer) -> None:
    """When pings go unanswered the link is declared dead and a new one is opened."""
    disconnects: list[Disconnect] = []
    stream_server.on_ws(silent, send_then_hold({"alive": True}))
    ws = make(
        stream_server,
        url=stream_server.ws_url + "?autoping=off",
        heartbeat=0.05,
        heartbeat_timeout=0.05,
        close_timeout=0.1,
        on_disconnect=disconnects.append,
    )
    async with ws:
        assert await take(ws, 1) == [{"alive": True}]
    assert "heartbeat" in disconnects[0].reason
    assert disconnects[0].will_reconnect


async def test_heartbeat_keeps_a_live_quiet_link(stream_server: StreamServer) -> None:
    """A quiet server that answers pings is never declared dead."""
    stream_server.on_ws(silent)
    async with make(stream_server, heartbeat=0.05, heartbeat_timeout=0.25) as ws:
        await asyncio.sleep(0.6)  # real time is the point: several heartbeat rounds pass
        assert ws.connected
        assert ws.stats().connections == 1


# -- overflow -------------------------------------------------------------------------------


async def test_drop_oldest_keeps_the_newest(stream_server: StreamServer) -> None:
    """With DROP_OLDEST a full queue discards the oldest messages and counts them."""
    stream_server.on_ws(send_then_hold(*range(10)))
    async with make(stream_server, queue_size=3, overflow=Overflow.DROP_OLDEST) as ws:
        await eventually(lambda: ws.stats().received == 10)
        assert await take(ws, 3) == [7, 8, 9]
        assert ws.stats().dropped == 7


async def test_block_loses_nothing(stream_server: StreamServer) -> None:
    """With BLOCK a slow consumer gets every message, in order."""
    stream_server.on_ws(send_then_hold(*range(200)))
    async with make(stream_server, queue_size=2, overflow=Overflow.BLOCK) as ws:
        await eventually(lambda: len(ws._queue) == 2)
        assert await take(ws, 200) == list(range(200))
        assert ws.stats().dropped == 0


async def test_disconnect_policy_reconnects_on_overflow(stream_server: StreamServer) -> None:
    """With DISCONNECT a full queue closes the link; once the consumer has caught up the
    stream reconnects."""
    disconnects: list[Disconnect] = []
    stream_server.on_ws(send_then_hold(*range(5)), send_then_hold({"fresh": True}))
    ws = make(
        stream_server, queue_size=2, overflow=Overflow.DISCONNECT, on_disconnect=disconnects.append
    )
    async with ws:
        await eventually(lambda: ws.state is StreamState.WAITING)
        for _ in range(100):  # the stream holds off while the consumer has not caught up
            await asyncio.sleep(0)
        assert (ws.stats().overflows, len(stream_server.sockets)) == (1, 1)
        assert await take(ws, 3) == [0, 1, {"fresh": True}]
        assert (ws.stats().overflows, ws.stats().connections) == (1, 2)
    assert "queue full" in disconnects[0].reason
    assert disconnects[0].overflow


# -- lifecycle ------------------------------------------------------------------------------


async def test_close_cancels_every_task_and_ends_iteration(stream_server: StreamServer) -> None:
    """close() leaves no task behind, closes the socket with 1000 and ends iteration."""
    before = asyncio.all_tasks()
    stream_server.on_ws(send_then_hold())
    ws = make(stream_server, heartbeat=10.0, on_message=lambda m: None)
    await ws.connect()
    started = {t for t in asyncio.all_tasks() - before if t.get_name().startswith("tether-ws")}
    assert len(started) == 3  # supervisor, heartbeat, dispatcher
    await ws.close()
    await ws.close()  # idempotent
    assert all(task.done() for task in started)
    assert not any(t.get_name().startswith("tether-ws") for t in asyncio.all_tasks())
    await eventually(lambda: stream_server.sockets[0].closed)
    assert stream_server.sockets[0].close_code == 1000
    assert ws.state is StreamState.CLOSED
    plain = make(stream_server)
    async with plain:
        pass
    with pytest.raises(StopAsyncIteration):
        await anext(plain)
    with pytest.raises(tether.ConfigError):
        await plain.start()


async def test_secrets_never_leak(
    stream_server: StreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Canary: a query-string key never shows in reprs, log lines or errors, causes included."""
    secret = "canary-query-key-77aa"
    caplog.set_level(logging.DEBUG)
    stream_server.refuse = [(503, {}), (503, {}), (400, {})]
    ws = make(stream_server, auth=tether.auth.ApiKey("apikey", secret, location="query"))
    with pytest.raises(tether.BadRequestError) as info:
        await ws.connect()
    chain: list[str] = []
    error: BaseException | None = info.value
    while error is not None:
        chain += [str(error), repr(error)]
        error = error.__cause__ or error.__context__
    texts = [*chain, repr(ws), caplog.text, str(info.value.request)]
    assert stream_server.queries[0] == {"apikey": secret}
    assert "apikey=" in info.value.request.redacted_url() if info.value.request else False
    assert all(secret not in text for text in texts)
