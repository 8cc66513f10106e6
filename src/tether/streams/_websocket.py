"""`WebSocket`: a JSON WebSocket client on aiohttp that reconnects, re-authenticates and
replays its subscriptions, so a consumer sees one stream however often the link drops.

Decisions (close-code policy, handshake verdicts, backoff) live in `tether._core._reconnect`;
this module measures, waits and moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from tether._clock import Clock, SystemClock
from tether._core._dedupe import DedupeWindow
from tether._core._reconnect import (
    CloseAction,
    HandshakeVerdict,
    Reconnect,
    close_action,
    close_code_name,
    give_up_reason,
    handshake_verdict,
    reconnect_delay,
)
from tether._errors import (
    ConfigError,
    ConnectTimeout,
    NetworkError,
    ReadTimeout,
    ReauthRequired,
    TetherError,
)
from tether._models import Request, Response
from tether._redact import Redactor
from tether._types import SecretLike
from tether.auth._base import Credential
from tether.streams._common import (
    Hook,
    MessageQueue,
    QueueOverflow,
    call_hook,
    check_url,
    handshake_error,
    make_redactor,
    make_request,
)
from tether.streams._errors import MessageTooBig, NotConnected, StreamClosed
from tether.streams._events import Disconnect, Overflow, StreamState, StreamStats
from tether.transports._aiohttp import VerifyTypes, _map_error, ssl_option

__all__ = ["AuthMessage", "Subscription", "WebSocket"]

logger = logging.getLogger("tether.streams")

#: aiohttp's own default, large enough for the JSON feeds this client is for.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024

_DEFAULT_AUTH_MESSAGE: Mapping[str, Any] = MappingProxyType(
    {"type": "auth", "access_token": "{token}"}
)

#: Close codes after which the end of the stream is not an error when reconnecting is off.
_CLEAN_CODES = frozenset({1000, 1001})


def _fill(template: Any, token: str) -> Any:
    if isinstance(template, str):
        return template.replace("{token}", token)
    if isinstance(template, Mapping):
        return {key: _fill(value, token) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [_fill(value, token) for value in template]
    return template


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthMessage:
    """First-message authentication, as Home Assistant, Deribit and many trading APIs use.

    After the upgrade, `message` is sent with every `"{token}"` in its strings replaced by the
    credential's token; the stream then waits up to `timeout` seconds for a reply whose
    `type_field` is in `ok` (authenticated) or in `failed` (`AuthenticationError`, and the
    stream stops). Other replies before the verdict (say `auth_required`) are skipped.

    The token is what the `auth=` credential puts on a request: the `Authorization` header's
    value without its `Bearer ` scheme, or else the one header or query parameter it sets.
    """

    message: Mapping[str, Any] = field(default_factory=lambda: _DEFAULT_AUTH_MESSAGE)
    type_field: str = "type"
    ok: frozenset[str] = frozenset({"auth_ok", "authenticated", "auth_success"})
    failed: frozenset[str] = frozenset({"auth_invalid", "auth_failed", "unauthorized", "error"})
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.message, Mapping):
            raise ConfigError("AuthMessage.message must be a mapping (a JSON object)")
        if self.timeout <= 0:
            raise ConfigError("AuthMessage.timeout must be a positive number of seconds")
        object.__setattr__(self, "ok", frozenset(self.ok))
        object.__setattr__(self, "failed", frozenset(self.failed))


class Subscription:
    """A message the stream sends on every connection until `unsubscribe()`.

    `message` may be a callable, evaluated at each send: a subscription can then carry a resume
    point (`lambda: {"op": "subscribe", "since": last_seen}`).
    """

    __slots__ = ("_message", "_sent_on", "_stream", "_unsubscribe", "active")

    def __init__(self, stream: WebSocket, message: Any, unsubscribe: Any) -> None:
        self._stream = stream
        self._message = message
        self._unsubscribe = unsubscribe
        #: The connection this subscription was last sent on (0: none yet).
        self._sent_on = 0
        self.active = True

    def render(self) -> Any:
        """The message as it would be sent now."""
        return self._message() if callable(self._message) else self._message

    async def unsubscribe(self) -> None:
        """Stop replaying; send the unsubscribe message now if one was given and a link is up."""
        if not self.active:
            return
        self.active = False
        await self._stream._forget(self)

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return f"<Subscription {state}>"


class _Connection:
    """Per-connection facts the reader and the heartbeat share."""

    __slots__ = ("alive", "dead_reason", "id")

    def __init__(self, connection_id: int) -> None:
        self.id = connection_id
        #: Set on every frame; the heartbeat clears it and judges the link by it.
        self.alive = True
        self.dead_reason: str | None = None

    def heard(self) -> bool:
        """Whether any frame arrived since `alive` was last cleared."""
        return self.alive


class _Retry(Exception):
    """An attempt failed in a way the next attempt may not: wait and try again."""

    def __init__(self, error: TetherError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class WebSocket:
    """A JSON WebSocket that stays connected.

    Use it as an async context manager; iterate it for messages, or pass `on_message`::

        async with tether.streams.WebSocket(url, auth=tether.auth.Bearer(token)) as ws:
            await ws.subscribe({"op": "subscribe", "channel": "trades"})
            async for message in ws:
                ...

    Args:
        url: A `ws://` or `wss://` URL (`http(s)://` is accepted too).
        auth: A `tether.auth` credential. It applies itself to the opening handshake (headers
            or query), unless `auth_message` asks for first-message authentication.
        auth_message: Authenticate with a first message instead of the handshake.
        headers: Extra handshake headers.
        protocols: Subprotocols to offer.
        session: An `aiohttp.ClientSession` to share; it is never closed by the stream.
        verify: TLS verification, as for `tether.Client`.
        allow_insecure_http: Allow credentials over `ws://` to a non-loopback host.
        heartbeat: Seconds of silence after which a ping is sent; None disables it.
        heartbeat_timeout: Seconds to wait for any frame after that ping before the link is
            declared dead and reconnected (default: `heartbeat`).
        open_timeout: Seconds for the TCP, TLS and HTTP upgrade of one attempt.
        close_timeout: Seconds to wait for the server's close frame when closing.
        reconnect: The reconnect policy, or None to end the stream when the link drops.
        close_codes: Overrides of the close-code policy (`tether.streams.CLOSE_CODE_ACTIONS`).
        max_message_size: Largest message accepted; a larger one closes with 1009 and raises
            `MessageTooBig`.
        queue_size: Messages held between the socket and the consumer.
        overflow: What happens when that queue is full.
        loads, dumps: JSON codec (e.g. orjson's); `loads` receives str or bytes.
        dedupe_key: Returns a message's id (or None); a message whose id was seen within the
            last `dedupe_window` ids is skipped. Replays after a reconnect then cause no
            duplicates as long as the server replays fewer than `dedupe_window` messages.
        dedupe_window: How many ids are remembered.
        on_message: Called with each message instead of iterating (sync or async).
        on_connect: Called after each connection is up, authenticated and resubscribed.
        on_disconnect: Called with a `Disconnect` when a connection ends.
        on_reconnect: Called with (attempt, delay) before each wait to reconnect.
        secrets: Extra values to hide in logs and errors, beside the credential's own.
        clock: The time source for backoff waits; tests pass `tether.testing.FakeClock`.
        rand: Randomness for jitter (tests pass a seeded `random.Random`).
    """

    def __init__(  # noqa: PLR0915 - one validation per public option
        self,
        url: str,
        *,
        auth: Credential | None = None,
        auth_message: AuthMessage | None = None,
        headers: Mapping[str, str] | None = None,
        protocols: Sequence[str] = (),
        session: aiohttp.ClientSession | None = None,
        verify: VerifyTypes = True,
        allow_insecure_http: bool = False,
        heartbeat: float | None = 20.0,
        heartbeat_timeout: float | None = None,
        open_timeout: float = 10.0,
        close_timeout: float = 5.0,
        reconnect: Reconnect | None = Reconnect(),  # noqa: B008 - frozen value object
        close_codes: Mapping[int, CloseAction] | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        queue_size: int = 1024,
        overflow: Overflow = Overflow.BLOCK,
        loads: Callable[[str | bytes], Any] = json.loads,
        dumps: Callable[[Any], str] = json.dumps,
        dedupe_key: Callable[[Any], Hashable | None] | None = None,
        dedupe_window: int = 10_000,
        on_message: Callable[[Any], Awaitable[None] | None] | None = None,
        on_connect: Callable[[], Awaitable[None] | None] | None = None,
        on_disconnect: Callable[[Disconnect], Awaitable[None] | None] | None = None,
        on_reconnect: Callable[[int, float], Awaitable[None] | None] | None = None,
        secrets: Sequence[SecretLike] = (),
        clock: Clock | None = None,
        rand: random.Random | None = None,
    ) -> None:
        if auth is not None and not isinstance(auth, Credential):
            raise ConfigError(f"auth must be a tether.auth credential, got {type(auth).__name__}")
        if auth_message is not None and auth is None:
            raise ConfigError("auth_message needs auth=: the credential that supplies the token")
        if reconnect is not None and not isinstance(reconnect, Reconnect):
            raise ConfigError(
                f"reconnect must be a tether.streams.Reconnect or None, got {reconnect!r}"
            )
        for name, value in (("heartbeat", heartbeat), ("heartbeat_timeout", heartbeat_timeout)):
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds or None")
        if open_timeout <= 0 or close_timeout <= 0:
            raise ConfigError("open_timeout and close_timeout must be positive numbers of seconds")
        if queue_size < 1:
            raise ConfigError("queue_size must be at least 1")
        if max_message_size < 0:
            raise ConfigError("max_message_size must not be negative (0 disables the limit)")
        if not isinstance(overflow, Overflow):
            raise ConfigError(f"overflow must be a tether.streams.Overflow, got {overflow!r}")
        if dedupe_window < 1:
            raise ConfigError("dedupe_window must be at least 1")
        self._url = check_url(
            url,
            schemes=("ws", "wss", "http", "https"),
            auth=auth,
            allow_insecure=allow_insecure_http,
            secure_schemes=("wss", "https"),
        )
        self._auth = auth
        self._auth_message = auth_message
        self._headers = dict(headers or {})
        self._protocols = tuple(protocols)
        self._session = session
        self._owns_session = session is None
        self._ssl = ssl_option(verify)
        self._heartbeat = heartbeat
        self._heartbeat_timeout = heartbeat_timeout if heartbeat_timeout is not None else heartbeat
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._reconnect = reconnect
        self._close_codes = dict(close_codes) if close_codes else None
        self._max_message_size = max_message_size
        self._queue: MessageQueue[Any] = MessageQueue(queue_size, overflow)
        self._queue_size = queue_size
        self._loads = loads
        self._dumps = dumps
        self._dedupe_key = dedupe_key
        self._dedupe = DedupeWindow(dedupe_window) if dedupe_key is not None else None
        self._on_message = on_message
        self._on_connect: Hook | None = on_connect
        self._on_disconnect: Hook | None = on_disconnect
        self._on_reconnect: Hook | None = on_reconnect
        self._redactor: Redactor = make_redactor(auth, secrets)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._random = rand if rand is not None else random.Random()
        self._state = StreamState.IDLE
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._subscriptions: list[Subscription] = []
        self._connection_id = 0
        self._replayed_on = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._closing = False
        self._error: BaseException | None = None
        self._last_error: BaseException | None = None
        self.last_disconnect: Disconnect | None = None
        self._connections = 0
        self._failed_attempts = 0
        self._received = 0
        self._invalid = 0
        self._duplicates = 0
        self._overflows = 0

    # -- public surface -------------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is StreamState.CONNECTED

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the stream, if one did."""
        return self._error

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    def stats(self) -> StreamStats:
        return StreamStats(
            connections=self._connections,
            failed_attempts=self._failed_attempts,
            received=self._received,
            invalid=self._invalid,
            duplicates=self._duplicates,
            dropped=self._queue.dropped,
            overflows=self._overflows,
        )

    async def start(self) -> None:
        """Start connecting in the background and return at once. Idempotent."""
        if self._supervisor is not None:
            return
        if self._closing:
            raise ConfigError("the stream is closed; create a new one")
        self._changed = asyncio.Event()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        self._supervisor = asyncio.create_task(self._run(), name=f"tether-ws {self._safe_url}")
        if self._on_message is not None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="tether-ws-dispatch")

    async def connect(self, *, timeout: float | None = 30.0) -> None:
        """Start, and return once the first connection is up (authenticated, resubscribed).

        Transient failures are retried under the reconnect policy meanwhile. Raises the error
        that stopped the stream, or `ConnectTimeout` after `timeout` seconds (the stream is
        then closed, so nothing keeps running behind the caller's back).
        """
        await self.start()
        try:
            async with asyncio.timeout(timeout):
                # Done once a connection was made, even if it has already ended again: what
                # it delivered is queued, and how it ended is for the consumer to see.
                while self._connections == 0:
                    if self._supervisor is None or self._supervisor.done():
                        break
                    assert self._changed is not None  # noqa: S101 - set by start()
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            last = self._last_error
            await self.close()
            raise ConnectTimeout(
                f"no WebSocket connection to {self._safe_url} within {timeout} s"
                + (f"; last failure: {last}" if last is not None else "")
            ) from None
        if self._connections == 0:
            error = self._error
            await self.close()
            if error is not None:
                raise error
            raise StreamClosed(f"the WebSocket to {self._safe_url} ended", code=None)

    async def send(self, message: Any) -> None:
        """Send one JSON message on the current connection; `NotConnected` if there is none."""
        ws = self._ws
        if ws is None or ws.closed or self._state is not StreamState.CONNECTED:
            raise NotConnected(f"no open WebSocket to {self._safe_url}; nothing was sent")
        try:
            await ws.send_str(self._dumps(message))
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise NotConnected(
                f"the WebSocket to {self._safe_url} closed while sending ({type(exc).__name__})"
            ) from None

    async def subscribe(self, message: Any, *, unsubscribe: Any = None) -> Subscription:
        """Send `message` now (when connected) and again after every reconnect.

        `unsubscribe` is sent by `Subscription.unsubscribe()`; like `message`, it may be a
        callable evaluated when it is sent.
        """
        if self._closing:
            raise ConfigError("the stream is closed; create a new one")
        subscription = Subscription(self, message, unsubscribe)
        self._subscriptions.append(subscription)
        ws = self._ws
        connection_id = self._connection_id
        # While a replay is running it will reach this subscription itself (it walks the live
        # list); sending here too would subscribe twice.
        if ws is not None and self._replayed_on == connection_id and not ws.closed:
            subscription._sent_on = connection_id
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await ws.send_str(self._dumps(subscription.render()))
        return subscription

    async def close(self) -> None:
        """Close the connection (code 1000) and cancel every task the stream started."""
        if self._closing and self._supervisor is None:
            return
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._close_timeout + 1.0):
                    await ws.close(code=1000)
        tasks = [t for t in (self._supervisor, self._dispatcher) if t is not None]
        self._supervisor = self._dispatcher = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._queue.end(self._error)
        self._state = StreamState.CLOSED
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._changed is not None:
            self._changed.set()

    async def wait_closed(self) -> None:
        """Wait until the stream stops; raises the error that stopped it, if any."""
        task = self._supervisor
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        if self._error is not None:
            raise self._error

    def __aiter__(self) -> WebSocket:
        if self._on_message is not None:
            raise ConfigError("this stream delivers to on_message; it cannot also be iterated")
        return self

    async def __anext__(self) -> Any:
        queue = self._queue
        # Fast path without a second coroutine: the reader fills the queue in batches.
        if queue._items and queue._putter is None:
            return queue._items.popleft()
        return await queue.get()

    async def __aenter__(self) -> WebSocket:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<WebSocket {self._safe_url} {self._state.value}>"

    # -- internals ------------------------------------------------------------------------

    @property
    def _safe_url(self) -> str:
        return self._redactor.url(self._url)

    def _set_state(self, state: StreamState) -> None:
        self._state = state
        if self._changed is not None:
            self._changed.set()

    async def _forget(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)
        message = subscription._unsubscribe
        ws = self._ws
        if message is None or ws is None or ws.closed:
            return
        rendered = message() if callable(message) else message
        with contextlib.suppress(ConnectionError, aiohttp.ClientError):
            await ws.send_str(self._dumps(rendered))

    async def _run(self) -> None:
        attempt = 0
        retry_after: float | None = None
        try:
            while True:
                if attempt:
                    await self._wait_before(attempt, retry_after)
                self._set_state(StreamState.CONNECTING)
                try:
                    ws = await self._open()
                except _Retry as failure:
                    self._failed_attempts += 1
                    self._last_error = failure.error
                    attempt += 1
                    retry_after = failure.retry_after
                    logger.warning("WebSocket attempt failed: %s", failure.error)
                    continue
                connected_at = self._clock.monotonic()
                disconnect = await self._serve(ws)
                if self._closing:
                    return
                self.last_disconnect = disconnect
                self._set_state(StreamState.WAITING)
                logger.info("WebSocket %s disconnected: %s", self._safe_url, disconnect.reason)
                await call_hook(self._on_disconnect, disconnect, what="on_disconnect")
                if self._stop_if_final(disconnect):
                    return
                if disconnect.overflow:
                    # Reconnecting into a full queue would only overflow again: let the
                    # consumer catch up to half first.
                    await self._queue.wait_room(self._queue_size // 2)
                policy = self._reconnect
                assert policy is not None  # noqa: S101 - _stop_if_final returns only with one
                if self._clock.monotonic() - connected_at >= policy.stable_after:
                    attempt = 0
                attempt += 1
                retry_after = None
                self._last_error = disconnect.error
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._closing:
                self._error = exc
                # The error reaches the caller; the log line is the notice, not the report.
                logger.error("WebSocket %s stopped: %s", self._safe_url, exc)  # noqa: TRY400
            self._queue.end(exc if not self._closing else None)
        finally:
            if self._state is not StreamState.CLOSED:
                self._set_state(StreamState.CLOSED)
            self._queue.end(self._error)

    def _stop_if_final(self, disconnect: Disconnect) -> bool:
        """Raise for a close that ends the stream with an error; True for a clean end."""
        code = disconnect.code
        text = f"the server closed the WebSocket to {self._safe_url}: {disconnect.reason}"
        if disconnect.action is CloseAction.REAUTH:
            raise ReauthRequired(text)
        if disconnect.action is CloseAction.FAIL:
            if code == 1009:
                raise MessageTooBig(text, code=code, reason=disconnect.reason)
            raise StreamClosed(text, code=code, reason=disconnect.reason)
        if self._reconnect is None:
            if code in _CLEAN_CODES:
                # Reconnecting is off and the server said goodbye properly: a clean end.
                return True
            raise StreamClosed(
                f"{text} (reconnecting is disabled)", code=code, reason=disconnect.reason
            )
        return False

    async def _wait_before(self, attempt: int, retry_after: float | None) -> None:
        policy = self._reconnect
        last = self._last_error
        reason = (
            "reconnecting is disabled"
            if policy is None
            else give_up_reason(policy, attempt, retry_after=retry_after)
        )
        if reason is not None or policy is None:
            if isinstance(last, Exception):
                last.add_note(reason or "")
                raise last
            raise StreamClosed(f"the WebSocket to {self._safe_url}: {reason}", code=None)
        delay = reconnect_delay(
            policy, attempt, rand=self._random.random(), retry_after=retry_after
        )
        self._set_state(StreamState.WAITING)
        logger.info("WebSocket %s: reconnect attempt %d in %.2f s", self._safe_url, attempt, delay)
        await call_hook(self._on_reconnect, attempt, delay, what="on_reconnect")
        await self._clock.sleep(delay)

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        """One attempt: upgrade, authenticate. Raises `_Retry` for what the next try may fix."""
        session = self._session
        assert session is not None  # noqa: S101 - opened by start()
        request = make_request(self._url, self._headers, self._redactor)
        opened: list[aiohttp.ClientWebSocketResponse] = []

        async def upgrade(attempt: Request) -> Response:
            # The credential's `next_`: it sees the real status, so a token source can renew
            # its token after a 401 and call again, exactly as in the HTTP pipeline.
            for earlier in opened:
                await earlier.close()
            opened.clear()
            try:
                async with asyncio.timeout(self._open_timeout):
                    ws = await session.ws_connect(
                        attempt.url,
                        params=attempt.params,
                        headers=attempt.headers,
                        protocols=self._protocols,
                        autoping=False,
                        autoclose=True,
                        heartbeat=None,
                        max_msg_size=self._max_message_size,
                        timeout=aiohttp.ClientWSTimeout(ws_close=self._close_timeout),
                        ssl=self._ssl,
                    )
            except aiohttp.WSServerHandshakeError as exc:
                return Response(
                    exc.status, headers=exc.headers or {}, url=attempt.url, request=attempt
                )
            opened.append(ws)
            return Response(101, url=attempt.url, request=attempt)

        use_headers = self._auth is not None and self._auth_message is None
        try:
            if use_headers:
                assert self._auth is not None  # noqa: S101
                response = await self._auth.send(request, upgrade)
            else:
                response = await upgrade(request)
        except TimeoutError:
            raise _Retry(
                ConnectTimeout(
                    f"opening the WebSocket to {self._safe_url} took over {self._open_timeout} s"
                )
            ) from None
        except TetherError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            mapped = _map_error(exc, request)
            if isinstance(mapped, TetherError):
                raise _Retry(mapped) from None
            raise
        finally:
            # The credential may have extended the redactor with a fresh token.
            self._redactor = request.redactor
        if response.status != 101:
            for ws in opened:
                await ws.close()
            error = handshake_error(
                response.status,
                response.headers,
                request,
                now_wall=self._clock.time(),
                prefix="WebSocket handshake refused: ",
            )
            if handshake_verdict(response.status) is HandshakeVerdict.RETRY:
                raise _Retry(error, error.retry_after)
            raise error
        ws = opened[-1]
        if self._auth_message is not None:
            try:
                await self._authenticate(ws, self._auth_message)
            except BaseException:
                await ws.close()
                raise
        return ws

    async def _token(self) -> str:
        auth = self._auth
        assert auth is not None  # noqa: S101 - checked in __init__
        captured: list[Request] = []

        async def capture(request: Request) -> Response:
            captured.append(request)
            return Response(200, request=request)

        request = make_request(self._url, None, self._redactor)
        await auth.send(request, capture)
        applied = captured[-1] if captured else request
        self._redactor = applied.redactor
        return _token_of(applied)

    async def _authenticate(self, ws: aiohttp.ClientWebSocketResponse, spec: AuthMessage) -> None:
        token = await self._token()
        request = make_request(self._url, None, self._redactor)
        try:
            await ws.send_str(self._dumps(_fill(spec.message, token)))
            async with asyncio.timeout(spec.timeout):
                while True:
                    msg = await ws.receive()
                    if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                        try:
                            reply = self._loads(msg.data)
                        except ValueError:
                            continue
                        kind = reply.get(spec.type_field) if isinstance(reply, dict) else None
                        if kind in spec.ok:
                            return
                        if kind in spec.failed:
                            raise handshake_error(
                                401,
                                {},
                                request,
                                now_wall=self._clock.time(),
                                body=msg.data if isinstance(msg.data, bytes) else msg.data.encode(),
                                prefix="WebSocket authentication refused: ",
                            )
                    elif msg.type is WSMsgType.PING:
                        await ws.pong(msg.data)
                    elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                        code = msg.data if msg.type is WSMsgType.CLOSE else ws.close_code
                        if close_action(code, self._close_codes) is CloseAction.REAUTH:
                            raise handshake_error(
                                401,
                                {},
                                request,
                                now_wall=self._clock.time(),
                                prefix=(
                                    "WebSocket authentication refused "
                                    f"(closed with {code} {close_code_name(code)}): "
                                ),
                            )
                        raise _Retry(
                            NetworkError(
                                f"the WebSocket to {self._safe_url} closed during "
                                f"authentication ({code} {close_code_name(code)})"
                            )
                        )
                    elif msg.type is WSMsgType.ERROR:
                        raise _Retry(
                            NetworkError(
                                f"the WebSocket to {self._safe_url} failed during authentication"
                            )
                        )
        except TimeoutError:
            raise _Retry(
                ReadTimeout(
                    f"no authentication verdict from {self._safe_url} within {spec.timeout} s"
                )
            ) from None
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise _Retry(
                NetworkError(
                    f"the WebSocket to {self._safe_url} failed during authentication "
                    f"({type(exc).__name__})"
                )
            ) from None

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> Disconnect:
        self._connection_id += 1
        connection = _Connection(self._connection_id)
        self._ws = ws
        watchdog = (
            asyncio.create_task(self._watchdog(ws, connection), name="tether-ws-heartbeat")
            if self._heartbeat is not None
            else None
        )
        try:
            await self._replay(ws, connection.id)
            self._connections += 1
            self._set_state(StreamState.CONNECTED)
            logger.info("WebSocket %s connected", self._safe_url)
            await call_hook(self._on_connect, what="on_connect")
            return await self._pump(ws, connection)
        finally:
            self._ws = None
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watchdog
            if not ws.closed:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._close_timeout + 1.0):
                        await ws.close()

    async def _replay(self, ws: aiohttp.ClientWebSocketResponse, connection_id: int) -> None:
        # Walk the live list by index, so a subscription added while this runs is sent too.
        subscriptions = self._subscriptions
        index = 0
        try:
            while index < len(subscriptions):
                subscription = subscriptions[index]
                index += 1
                if subscription._sent_on == connection_id or not subscription.active:
                    continue
                subscription._sent_on = connection_id
                await ws.send_str(self._dumps(subscription.render()))
        except (ConnectionError, aiohttp.ClientError):
            # The link died mid-replay; the reader sees the close and the next connection
            # replays everything again.
            return
        self._replayed_on = connection_id

    async def _pump(
        self, ws: aiohttp.ClientWebSocketResponse, connection: _Connection
    ) -> Disconnect:
        # The hot loop: locals instead of attribute lookups, one branch per frame type.
        queue = self._queue
        items = queue._items
        maxsize = self._queue_size
        loads = self._loads
        key_of = self._dedupe_key
        dedupe = self._dedupe
        receive = ws.receive
        text, binary = WSMsgType.TEXT, WSMsgType.BINARY
        while True:
            msg = await receive()
            connection.alive = True
            kind = msg.type
            if kind is text or kind is binary:
                try:
                    data = loads(msg.data)
                except ValueError as exc:
                    self._invalid += 1
                    logger.warning(
                        "WebSocket %s: skipped a message that is not JSON (%s): %s",
                        self._safe_url,
                        type(exc).__name__,
                        self._redactor.text(_excerpt(msg.data)),
                    )
                    continue
                if key_of is not None and dedupe is not None:
                    key = key_of(data)
                    if key is not None and dedupe.seen(key):
                        self._duplicates += 1
                        continue
                # Inlined `queue.offer`: this line runs once per message.
                if len(items) < maxsize:
                    items.append(data)
                    if queue._getter is not None:
                        queue._wake_getter()
                    self._received += 1
                    continue
                try:
                    await queue.put(data)
                    self._received += 1
                except QueueOverflow:
                    self._overflows += 1
                    reason = "receive queue full (overflow policy: disconnect)"
                    await ws.close(code=1001, message=b"client receive queue full")
                    return Disconnect(
                        code=None, reason=reason, action=CloseAction.RECONNECT, overflow=True
                    )
            elif kind is WSMsgType.PING:
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    await ws.pong(msg.data)
            elif kind is WSMsgType.PONG:
                continue
            else:
                return self._ended(ws, msg, connection)

    def _ended(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        msg: aiohttp.WSMessage,
        connection: _Connection,
    ) -> Disconnect:
        if connection.dead_reason is not None:
            return Disconnect(
                code=None,
                reason=connection.dead_reason,
                action=CloseAction.RECONNECT,
                error=NetworkError(f"WebSocket {self._safe_url}: {connection.dead_reason}"),
            )
        error: BaseException | None = None
        if msg.type is WSMsgType.CLOSE:
            code: int | None = msg.data
            said = self._redactor.text(str(msg.extra or ""))
        else:
            code = ws.close_code
            said = ""
            if msg.type is WSMsgType.ERROR and isinstance(msg.data, BaseException):
                error = msg.data
                said = self._redactor.text(f"{type(error).__name__}: {error}")
                if isinstance(error, aiohttp.WebSocketError) and error.code == 1009:
                    code = 1009
        if code == 1006 and msg.type is not WSMsgType.CLOSE:
            # aiohttp reports a dropped TCP connection as 1006; say so in plain words.
            code = None
        name = close_code_name(code)
        reason = f"{code} {name}" if code is not None else name
        if said:
            reason = f"{reason}: {said}"
        action = close_action(code, self._close_codes)
        if error is not None and not isinstance(error, TetherError):
            error = NetworkError(f"WebSocket {self._safe_url}: {reason}")
        return Disconnect(code=code, reason=reason, action=action, error=error)

    async def _watchdog(self, ws: aiohttp.ClientWebSocketResponse, connection: _Connection) -> None:
        # Real time, not the Clock: this races a real socket, and virtual time would declare
        # every live link dead. Judgement is suspended while the consumer holds the reader
        # back (Overflow.BLOCK with a full queue): silence then is ours, not the server's.
        interval = self._heartbeat
        timeout = self._heartbeat_timeout
        assert interval is not None  # noqa: S101 - the watchdog runs only with a heartbeat
        assert timeout is not None  # noqa: S101
        queue = self._queue
        while not ws.closed:
            connection.alive = False
            await asyncio.sleep(interval)
            if connection.heard() or queue.full:
                continue
            try:
                await ws.ping()
            except (ConnectionError, aiohttp.ClientError):
                return
            await asyncio.sleep(timeout)
            if connection.heard() or queue.full:
                continue
            connection.dead_reason = (
                f"no pong or other frame from the server for {interval + timeout:g} s "
                "(heartbeat); the link is presumed dead"
            )
            logger.warning("WebSocket %s: %s", self._safe_url, connection.dead_reason)
            await ws.close(code=1001, message=b"heartbeat timeout")
            return

    async def _dispatch(self) -> None:
        callback = self._on_message
        assert callback is not None  # noqa: S101
        queue = self._queue
        while True:
            try:
                message = await queue.get()
            except (StopAsyncIteration, Exception):
                return
            await call_hook(callback, message, what="on_message")


def _excerpt(data: Any, limit: int = 200) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    return text if len(text) <= limit else text[:limit] + "..."


def _token_of(request: Request) -> str:
    """The secret a credential put on `request`, for a first-message handshake."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, rest = authorization.partition(" ")
        # RFC 6750 §2.1: the token follows the "Bearer" scheme name.
        return rest if scheme.lower() == "bearer" and rest else authorization
    for name, value in request.headers.items():
        if name.lower() != "user-agent":
            return value
    if request.params:
        return request.params[-1][1]
    raise ConfigError("the credential put no header or parameter on the request to use as a token")
