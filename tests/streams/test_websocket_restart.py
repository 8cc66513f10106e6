"""Servers killed with SIGKILL mid-stream and started again: the stream resumes, subscriptions
are replayed, and the consumer sees every sequence number once, in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.streams.conftest import ChildServer, eventually
from tether.streams import Disconnect, Reconnect, WebSocket

FAST = Reconnect(initial_delay=0.05, max_delay=0.2)


async def consume(ws: WebSocket, into: list[int]) -> None:
    # Appended one by one: the test watches the list grow while the stream runs.
    async for message in ws:
        into.append(message["seq"])  # noqa: PERF401


@pytest.mark.parametrize("child_server", ["aiohttp"], indirect=True)
async def test_aiohttp_server_killed_and_restarted_resumes_exactly(
    child_server: ChildServer,
) -> None:
    """A subscription carrying its resume point is replayed after the restart, so the sequence
    continues with no gap and no duplicate."""
    seqs: list[int] = []
    disconnects: list[Disconnect] = []
    reconnects: list[tuple[int, float]] = []

    def subscription() -> dict[str, Any]:
        return {"op": "subscribe", "channel": "ticks", "since": seqs[-1] if seqs else -1}

    async with asyncio.timeout(30):
        async with WebSocket(
            child_server.url,
            reconnect=FAST,
            heartbeat=None,
            on_disconnect=disconnects.append,
            on_reconnect=lambda attempt, delay: reconnects.append((attempt, delay)),
        ) as ws:
            await ws.subscribe(subscription)
            reader = asyncio.create_task(consume(ws, seqs))
            await eventually(lambda: len(seqs) >= 30, timeout=10)
            child_server.kill()
            await eventually(lambda: not ws.connected, timeout=10)
            killed_at = len(seqs)
            await child_server.start()
            await eventually(lambda: len(seqs) >= killed_at + 30, timeout=15)
            await ws.close()
            await reader
    assert seqs == list(range(len(seqs)))
    assert ws.stats().connections == 2
    assert disconnects[0].will_reconnect
    assert disconnects[0].code is None  # killed: no close frame reached the client
    assert reconnects
    assert reconnects[0][0] == 1


@pytest.mark.parametrize("child_server", ["websockets"], indirect=True)
async def test_websockets_server_replay_is_deduplicated(child_server: ChildServer) -> None:
    """A `websockets` server restarts its sequence from zero after SIGKILL; the dedupe window
    drops what was already delivered, so the consumer sees each message once."""
    seqs: list[int] = []
    async with asyncio.timeout(30):
        async with WebSocket(
            child_server.url,
            reconnect=FAST,
            heartbeat=None,
            dedupe_key=lambda m: (m["channel"], m["seq"]),
        ) as ws:
            await ws.subscribe({"op": "subscribe", "channel": "ticks"})
            reader = asyncio.create_task(consume(ws, seqs))
            await eventually(lambda: len(seqs) >= 30, timeout=10)
            child_server.kill()
            await eventually(lambda: not ws.connected, timeout=10)
            killed_at = len(seqs)
            await child_server.start()
            await eventually(lambda: len(seqs) >= killed_at + 30, timeout=15)
            await ws.close()
            await reader
    assert seqs == list(range(len(seqs)))
    stats = ws.stats()
    assert stats.connections == 2
    assert stats.duplicates >= killed_at  # the whole replayed prefix was dropped
