"""Scale-out on PostgreSQL: several workers, each with its own connection pool, share the
deliveries through SKIP LOCKED leases and send each message exactly once when nothing fails."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tether import webhooks
from tether.stores._outbox_postgres import PostgresOutboxStore
from tether.webhooks import DeliveryStatus

from ..inbox.conftest import drop_schema, postgres_dsn
from .conftest import LOOPBACK

MESSAGES = 600
WORKERS = 3


@pytest.mark.timeout(90)
async def test_several_workers_deliver_each_message_once_per_endpoint() -> None:
    """Three workers on three pools, two endpoints: every (message, endpoint) arrives once."""
    dsn = await postgres_dsn()
    schema = f"tether_oscale_{uuid.uuid4().hex[:10]}"
    arrivals: Counter[tuple[str, str]] = Counter()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrivals[(request.path, request.headers["webhook-id"])] += 1
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{name}", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    boxes = [
        webhooks.Outbox(PostgresOutboxStore(dsn, schema=schema), egress=LOOPBACK)
        for _ in range(WORKERS + 1)
    ]
    try:
        producer, *consumers = boxes
        await producer.open()
        for box in consumers:
            await box.open()
        await producer.add_endpoint(f"{url}/a")
        await producer.add_endpoint(f"{url}/b")
        async with running_workers(consumers) as workers:
            ids = await asyncio.gather(*(producer.enqueue("a", {"n": n}) for n in range(MESSAGES)))
            async with asyncio.timeout(60):
                while (await producer.counts())[DeliveryStatus.DELIVERED] < 2 * MESSAGES:
                    await asyncio.sleep(0.05)
        shares = [w.attempted["delivered"] for w in workers]
    finally:
        for box in boxes:
            await box.close()
        await runner.cleanup()
        await drop_schema(dsn, schema)
    expected = {(path, msg_id) for msg_id in ids for path in ("/a", "/b")}
    assert set(arrivals) == expected
    assert max(arrivals.values()) == 1
    assert sum(shares) == 2 * MESSAGES
    assert sum(1 for share in shares if share > 0) >= 2, shares


@contextlib.asynccontextmanager
async def running_workers(
    boxes: list[webhooks.Outbox],
) -> AsyncIterator[list[webhooks.OutboxWorker]]:
    """One worker per outbox, running for the duration of the block."""
    workers = [box.worker() for box in boxes]
    for worker in workers:
        await worker.start()
    try:
        yield workers
    finally:
        for worker in workers:
            await worker.stop()
