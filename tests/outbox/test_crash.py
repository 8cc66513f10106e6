"""Crash tests: SIGKILL the enqueuer and the workers under load; no message is lost.

First, an enqueuing process is killed mid-stream: every message whose enqueue() had returned
is stored. Then the delivery test:

Messages are enqueued (durably) first. Worker processes then deliver them to a loopback
receiver that takes a few milliseconds per request, so many requests are in flight at any
moment. Twice, once enough messages have arrived, every worker is killed with SIGKILL and new
ones are started; the deliveries the dead workers held come back when their leases run out.
Then: every message reached the receiver (none lost), every delivery is recorded as delivered,
and no message arrived more often than once per kill plus one (at least once, not unbounded).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from tether import webhooks
from tether.webhooks import DeliveryStatus

from ..inbox.conftest import drop_schema, postgres_dsn

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 1500
KILL_AT = (400, 900)


@pytest.fixture(params=[("sqlite", 1), ("postgres", 3)], ids=["sqlite-1", "postgres-3"])
async def location(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[dict[str, str], int]]:
    kind, workers = request.param
    if kind == "sqlite":
        yield {"OUTBOX_STORE": str(tmp_path / "crash.db")}, workers
        return
    dsn = await postgres_dsn()
    schema = f"tether_ocrash_{uuid.uuid4().hex[:10]}"
    try:
        yield {"OUTBOX_STORE": dsn, "OUTBOX_SCHEMA": schema}, workers
    finally:
        await drop_schema(dsn, schema)


def start_workers(env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.outbox._crash_worker"],
            cwd=ROOT,
            env={**os.environ, **env},
        )
        for _ in range(count)
    ]


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)  # polling a condition with a deadline, not timing anything
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(120)
async def test_sigkill_mid_enqueue_keeps_every_acknowledged_message(
    location: tuple[dict[str, str], int],
) -> None:
    """Each message id an enqueuer was handed before SIGKILL is stored, with its delivery."""
    env, _ = location
    store = webhooks.open_outbox_store(
        env["OUTBOX_STORE"], schema=env.get("OUTBOX_SCHEMA", "public")
    )
    outbox = webhooks.Outbox(store)
    await outbox.open()
    try:
        await outbox.add_endpoint("https://example.com/hooks")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.outbox._crash_enqueuer"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
        )
        acknowledged: list[str] = []
        try:
            assert proc.stdout is not None
            while len(acknowledged) < 600:
                line = await asyncio.to_thread(proc.stdout.readline)
                assert line, "the enqueuer stopped early"
                acknowledged.append(line.decode().strip())
            # Killed with sixteen enqueues in flight: a store that answered before its commit
            # would lose the messages it had answered for but not yet committed.
            proc.send_signal(signal.SIGKILL)
            # Through the same buffered reader to EOF: it may hold the start of a line.
            rest = await asyncio.to_thread(proc.stdout.read)
            await asyncio.to_thread(proc.wait, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        # Only whole lines are promises (each was one write); the last piece is what follows
        # the final newline, empty unless the kill cut a write short.
        acknowledged += rest.decode().split("\n")[:-1]
        stored = {d.msg_id for d in await outbox.deliveries(limit=len(acknowledged) + 5000)}
    finally:
        await outbox.close()
    missing = [msg_id for msg_id in acknowledged if msg_id not in stored]
    assert missing == [], (len(acknowledged), len(stored), missing[:5])


@pytest.mark.timeout(180)
async def test_sigkill_mid_delivery_loses_no_message(
    location: tuple[dict[str, str], int],
) -> None:
    """After SIGKILLs of every worker under load and restarts, each message is delivered."""
    env, worker_count = location
    arrivals: Counter[str] = Counter()
    rng = random.Random(7)

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        # A few milliseconds each: many requests are in flight when the kill lands.
        await asyncio.sleep(rng.uniform(0.002, 0.02))
        arrivals[request.headers["webhook-id"]] += 1
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"

    store = webhooks.open_outbox_store(
        env["OUTBOX_STORE"], schema=env.get("OUTBOX_SCHEMA", "public")
    )
    outbox = webhooks.Outbox(store, egress=webhooks.EgressPolicy(allow=("127.0.0.1/32",)))
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await outbox.open()
        await outbox.add_endpoint(url)
        ids = set()
        for start in range(0, TOTAL, 100):
            ids.update(
                await asyncio.gather(
                    *(outbox.enqueue("order.created", {"n": n}) for n in range(start, start + 100))
                )
            )
        assert len(ids) == TOTAL
        for kill_at in KILL_AT:
            workers = start_workers(env, worker_count)

            async def enough(kill_at: int = kill_at) -> bool:
                return len(arrivals) >= kill_at

            await wait_until(enough, f"{kill_at} arrivals")
            for proc in workers:
                proc.send_signal(signal.SIGKILL)
            for proc in workers:
                assert proc.wait(timeout=10) == -signal.SIGKILL
            assert len(arrivals) < TOTAL, "the kill came too late to land mid-delivery"
        workers = start_workers(env, worker_count)

        async def all_delivered() -> bool:
            counts = await outbox.counts()
            return counts[DeliveryStatus.DELIVERED] == TOTAL

        await wait_until(all_delivered, "every delivery recorded", timeout=90)
        counts = await outbox.counts()
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        await outbox.close()
        await runner.cleanup()
    assert set(arrivals) == ids
    assert counts[DeliveryStatus.PENDING] == counts[DeliveryStatus.DEAD] == 0
    assert max(arrivals.values()) <= 1 + len(KILL_AT)
