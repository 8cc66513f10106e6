"""Helpers for the inbox tests: a real uvicorn server on loopback and signed requests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from tether import webhooks

from .conftest import require

uvicorn = require("uvicorn", "the receiver tests serve the inbox over real HTTP")
require("starlette", "the inbox is a Starlette app")

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
STANDARD_SECRET = "whsec_" + "c2VjcmV0LXN0YW5kYXJkLXdlYmhvb2tzLWtleQ=="
PLAIN_SECRET = "CANARY-inbox-secret-never-print-me"


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run `app` under uvicorn on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    # The socket already listens, so requests queue in its backlog until uvicorn is up.
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def standard_request(body: bytes, *, msg_id: str = "msg_1", timestamp: int = NOW) -> dict[str, str]:
    headers = webhooks.sign(
        "standard", secret=STANDARD_SECRET, body=body, msg_id=msg_id, timestamp=timestamp
    )
    headers["Content-Type"] = "application/json"
    return headers
