"""Ordered delivery end to end: with several workers attempting at once, each ordering key's
messages reach an ordered endpoint in enqueue order, even when some attempts fail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tether import webhooks
from tether.webhooks import DeliveryStatus

from .conftest import LOOPBACK, StoreFactory

KEYS = 4
PER_KEY = 40


@contextlib.asynccontextmanager
async def receiver(fail_rate: float) -> AsyncIterator[tuple[str, dict[str, list[int]]]]:
    """A receiver that records, per key, the sequence numbers it accepted, failing some."""
    accepted: dict[str, list[int]] = defaultdict(list)
    rng = random.Random(11)

    async def hook(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        await asyncio.sleep(rng.uniform(0, 0.003))
        if rng.random() < fail_rate:
            return web.Response(status=503)
        accepted[data["key"]].append(data["seq"])
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", accepted
    finally:
        await runner.cleanup()


@pytest.mark.timeout(90)
async def test_each_key_arrives_in_enqueue_order_across_workers(
    store_factory: StoreFactory,
) -> None:
    """Two workers (three on their own pools on PostgreSQL), retries on 503: per key, the
    receiver accepts 0, 1, 2, ... with no gaps and no reordering."""
    policy = webhooks.OutboxPolicy(schedule=(0.0,) * 20, concurrency=16, poll_interval=0.05)
    producer = webhooks.Outbox(store_factory(), egress=LOOPBACK, policy=policy)
    await producer.open()
    sqlite = type(producer.store).__name__.startswith("SQLite")
    # SQLite is used from one process and one loop: its workers share the store.
    consumers = (
        [producer] * 2
        if sqlite
        else [webhooks.Outbox(store_factory(), egress=LOOPBACK, policy=policy) for _ in range(3)]
    )
    async with receiver(fail_rate=0.2) as (url, accepted):
        await producer.add_endpoint(url, ordered=True)
        for seq in range(PER_KEY):
            for key in range(KEYS):
                await producer.enqueue("a", {"key": f"k{key}", "seq": seq}, ordering_key=f"k{key}")
        workers = [box.worker(policy=policy) for box in consumers]
        for box in consumers:
            await box.open()
        for worker in workers:
            await worker.start()
        try:
            async with asyncio.timeout(60):
                while (await producer.counts())[DeliveryStatus.DELIVERED] < KEYS * PER_KEY:
                    await asyncio.sleep(0.05)  # polling a condition with a deadline
        finally:
            for worker in workers:
                await worker.stop()
    for box in {id(b): b for b in [producer, *consumers]}.values():
        await box.close()
    assert set(accepted) == {f"k{key}" for key in range(KEYS)}
    for name, sequence in accepted.items():
        assert sequence == list(range(PER_KEY)), name
    assert sum(w.attempted["failed"] for w in workers) > 0  # retries really happened
