"""Shared fixtures: a real aiohttp server on loopback whose routes each test scripts."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    query_pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class LoopbackServer:
    """A real HTTP server on 127.0.0.1; tests add routes and read what it saw."""

    app: web.Application
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    _routes: dict[tuple[str, str], Handler | list[Handler]] = field(default_factory=dict)

    def route(self, method: str, path: str, *handlers: Handler) -> None:
        """Answer `method path` with `handlers` in turn; the last one repeats."""
        self._routes[(method, path)] = list(handlers)

    def script(self, method: str, path: str, *responses: Callable[[], web.StreamResponse]) -> None:
        """Answer with ready-made responses in turn; the last one repeats."""

        def wrap(make: Callable[[], web.StreamResponse]) -> Handler:
            async def handler(_: web.Request) -> web.StreamResponse:
                return make()

            return handler

        self.route(method, path, *(wrap(r) for r in responses))

    def count(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path == path)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                body,
                list(request.query.items()),
            )
        )
        handlers = self._routes.get((request.method, request.path))
        if not handlers:
            return web.json_response({"error": "no route"}, status=404)
        assert isinstance(handlers, list)
        handler = handlers.pop(0) if len(handlers) > 1 else handlers[0]
        return await handler(request)


@pytest.fixture
async def server() -> AsyncIterator[LoopbackServer]:
    app = web.Application()
    loopback = LoopbackServer(app)
    app.router.add_route("*", "/{tail:.*}", loopback.dispatch)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    loopback.url = f"http://127.0.0.1:{port}"
    yield loopback
    await runner.cleanup()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def hang(_: web.Request) -> web.StreamResponse:
    """A handler that never answers (until the test's server shuts down)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@dataclass
class FaultServer:
    """A raw TCP server that misbehaves on purpose; `mode` may change between requests."""

    url: str
    mode: str = "ok"
    requests: int = 0
    #: Modes to use for the next requests, in order, before falling back to `mode`.
    plan: list[str] = field(default_factory=list)


@pytest.fixture
async def fault_server() -> AsyncIterator[FaultServer]:
    state = FaultServer(url="")
    body = b'{"ok":true}'
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    holders: list[asyncio.Event] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                state.requests += 1
                mode = state.plan.pop(0) if state.plan else state.mode
                if mode == "ok":
                    writer.write(ok)
                    await writer.drain()
                    continue
                if mode == "drop":
                    # The request arrived; the connection dies before any answer.
                    writer.transport.abort()
                    return
                if mode == "truncate":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
                    await writer.drain()
                    writer.transport.abort()
                    return
                if mode == "drip":
                    # Headers at once, then the body a byte at a time: no single read is slow.
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                    for _ in range(1000):
                        writer.write(b"x")
                        await writer.drain()
                        await asyncio.sleep(0.02)
                    continue
                if mode == "hang":
                    event = asyncio.Event()
                    holders.append(event)
                    await event.wait()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    for event in holders:
        event.set()
    srv.close()
    await srv.wait_closed()


ThreadServerFactory = Callable[[dict[str, Handler]], str]


@pytest.fixture
def thread_server() -> Iterator[ThreadServerFactory]:
    """Start aiohttp servers on loopback, each on its own thread and loop, for blocking clients.

    Call it with {"/path": handler} for GET routes; it returns the base URL. Every server is
    stopped when the test ends.
    """
    stops: list[Callable[[], None]] = []

    def start(routes: dict[str, Handler]) -> str:
        ready = threading.Event()
        state: dict[str, object] = {}

        def run() -> None:
            loop = asyncio.new_event_loop()
            app = web.Application()
            for path, handler in routes.items():
                app.router.add_get(path, handler)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
            state.update(url=f"http://127.0.0.1:{runner.addresses[0][1]}", loop=loop)
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("loopback server thread did not start")
        loop = state["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)

        def stop() -> None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

        stops.append(stop)
        return str(state["url"])

    yield start
    for stop in stops:
        stop()
