"""The default transport, on aiohttp: the fastest we measured (see bench/)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

import aiohttp

from tether._errors import (
    ConfigError,
    ConnectError,
    ConnectTimeout,
    NetworkError,
    ReadTimeout,
    RequestError,
)
from tether._models import DEFAULT_HEADERS, received_response
from tether.transports._base import scrub_exception

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["AiohttpTransport", "ssl_option"]

logger = logging.getLogger("tether")

VerifyTypes = bool | str | ssl.SSLContext

_UNSET = -1.0


def ssl_option(verify: VerifyTypes) -> bool | ssl.SSLContext:
    """aiohttp's `ssl=` for `verify=`: True, False, a CA bundle path, or an `SSLContext`."""
    if verify is True:
        return True
    if verify is False:
        return False
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"verify={verify!r} is not a readable CA bundle: {exc}") from exc
    raise ConfigError(
        f"verify must be a bool, a CA bundle path or an ssl.SSLContext, got {verify!r}"
    )


class AiohttpTransport:
    """Sends requests with one pooled `aiohttp.ClientSession`.

    Pass `session=` to share the application's session (Home Assistant's rule): the transport
    then never closes it. Redirects are not followed here: the client's redirect policy does
    it, so credentials never follow a redirect to another origin.
    """

    __slots__ = (
        "_limit",
        "_own_defaults",
        "_owns_session",
        "_session",
        "_ssl",
        "_timeout_connect",
        "_timeout_object",
        "_timeout_total",
    )

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        verify: VerifyTypes = True,
        max_connections: int = 100,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        # A session we create sends the default headers itself, so requests that carry just
        # those pass none and aiohttp skips merging them in; a lent session keeps its own.
        self._own_defaults = DEFAULT_HEADERS if session is None else None
        self._ssl = ssl_option(verify)
        self._limit = max_connections
        # The limits most attempts share (the client's defaults) and their ClientTimeout. Limits
        # are positive or None, so -1 matches no attempt until the first one fills these in.
        self._timeout_total: float | None = _UNSET
        self._timeout_connect: float | None = _UNSET
        self._timeout_object = aiohttp.ClientTimeout()

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl)
        # An API client should not carry cookies from one call into the next unasked.
        session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), headers=DEFAULT_HEADERS
        )
        # aiohttp silently resends an idempotent request once when a connection drops; the retry
        # policy already decides that, and a hidden extra send would escape its attempt count,
        # its log records and the retry budget.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session = session
        return session

    def _timeout(self, total: float | None, connect: float | None) -> aiohttp.ClientTimeout:
        # sock_connect bounds establishing a connection; `connect=` would also arm a timer
        # around every pool checkout, a cost on each request for a wait `total` bounds anyway.
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect)
        if self._timeout_total == _UNSET:
            self._timeout_total, self._timeout_connect = total, connect
            self._timeout_object = timeout
        return timeout

    async def send(self, request: Request) -> Response:
        session = self._session
        if session is None:
            session = self._open()
        total, connect = request.timeout, request.connect_timeout
        # Most attempts use the client's default limits: reuse that object, built once.
        if total == self._timeout_total and connect == self._timeout_connect:
            timeout = self._timeout_object
        else:
            timeout = self._timeout(total, connect)
        # The raw field, not the property: reading that would copy a shared read-only map.
        headers = request._headers
        try:
            # Awaited rather than entered with `async with`: leaving the block does release()
            # and wait_for_close(), and once the whole body is read the latter only releases
            # again. That is five coroutines per request saved; on a failure both still run.
            raw = await session.request(
                request.method,
                request.url,
                params=request.params,
                headers=headers if headers is not self._own_defaults else None,
                data=request.content,
                timeout=timeout,
                allow_redirects=False,
                # True defers to the connector, so a borrowed session keeps its own TLS setup.
                ssl=self._ssl,
            )
            try:
                body = await raw.read()
            except BaseException:
                raw.release()
                await raw.wait_for_close()
                raise
            raw.release()
        except RequestError:
            raise
        except Exception as exc:
            # aiohttp checks for a closed session before anything else; looking only now keeps
            # the check off the path of every request that succeeds.
            if session.closed:
                raise ConfigError(
                    "the aiohttp session given to the client has been closed"
                    if not self._owns_session
                    else "the client is closed; create a new one"
                ) from None
            mapped = _map_error(exc, request)
            if mapped is exc:
                raise
            raise mapped from exc
        return received_response(
            status=raw.status,
            headers=raw.headers,
            content=body,
            reason=raw.reason,
            # Redirects are not followed here, so this is the URL that answered.
            url=request.url,
            request=request,
        )

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None if self._owns_session else self._session


def _map_error(exc: Exception, request: Request) -> Exception:
    scrub_exception(exc, request.redactor)
    target = request.redacted_url()
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(
            f"connecting for {request.method} {target} timed out", request=request
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(
            f"cannot connect for {request.method} {target}: {exc.os_error}", request=request
        )
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return ReadTimeout(
            f"{request.method} {target} timed out waiting for the response", request=request
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return ConfigError(
            f"invalid URL for {request.method}: {request.redactor.url(str(exc.url))}"
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return NetworkError(
            f"{request.method} {target}: the response body was cut short ({exc})", request=request
        )
    if isinstance(exc, aiohttp.ClientError | OSError):
        return NetworkError(
            f"{request.method} {target} failed after sending: {type(exc).__name__}: {exc}",
            request=request,
        )
    return exc
