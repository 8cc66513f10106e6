"""Shared helpers for the hub tests: a spec on disk, bounded waits, a loopback API server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

import tether.spec
from tether.hub import Hub, build_app

T = TypeVar("T")


def write_spec(folder: Path, text: str, name: str = "tether.toml") -> tether.spec.Spec:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return tether.spec.load(path)


def weather_toml(base_url: str, *, interval: float = 0.5, extra: str = "") -> str:
    return f"""
[integrations.weather]
base_url = "{base_url}"
retry = false
[integrations.weather.endpoints.current]
path = "/current"

[pollers.oslo]
integration = "weather"
endpoint = "current"
args = {{ city = "Oslo" }}
interval = {interval}
unavailable_after_failures = 2
{extra}
"""


async def until(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 20.0, every: float = 0.05
) -> T:
    """Poll `probe` until it returns something truthy (bounded); that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_api(hub: Hub, **options: Any) -> AsyncIterator[str]:
    """The hub's API under uvicorn on a loopback port; yields its base URL."""
    app = build_app(hub, **options)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(_started(server), timeout=10)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _started(server: uvicorn.Server) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return bool(server.started)

    return probe
