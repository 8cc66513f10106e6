"""PostgreSQL wake-ups: workers learn of new messages by LISTEN/NOTIFY, and listen again after
the server drops that connection."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp import web

from tether import webhooks
from tether.stores._outbox_postgres import PostgresOutboxStore
from tether.webhooks import DeliveryStatus

from ..conftest import LoopbackServer
from ..inbox.conftest import drop_schema, postgres_dsn
from .conftest import LOOPBACK


async def delivered(box: webhooks.Outbox, count: int) -> None:
    async with asyncio.timeout(5):
        while (await box.counts())[DeliveryStatus.DELIVERED] < count:
            await asyncio.sleep(0.02)  # polling a condition with a deadline


@pytest.mark.timeout(60)
async def test_a_dropped_listen_connection_is_reopened(server: LoopbackServer) -> None:
    """Enqueues from another pool wake an idle worker before its 60 s poll, before and after
    the server terminates the worker's LISTEN connection."""
    import asyncpg

    dsn = await postgres_dsn()
    schema = f"tether_olisten_{uuid.uuid4().hex[:10]}"
    server.script("POST", "/hook", lambda: web.Response(status=200))
    sender = webhooks.Outbox(PostgresOutboxStore(dsn, schema=schema), egress=LOOPBACK)
    store = PostgresOutboxStore(dsn, schema=schema)
    receiver_side = webhooks.Outbox(store, egress=LOOPBACK)
    policy = webhooks.OutboxPolicy(poll_interval=60.0)
    try:
        await sender.open()
        await sender.add_endpoint(f"{server.url}/hook")
        async with receiver_side, receiver_side.worker(policy=policy) as worker:
            await sender.enqueue("a", {"n": 1})
            await delivered(sender, 1)
            admin = await asyncpg.connect(dsn)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN %' AND query LIKE $1",
                    f"%{schema}%",
                )
            finally:
                await admin.close()
            assert killed == 1
            async with asyncio.timeout(10):
                while store._listener is None:
                    await asyncio.sleep(0.02)  # polling a condition with a deadline
            # The reconnect wakes the worker once; the message after that needs a NOTIFY.
            for n in (2, 3):
                await sender.enqueue("a", {"n": n})
                await delivered(sender, n)
            assert worker.attempted["delivered"] == 3
    finally:
        await sender.close()
        await drop_schema(dsn, schema)
