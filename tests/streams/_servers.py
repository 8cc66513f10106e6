"""WebSocket servers run as child processes, so tests can kill them with SIGKILL mid-stream.

    python tests/streams/_servers.py aiohttp PORT
    python tests/streams/_servers.py websockets PORT

Protocol: the client sends {"op": "subscribe", "channel": C, "since": N}; the server then sends
{"channel": C, "seq": i} for i = N+1, N+2, ... every 2 ms until the connection ends. The
aiohttp server honours `since` (exact resume); the websockets server ignores it and starts
from 0 every time (at-least-once replay, which the client's dedupe window must absorb).
Prints "ready" once listening.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def stream(send: Any, channel: str, start: int) -> None:
    seq = start
    while True:
        await send(json.dumps({"channel": channel, "seq": seq}))
        seq += 1
        await asyncio.sleep(0.002)


async def serve_aiohttp(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        tasks: list[asyncio.Task[None]] = []
        try:
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("op") == "subscribe":
                    start = int(data.get("since", -1)) + 1
                    tasks.append(asyncio.create_task(stream(ws.send_str, data["channel"], start)))
        finally:
            for task in tasks:
                task.cancel()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def serve_websockets(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(connection: ServerConnection) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            async for message in connection:
                data = json.loads(message)
                if data.get("op") == "subscribe":
                    tasks.append(asyncio.create_task(stream(connection.send, data["channel"], 0)))
        finally:
            for task in tasks:
                task.cancel()

    async with serve(handler, "127.0.0.1", port, reuse_address=True):
        print("ready", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    runner = serve_aiohttp if kind == "aiohttp" else serve_websockets
    asyncio.run(runner(port))


if __name__ == "__main__":
    main()
