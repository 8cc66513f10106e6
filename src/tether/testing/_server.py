"""The socket way to run a `MockAPI`: an aiohttp server on loopback whose faults are real.

A reset is a TCP RST (SO_LINGER 0), an empty response a clean close with no byte sent, a
truncated body a Content-Length that the connection does not live up to. Waits here are real
seconds: the client's own socket timers are real too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from aiohttp import web

from tether._errors import ConfigError
from tether.testing._faults import EmptyResponse, Hang, Reset
from tether.testing._match import MockRequest

if TYPE_CHECKING:
    from tether.testing._mockapi import MockAPI
    from tether.testing._reply import Outcome

__all__ = ["MockServer", "build_app"]

# aiohttp computes these itself from the body it sends; a stub's copy would contradict it.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


def _reset(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns close() into an RST: the peer sees "connection reset", not EOF.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Shutdown:
    """Set when the server stops, so hanging handlers end with it."""

    def __init__(self) -> None:
        self.event = asyncio.Event()


def build_app(
    api: MockAPI,
    *,
    client_max_size: int = 64 * 1024 * 1024,
    routes: Iterable[web.AbstractRouteDef] = (),
) -> web.Application:
    """An aiohttp application that answers every path through `api.handle`.

    `routes` (aiohttp route definitions, e.g. `web.get("/ws", handler)`) are served first and
    bypass the mock: they are for what a `Reply` cannot express, such as a WebSocket.
    """
    shutdown = _Shutdown()
    app = web.Application(client_max_size=client_max_size)
    # Registered before the catch-all below, which would otherwise answer their paths.
    app.router.add_routes(routes)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        incoming = MockRequest.build(
            request.method,
            str(request.url),
            path=request.path,
            query_string=request.query_string,
            headers=list(request.headers.items()),
            body=body,
        )
        outcome = await api.handle(incoming)
        return await _deliver(request, outcome, api.hang_limit, shutdown.event)

    async def on_shutdown(_: web.Application) -> None:
        shutdown.event.set()

    app.on_shutdown.append(on_shutdown)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


async def _wait(seconds: float, stop: asyncio.Event) -> None:
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _deliver(
    request: web.Request, outcome: Outcome, hang_limit: float, stop: asyncio.Event
) -> web.StreamResponse:
    await _wait(outcome.delay, stop)
    fault = outcome.disconnect
    if isinstance(fault, Hang):
        await _wait(hang_limit, stop)
        _reset(request)
        return web.Response()
    if isinstance(fault, EmptyResponse):
        if request.transport is not None:
            request.transport.close()
        return web.Response()
    if isinstance(fault, Reset) and not fault.after_headers:
        _reset(request)
        return web.Response()
    headers = [(n, v) for n, v in outcome.headers if n.lower() not in _HOP_HEADERS]
    body = outcome.body
    if outcome.malformed:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            # WireMock announces gzip when the client accepts it; so do we, to stay identical.
            headers.append(("Content-Encoding", "gzip"))
        response = web.StreamResponse(status=outcome.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        # The headers go out alone, as Jetty sends them: clients react differently when the
        # garbage arrives in the same read as the headers.
        await asyncio.sleep(0.02)
        if request.transport is not None:
            # Not a hex chunk size: the framing is broken from the first byte of the body.
            request.transport.write(b"lskdu018973t09sylgasjkfg1][]'./.sdlv")
            request.transport.close()
        return response
    truncate = outcome.truncate
    cut = isinstance(fault, Reset) or (truncate is not None and truncate.keep < len(body))
    if not cut and outcome.drip is None:
        return web.Response(status=outcome.status, headers=headers, body=body)
    response = web.StreamResponse(status=outcome.status, headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    if isinstance(fault, Reset):
        _reset(request)
        return response
    if truncate is not None and truncate.keep < len(body):
        if truncate.keep:
            await response.write(body[: truncate.keep])
        # A clean close (FIN) after a short body: the client sees the length mismatch.
        if request.transport is not None:
            request.transport.close()
        return response
    drip = outcome.drip
    assert drip is not None  # noqa: S101 - narrowed by the checks above
    size = max(1, -(-len(body) // drip.chunks))
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    pause = drip.duration / max(1, len(pieces))
    for piece in pieces:
        await _wait(pause, stop)
        if piece:
            await response.write(piece)
    await response.write_eof()
    return response


class MockServer:
    """A `MockAPI` served over real loopback sockets; use as `async with api.serve() as s`."""

    def __init__(
        self,
        api: MockAPI,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        routes: Iterable[web.AbstractRouteDef] = (),
    ) -> None:
        self.api = api
        self.host = host
        self.port = port
        self.routes = tuple(routes)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        if self._runner is None:
            raise ConfigError("the mock server is not running; use `async with api.serve()`")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> MockServer:
        if self._runner is not None:
            return self
        runner = web.AppRunner(
            build_app(self.api, routes=self.routes), access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MockServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._runner is not None else "stopped"
        return f"<MockServer {where} {self.api!r}>"
