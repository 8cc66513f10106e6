"""`SSE`: a server-sent events client that resumes with `Last-Event-ID`.

WHATWG HTML §9.2 is followed where it speaks (parsing, `Last-Event-ID`, the `retry:` field,
204 meaning "stop"); where it leaves things to the user agent, tether's HTTP rules apply: a 429
or 503 is retried after its `Retry-After`, a 401 raises `AuthenticationError`, and backoff grows
between failed attempts. Iteration drives the I/O, so a slow consumer pushes back on the server
through TCP instead of filling memory.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp

from tether._clock import Clock, SystemClock
from tether._core._reconnect import (
    CloseAction,
    HandshakeVerdict,
    Reconnect,
    give_up_reason,
    handshake_verdict,
    reconnect_delay,
)
from tether._core._sse import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEParser, SSEProtocolError
from tether._errors import ConfigError, ConnectTimeout, NetworkError, ReadTimeout, TetherError
from tether._models import Request, Response
from tether._redact import Redactor
from tether._types import SecretLike
from tether.auth._base import Credential
from tether.streams._common import (
    Hook,
    call_hook,
    check_url,
    handshake_error,
    make_redactor,
    make_request,
)
from tether.streams._errors import StreamClosed, StreamProtocolError
from tether.streams._events import Disconnect, StreamState, StreamStats
from tether.transports._aiohttp import VerifyTypes, _map_error, ssl_option

__all__ = ["SSE"]

logger = logging.getLogger("tether.streams")

#: How much of a refused response's body is read for the error message.
_ERROR_BODY_LIMIT = 64 * 1024


class _Retry(Exception):
    def __init__(self, error: TetherError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class SSE:
    """A server-sent events stream that reconnects and resumes.

    ::

        async with tether.streams.SSE(url, auth=tether.auth.Bearer(token)) as events:
            async for event in events:
                print(event.event, event.id, event.json())

    Args:
        url: An `http://` or `https://` URL.
        auth: A `tether.auth` credential, applied to every (re)connection request.
        headers: Extra request headers.
        method: "GET" as EventSource does; APIs that stream answers to a POST use "POST".
        json: A JSON body (with `method="POST"`), sent again on each reconnect.
        session: An `aiohttp.ClientSession` to share; it is never closed by the stream.
        verify: TLS verification, as for `tether.Client`.
        allow_insecure_http: Allow credentials over plain http to a non-loopback host.
        last_event_id: Resume from this id on the first connection.
        reconnect: The reconnect policy, or None to end the stream when the response ends.
        open_timeout: Seconds to connect and receive the response head, per attempt.
        read_timeout: Seconds of silence (not even a comment line) after which the connection
            is presumed dead and reopened; None waits forever.
        max_event_size: Largest line or event data accepted, in characters.
        on_connect, on_disconnect, on_reconnect: Lifecycle hooks, as for `WebSocket`.
        secrets: Extra values to hide in logs and errors, beside the credential's own.
        clock: The time source for backoff waits; tests pass `tether.testing.FakeClock`.
        rand: Randomness for jitter.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: Credential | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        json: Any = None,
        session: aiohttp.ClientSession | None = None,
        verify: VerifyTypes = True,
        allow_insecure_http: bool = False,
        last_event_id: str = "",
        reconnect: Reconnect | None = Reconnect(),  # noqa: B008 - frozen value object
        open_timeout: float = 30.0,
        read_timeout: float | None = 300.0,
        max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
        on_connect: Callable[[], Awaitable[None] | None] | None = None,
        on_disconnect: Callable[[Disconnect], Awaitable[None] | None] | None = None,
        on_reconnect: Callable[[int, float], Awaitable[None] | None] | None = None,
        secrets: Sequence[SecretLike] = (),
        clock: Clock | None = None,
        rand: random.Random | None = None,
    ) -> None:
        if auth is not None and not isinstance(auth, Credential):
            raise ConfigError(f"auth must be a tether.auth credential, got {type(auth).__name__}")
        if reconnect is not None and not isinstance(reconnect, Reconnect):
            raise ConfigError(
                f"reconnect must be a tether.streams.Reconnect or None, got {reconnect!r}"
            )
        if open_timeout <= 0 or (read_timeout is not None and read_timeout <= 0):
            raise ConfigError("open_timeout and read_timeout must be positive numbers of seconds")
        if max_event_size < 1:
            raise ConfigError("max_event_size must be positive")
        if "\x00" in last_event_id or "\n" in last_event_id or "\r" in last_event_id:
            raise ConfigError("last_event_id cannot contain NULL, CR or LF")
        self._url = check_url(
            url,
            schemes=("http", "https"),
            auth=auth,
            allow_insecure=allow_insecure_http,
            secure_schemes=("https",),
        )
        self._auth = auth
        self._headers = dict(headers or {})
        self._method = method.upper()
        self._body = (
            jsonlib.dumps(json, separators=(",", ":")).encode() if json is not None else None
        )
        self._session = session
        self._owns_session = session is None
        self._ssl = ssl_option(verify)
        self._reconnect = reconnect
        self._open_timeout = open_timeout
        self._read_timeout = read_timeout
        self._max_event_size = max_event_size
        self._on_connect: Hook | None = on_connect
        self._on_disconnect: Hook | None = on_disconnect
        self._on_reconnect: Hook | None = on_reconnect
        self._redactor: Redactor = make_redactor(auth, secrets)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._random = rand if rand is not None else random.Random()
        self._state = StreamState.IDLE
        self._response: aiohttp.ClientResponse | None = None
        self._parser: SSEParser | None = None
        self._pending: deque[ServerSentEvent] = deque()
        self._last_event_id = last_event_id
        self._server_retry: int | None = None
        self._attempt = 0
        self._retry_after: float | None = None
        self._connected_at = 0.0
        self._ended = False
        self._error: BaseException | None = None
        self._last_error: BaseException | None = None
        self.last_disconnect: Disconnect | None = None
        self._connections = 0
        self._failed_attempts = 0
        self._received = 0

    # -- public surface -------------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def last_event_id(self) -> str:
        """The id a reconnect sends as `Last-Event-ID` (empty: none)."""
        parser = self._parser
        return parser.last_event_id if parser is not None else self._last_event_id

    @property
    def retry(self) -> float | None:
        """The reconnection time the server asked for with `retry:`, in seconds."""
        parser = self._parser
        millis = parser.retry if parser is not None and parser.retry is not None else None
        millis = millis if millis is not None else self._server_retry
        return millis / 1000.0 if millis is not None else None

    @property
    def error(self) -> BaseException | None:
        return self._error

    def stats(self) -> StreamStats:
        return StreamStats(
            connections=self._connections,
            failed_attempts=self._failed_attempts,
            received=self._received,
            invalid=0,
            duplicates=0,
            dropped=0,
            overflows=0,
        )

    async def connect(self, *, timeout: float | None = 30.0) -> None:
        """Open the first connection, retrying transient failures, within `timeout` seconds."""
        if self._ended:
            raise ConfigError("the stream is closed; create a new one")
        try:
            async with asyncio.timeout(timeout):
                await self._establish()
        except TimeoutError:
            last = self._last_error
            await self.close()
            raise ConnectTimeout(
                f"no event stream from {self._safe_url} within {timeout} s"
                + (f"; last failure: {last}" if last is not None else "")
            ) from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection; iteration then ends. Idempotent."""
        self._ended = True
        self._state = StreamState.CLOSED
        response, self._response = self._response, None
        if response is not None:
            response.close()
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def __aiter__(self) -> SSE:
        return self

    async def __anext__(self) -> ServerSentEvent:
        pending = self._pending
        while True:
            if pending:
                return pending.popleft()
            if self._ended:
                raise StopAsyncIteration
            response = self._response
            if response is None:
                try:
                    await self._establish()
                except BaseException as exc:
                    if not isinstance(exc, asyncio.CancelledError):
                        self._error = exc
                    await self.close()
                    raise
                continue
            await self._read(response)

    async def __aenter__(self) -> SSE:
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
        return f"<SSE {self._safe_url} {self._state.value}>"

    # -- internals ------------------------------------------------------------------------

    @property
    def _safe_url(self) -> str:
        return self._redactor.url(self._url)

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        parser = self._parser
        assert parser is not None  # noqa: S101 - set with the response
        try:
            async with asyncio.timeout(self._read_timeout):
                chunk = await response.content.readany()
        except TimeoutError:
            await self._drop(
                f"no data for {self._read_timeout:g} s; the connection is presumed dead",
                ReadTimeout(f"event stream {self._safe_url} went silent"),
            )
            return
        except (aiohttp.ClientError, ConnectionError) as exc:
            if self._ended:
                return
            await self._drop(
                f"the connection failed ({type(exc).__name__})",
                NetworkError(f"event stream {self._safe_url} failed: {type(exc).__name__}"),
            )
            return
        if not chunk:
            if self._ended:
                return
            self._deliver(parser.close())
            # §9.2.3: when the response ends, the user agent reestablishes the connection.
            await self._drop("the server ended the response", None)
            return
        try:
            events = parser.feed(chunk)
        except SSEProtocolError as exc:
            error = StreamProtocolError(f"event stream {self._safe_url}: {exc}")
            self._error = error
            await self.close()
            raise error from None
        self._deliver(events)

    def _deliver(self, events: list[ServerSentEvent]) -> None:
        if events:
            self._received += len(events)
            self._pending.extend(events)

    async def _drop(self, reason: str, error: BaseException | None) -> None:
        response, self._response = self._response, None
        if response is not None:
            response.close()
        parser = self._parser
        if parser is not None:
            self._last_event_id = parser.last_event_id
            if parser.retry is not None:
                self._server_retry = parser.retry
        self._parser = None
        policy = self._reconnect
        action = CloseAction.RECONNECT if policy is not None else CloseAction.FAIL
        disconnect = Disconnect(code=None, reason=reason, action=action, error=error)
        self.last_disconnect = disconnect
        self._state = StreamState.WAITING
        logger.info("event stream %s disconnected: %s", self._safe_url, reason)
        await call_hook(self._on_disconnect, disconnect, what="on_disconnect")
        if policy is None:
            self._ended = True
            self._state = StreamState.CLOSED
            if error is not None:
                self._error = error
                raise error
            return
        if self._clock.monotonic() - self._connected_at >= policy.stable_after:
            self._attempt = 0
        self._attempt += 1
        self._retry_after = None
        self._last_error = error

    async def _establish(self) -> None:
        while not self._ended:
            if self._attempt:
                await self._wait_before()
            self._state = StreamState.CONNECTING
            try:
                response = await self._open()
            except _Retry as failure:
                self._failed_attempts += 1
                self._last_error = failure.error
                self._attempt += 1
                self._retry_after = failure.retry_after
                logger.warning("event stream attempt failed: %s", failure.error)
                continue
            if response is None:
                # 204 No Content: §9.2.3 says the client must stop reconnecting.
                logger.info("event stream %s: the server answered 204, ending", self._safe_url)
                self._ended = True
                self._state = StreamState.CLOSED
                return
            self._response = response
            self._parser = SSEParser(
                last_event_id=self._last_event_id, max_event_size=self._max_event_size
            )
            self._connections += 1
            self._connected_at = self._clock.monotonic()
            self._state = StreamState.CONNECTED
            logger.info("event stream %s connected", self._safe_url)
            await call_hook(self._on_connect, what="on_connect")
            return

    async def _wait_before(self) -> None:
        policy = self._reconnect
        attempt = self._attempt
        reason = (
            "reconnecting is disabled"
            if policy is None
            else give_up_reason(policy, attempt, retry_after=self._retry_after)
        )
        if reason is not None or policy is None:
            last = self._last_error
            if isinstance(last, Exception):
                last.add_note(reason or "")
                raise last
            raise StreamClosed(f"event stream {self._safe_url}: {reason}", code=None)
        server_retry = self._server_retry / 1000.0 if self._server_retry is not None else None
        delay = reconnect_delay(
            policy,
            attempt,
            rand=self._random.random(),
            retry_after=self._retry_after,
            server_retry=server_retry,
        )
        self._state = StreamState.WAITING
        logger.info(
            "event stream %s: reconnect attempt %d in %.2f s", self._safe_url, attempt, delay
        )
        await call_hook(self._on_reconnect, attempt, delay, what="on_reconnect")
        await self._clock.sleep(delay)

    async def _open(self) -> aiohttp.ClientResponse | None:
        """One attempt. The streaming response, None for 204, or `_Retry`; fatal errors raise."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        session = self._session
        headers = dict(self._headers)
        # §9.2.3: the request asks for an event stream and must not be served from a cache.
        headers.setdefault("Accept", "text/event-stream")
        headers.setdefault("Cache-Control", "no-store")
        if self._body is not None:
            headers.setdefault("Content-Type", "application/json")
        if self._last_event_id:
            # §9.2.3: a non-empty last event ID is sent back so the server can resume.
            headers["Last-Event-ID"] = self._last_event_id
        request = make_request(self._url, headers, self._redactor)
        request.method = self._method
        request.content = self._body
        streams: list[aiohttp.ClientResponse] = []

        async def fetch(attempt: Request) -> Response:
            # The credential's `next_`: it sees the real status (a token source renews once
            # after a 401), then the open stream is kept for reading.
            for earlier in streams:
                earlier.close()
            streams.clear()
            raw = await session.request(
                attempt.method,
                attempt.url,
                params=attempt.params,
                headers=attempt.headers,
                data=attempt.content,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self._open_timeout, sock_read=None
                ),
                ssl=self._ssl,
            )
            if raw.status == 200:
                streams.append(raw)
                return Response(200, headers=raw.headers, url=attempt.url, request=attempt)
            try:
                body = await raw.content.read(_ERROR_BODY_LIMIT)
            finally:
                raw.release()
            return Response(
                raw.status, headers=raw.headers, content=body, url=attempt.url, request=attempt
            )

        try:
            async with asyncio.timeout(self._open_timeout):
                if self._auth is not None:
                    response = await self._auth.send(request, fetch)
                else:
                    response = await fetch(request)
        except TimeoutError:
            raise _Retry(
                ConnectTimeout(
                    f"opening the event stream {self._safe_url} took over {self._open_timeout} s"
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
            self._redactor = request.redactor
        return self._verdict(response, streams, request)

    def _verdict(
        self, response: Response, streams: list[aiohttp.ClientResponse], request: Request
    ) -> aiohttp.ClientResponse | None:
        status = response.status
        if status == 200:
            stream = streams[-1]
            media_type = stream.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if media_type != "text/event-stream":
                stream.close()
                # §9.2.3: any other Content-Type fails the connection, without reconnecting.
                raise StreamProtocolError(
                    f"{self._safe_url} answered 200 with Content-Type {media_type or 'none'!r}, "
                    "not text/event-stream"
                )
            return stream
        for stream in streams:
            stream.close()
        if status == 204:
            return None
        error = handshake_error(
            status,
            response.headers,
            request,
            now_wall=self._clock.time(),
            body=response.content,
            prefix="event stream refused: ",
        )
        if handshake_verdict(status) is HandshakeVerdict.RETRY:
            raise _Retry(error, error.retry_after)
        raise error
