"""Real stream servers on loopback: a scriptable aiohttp WebSocket/SSE app in-process, and
WebSocket servers in child processes that tests kill with SIGKILL and start again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

WSHandler = Callable[[web.Request, web.WebSocketResponse, "StreamServer"], Awaitable[None]]
HTTPHandler = Callable[[web.Request, "StreamServer"], Awaitable[web.StreamResponse]]


async def eventually(
    predicate: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    """Wait until `predicate()` holds, checking at every turn of the loop; bounded."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)
    assert predicate(), what


@dataclass
class StreamServer:
    """One aiohttp app; each test scripts `ws` (per connection) and `http` handlers."""

    url: str = ""
    ws_url: str = ""
    #: Handshake headers of every WebSocket connection, in order.
    handshakes: list[dict[str, str]] = field(default_factory=list)
    #: Query strings of every WebSocket handshake.
    queries: list[dict[str, str]] = field(default_factory=list)
    #: JSON messages received from clients, per connection number (0-based).
    received: dict[int, list[Any]] = field(default_factory=dict)
    #: Headers of every plain HTTP (SSE) request.
    requests: list[dict[str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    ws_handlers: list[WSHandler] = field(default_factory=list)
    http_handlers: list[HTTPHandler] = field(default_factory=list)
    #: Status to refuse the next WebSocket handshakes with, in turn: (status, headers).
    refuse: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def on_ws(self, *handlers: WSHandler) -> None:
        """Per connection, in turn; the last one repeats."""
        self.ws_handlers = list(handlers)

    def on_http(self, *handlers: HTTPHandler) -> None:
        self.http_handlers = list(handlers)

    def abort_all(self) -> None:
        """Cut every WebSocket's TCP connection without a close frame, as a crash would."""
        for ws in self.sockets:
            transport = ws._req.transport if ws._req is not None else None
            if transport is not None:
                transport.abort()

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        self.handshakes.append(dict(request.headers))
        self.queries.append(dict(request.query))
        if self.refuse:
            status, headers = self.refuse.pop(0)
            return web.Response(status=status, headers=headers, text="refused")
        ws = web.WebSocketResponse(autoping=request.query.get("autoping") != "off")
        await ws.prepare(request)
        number = len(self.sockets)
        self.sockets.append(ws)
        self.received[number] = []
        handlers = self.ws_handlers
        handler = handlers[min(number, len(handlers) - 1)] if handlers else echo_subscriptions
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            await handler(request, ws, self)
        if not ws.closed:
            await ws.close()
        return ws

    async def http(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        self.bodies.append(await request.read())
        number = len(self.requests) - 1
        handlers = self.http_handlers
        return await handlers[min(number, len(handlers) - 1)](request, self)


async def read_messages(ws: web.WebSocketResponse, server: StreamServer) -> None:
    """Record everything the client sends until it closes."""
    number = server.sockets.index(ws)
    async for msg in ws:
        if msg.type == web.WSMsgType.TEXT:
            server.received[number].append(msg.json())


async def echo_subscriptions(
    request: web.Request, ws: web.WebSocketResponse, server: StreamServer
) -> None:
    """Answer each {"op": "subscribe", "channel": c} with {"channel": c, "n": 0}."""
    number = server.sockets.index(ws)
    async for msg in ws:
        if msg.type != web.WSMsgType.TEXT:
            continue
        data = msg.json()
        server.received[number].append(data)
        if isinstance(data, dict) and data.get("op") == "subscribe":
            await ws.send_json({"channel": data.get("channel"), "n": 0})


@pytest.fixture
async def stream_server() -> AsyncIterator[StreamServer]:
    server = StreamServer()
    app = web.Application()
    app.router.add_get("/ws", server.websocket)
    app.router.add_route("*", "/{tail:.*}", server.http)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    server.ws_url = f"ws://127.0.0.1:{port}/ws"
    yield server
    for ws in server.sockets:
        if not ws.closed:
            server.abort_all()
            break
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVERS = Path(__file__).with_name("_servers.py")


@dataclass
class ChildServer:
    """A WebSocket server in its own process, on a fixed port, that can be killed and restarted."""

    kind: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own helper, this interpreter
            [sys.executable, str(SERVERS), self.kind, str(self.port)],
            stdout=subprocess.PIPE,
        )
        self.starts += 1
        stdout = self.process.stdout
        assert stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), timeout=20)
        assert line.strip() == b"ready", line

    def kill(self) -> None:
        """SIGKILL: no close frame, no FIN from the application; the kernel resets the sockets."""
        process = self.process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.kill()


@pytest.fixture
async def child_server(request: pytest.FixtureRequest) -> AsyncIterator[ChildServer]:
    if request.param == "websockets":
        pytest.importorskip("websockets")
    server = ChildServer(kind=request.param, port=free_port())
    await server.start()
    try:
        yield server
    finally:
        server.stop()
