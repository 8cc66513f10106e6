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
from tether._models import Response
from tether.transports._base import scrub_exception

if TYPE_CHECKING:
    from tether._models import Request

__all__ = ["AiohttpTransport", "ssl_option"]

logger = logging.getLogger("tether")

VerifyTypes = bool | str | ssl.SSLContext


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
        "_default_timeout",
        "_limit",
        "_owns_session",
        "_session",
        "_ssl",
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
        self._ssl = ssl_option(verify)
        self._limit = max_connections
        self._default_timeout: tuple[float | None, float | None, aiohttp.ClientTimeout] | None = (
            None
        )

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl)
        # An API client should not carry cookies from one call into the next unasked.
        session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        # aiohttp silently resends an idempotent request once when a connection drops; the retry
        # policy already decides that, and a hidden extra send would escape its attempt count,
        # its log records and the retry budget.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session = session
        return session

    def _timeout(self, total: float | None, connect: float | None) -> aiohttp.ClientTimeout:
        # Most attempts use the client's default limits: reuse that object instead of building one.
        cached = self._default_timeout
        if cached is not None and cached[0] == total and cached[1] == connect:
            return cached[2]
        # sock_connect bounds establishing a connection; `connect=` would also arm a timer
        # around every pool checkout, a cost on each request for a wait `total` bounds anyway.
        timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect)
        if cached is None:
            self._default_timeout = (total, connect, timeout)
        return timeout

    async def send(self, request: Request) -> Response:
        session = self._session
        if session is None:
            session = self._open()
        elif session.closed:
            raise ConfigError("the aiohttp session given to the client has been closed")
        try:
            async with session.request(
                request.method,
                request.url,
                params=request.params,
                headers=request.headers,
                data=request.content,
                timeout=self._timeout(request.timeout, request.connect_timeout),
                allow_redirects=False,
                # True defers to the connector, so a borrowed session keeps its own TLS setup.
                ssl=self._ssl,
            ) as raw:
                body = await raw.read()
                return Response(
                    raw.status,
                    headers=raw.headers,
                    content=body,
                    reason=raw.reason,
                    # Redirects are not followed here, so this is the URL that answered.
                    url=request.url,
                    request=request,
                )
        except RequestError:
            raise
        except Exception as exc:
            mapped = _map_error(exc, request)
            if mapped is exc:
                raise
            raise mapped from exc

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
