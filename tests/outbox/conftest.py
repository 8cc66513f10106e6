"""Outbox fixtures: a store of each kind (SQLite file, PostgreSQL schema) and a fake clock.

PostgreSQL is the inbox tests' loopback database (see tests/inbox/conftest.py): unreachable
means skipped, except under CI=true, where it is a failure.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tether import FakeClock, webhooks
from tether.stores._outbox_postgres import PostgresOutboxStore
from tether.stores._outbox_sqlite import SQLiteOutboxStore

from ..inbox.conftest import drop_schema, postgres_dsn

T0 = 1_767_225_600.0
LOOPBACK = webhooks.EgressPolicy(allow=("127.0.0.1/32",))

StoreFactory = Callable[[], webhooks.OutboxStore]


@pytest.fixture(params=["sqlite", "postgres"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Makes stores that all see the same data: one file, or one schema of its own."""
    made: list[webhooks.OutboxStore] = []
    if request.param == "sqlite":
        path = tmp_path / "outbox.db"

        def make() -> webhooks.OutboxStore:
            store = SQLiteOutboxStore(path)
            made.append(store)
            return store

        yield make
        for store in made:
            await store.close()
        return
    dsn = await postgres_dsn()
    schema = f"tether_outbox_{uuid.uuid4().hex[:12]}"

    def make_pg() -> webhooks.OutboxStore:
        store = PostgresOutboxStore(dsn, schema=schema)
        made.append(store)
        return store

    try:
        yield make_pg
    finally:
        for store in made:
            await store.close()
        await drop_schema(dsn, schema)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=T0)


@pytest.fixture
async def outbox(store_factory: StoreFactory, clock: FakeClock) -> AsyncIterator[webhooks.Outbox]:
    """An opened outbox on each store that may deliver to loopback, on a fake clock."""
    box = webhooks.Outbox(store_factory(), egress=LOOPBACK, clock=clock)
    await box.open()
    yield box
    await box.close()


def worker(outbox: webhooks.Outbox, **policy: object) -> webhooks.OutboxWorker:
    """A worker whose jitter is off (rand=0.5), so every delay is the schedule's own."""
    chosen = webhooks.OutboxPolicy(**policy) if policy else outbox.policy  # type: ignore[arg-type]
    return outbox.worker(policy=chosen, rand=lambda: 0.5)
