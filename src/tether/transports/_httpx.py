"""An adapter for httpx and its fork httpx2, for applications that already build on them.

Both libraries share one API and exception tree, so one adapter serves either; pass the client
you have, or name the module and let the transport build and own one.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict, CIMultiDictProxy

from tether._errors import (
    ConfigError,
    ConnectError,
    ConnectTimeout,
    NetworkError,
    ReadTimeout,
    RequestError,
)
from tether._models import received_response
from tether.transports._aiohttp import VerifyTypes
from tether.transports._base import scrub_exception

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["HttpxTransport"]


def _import(module: str) -> ModuleType:
    if module not in ("httpx", "httpx2"):
        raise ConfigError(f"HttpxTransport works with 'httpx' or 'httpx2', not {module!r}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{module} is not installed: pip install 'tether[httpx]'") from exc


class HttpxTransport:
    """Sends requests through an `httpx.AsyncClient` or `httpx2.AsyncClient`.

    Redirects are left to the client's redirect policy (`follow_redirects=False` per request),
    so a lent client's own redirect setting does not apply.
    """

    __slots__ = ("_client", "_lib", "_owns_client")

    def __init__(
        self,
        client: Any = None,
        *,
        module: str = "httpx",
        verify: VerifyTypes = True,
        max_connections: int = 100,
    ) -> None:
        if client is not None:
            module = type(client).__module__.partition(".")[0]
        self._lib = _import(module)
        self._owns_client = client is None
        if client is None:
            client = self._lib.AsyncClient(
                verify=verify,
                limits=self._lib.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            )
        self._client = client

    async def send(self, request: Request) -> Response:
        lib = self._lib
        timeout = lib.Timeout(
            request.timeout, connect=request.connect_timeout, pool=request.connect_timeout
        )
        try:
            # httpx limits each read and write, not the exchange: a response that trickles in
            # could outlive the attempt. This bounds the whole attempt, as aiohttp's total does.
            async with asyncio.timeout(request.timeout):
                raw = await self._client.request(
                    request.method,
                    request.url,
                    params=request.params,
                    # The raw field: reading the property would copy a shared read-only map.
                    headers=list(request._headers.items()),
                    content=request.content,
                    timeout=timeout,
                    follow_redirects=False,
                )
        except RequestError:
            raise
        except TimeoutError as exc:
            raise ReadTimeout(
                f"{request.method} {request.redacted_url()} timed out waiting for the response",
                request=request,
            ) from exc
        except Exception as exc:
            mapped = self._map_error(exc, request)
            if mapped is exc:
                raise
            raise mapped from exc
        headers = CIMultiDictProxy(CIMultiDict(raw.headers.multi_items()))
        return received_response(
            status=raw.status_code,
            headers=headers,
            content=raw.content,
            reason=raw.reason_phrase,
            url=request.url,
            request=request,
        )

    def _map_error(self, exc: Exception, request: Request) -> Exception:
        lib = self._lib
        scrub_exception(exc, request.redactor)
        target = f"{request.method} {request.redacted_url()}"
        # The pool timeout fires before the request is written: as safe as a connect timeout.
        if isinstance(exc, lib.ConnectTimeout | lib.PoolTimeout):
            return ConnectTimeout(f"connecting for {target} timed out", request=request)
        if isinstance(exc, lib.ConnectError):
            return ConnectError(f"cannot connect for {target}: {exc}", request=request)
        if isinstance(exc, lib.TimeoutException):
            return ReadTimeout(f"{target} timed out waiting for the response", request=request)
        if isinstance(exc, lib.InvalidURL | lib.UnsupportedProtocol | lib.LocalProtocolError):
            return ConfigError(f"{target}: {exc}")
        if isinstance(exc, lib.TransportError | lib.DecodingError):
            return NetworkError(
                f"{target} failed after sending: {type(exc).__name__}: {exc}", request=request
            )
        return exc

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
