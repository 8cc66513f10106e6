"""Extra aiohttp routes on the loopback server: served beside the mock, first."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from tether.testing import MockAPI, Reply


async def test_extra_route_serves_a_websocket_beside_the_mock() -> None:
    """A route given to serve() answers its path (here a WebSocket); the mock answers the rest."""
    api = MockAPI()
    api.stub("GET", "/hello", Reply(json={"from": "mock"}))

    async def echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo {message.data}")
        return ws

    async with (
        api.serve(routes=[web.get("/ws", echo)]) as server,
        aiohttp.ClientSession() as session,
    ):
        async with session.ws_connect(f"{server.url}/ws") as ws:
            await ws.send_str("ping")
            assert await ws.receive_str() == "echo ping"
        async with session.get(f"{server.url}/hello") as response:
            assert await response.json() == {"from": "mock"}
    assert [r.path for r in api.requests] == ["/hello"]
