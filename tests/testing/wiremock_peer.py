"""WireMock as a real peer: started from tests/peers_wiremock on a free loopback port.

Install it with `npm ci --no-audit --no-fund --prefix tests/peers_wiremock` (Java 11+ needed).
When it is missing the tests that need it skip, except under CI=true, where they fail: CI
must prove the parity, not quietly skip it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

PEER_DIR = Path(__file__).resolve().parent.parent / "peers_wiremock"
INSTALL = "npm ci --no-audit --no-fund --prefix tests/peers_wiremock"
READY_WITHIN = 90.0


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"WireMock peer unavailable on CI: {reason}; install it with `{INSTALL}`")
    pytest.skip(f"WireMock peer unavailable: {reason}; install it with `{INSTALL}`")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WireMock:
    """A running WireMock: its base URL and an admin client."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session

    async def reset(self) -> None:
        async with self._session.post(f"{self.url}/__admin/reset") as response:
            response.raise_for_status()

    async def add(self, mappings: list[dict[str, Any]]) -> None:
        for mapping in mappings:
            async with self._session.post(f"{self.url}/__admin/mappings", json=mapping) as response:
                if response.status != 201:
                    raise AssertionError(f"WireMock refused {mapping}: {await response.text()}")

    async def count(self, method: str, path: str) -> int:
        body = {"method": method, "urlPath": path}
        async with self._session.post(f"{self.url}/__admin/requests/count", json=body) as response:
            return int((await response.json())["count"])


async def start_wiremock() -> AsyncIterator[WireMock]:
    jars = sorted((PEER_DIR / "node_modules" / "wiremock" / "build").glob("wiremock*.jar"))
    java = shutil.which("java")
    if not jars:
        _unavailable(f"no WireMock jar under {PEER_DIR}/node_modules")
    if java is None:
        _unavailable("java is not on PATH")
    assert java is not None
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        java,
        "-jar",
        str(jars[-1]),
        "--port",
        str(port),
        "--bind-address",
        "127.0.0.1",
        "--disable-banner",
        "--max-request-journal-entries=1000",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + READY_WITHIN
            # Bounded polling: the JVM needs a few seconds; a dead process fails at once.
            while True:
                if process.returncode is not None:
                    errors = b"" if process.stderr is None else await process.stderr.read()
                    raise AssertionError(f"WireMock exited: {errors.decode()[-2000:]}")
                try:
                    async with session.get(f"{url}/__admin/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if loop.time() > deadline:
                    raise AssertionError(f"WireMock not ready within {READY_WITHIN:g} s")
                await asyncio.sleep(0.2)
            yield WireMock(url, session)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()
