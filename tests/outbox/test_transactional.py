"""Transactional enqueue: the message exists if and only if the caller's transaction commits."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tether import FakeClock, webhooks
from tether._errors import ConfigError
from tether.stores._outbox_postgres import PostgresOutboxStore
from tether.stores._outbox_sqlite import SQLiteOutboxStore

from ..inbox.conftest import drop_schema, postgres_dsn


@pytest.fixture
async def sqlite_outbox(tmp_path: Path, clock: FakeClock) -> AsyncIterator[webhooks.Outbox]:
    box = webhooks.Outbox(SQLiteOutboxStore(tmp_path / "app.db"), clock=clock)
    await box.open()
    await box.add_endpoint("https://example.com/hooks")
    yield box
    await box.close()


def app_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)")
    conn.commit()
    return conn


async def test_sqlite_commit_stores_the_business_row_and_the_message(
    sqlite_outbox: webhooks.Outbox,
) -> None:
    """Both writes land together when the caller commits."""
    assert isinstance(sqlite_outbox.store, SQLiteOutboxStore)
    conn = app_connection(sqlite_outbox.store.path)
    with conn:
        conn.execute("INSERT INTO orders VALUES ('o1')")
        msg_id = sqlite_outbox.enqueue_in(conn, "order.created", {"id": "o1"})
    conn.close()
    (delivery,) = await sqlite_outbox.deliveries()
    assert delivery.msg_id == msg_id


async def test_sqlite_rollback_leaves_no_message(sqlite_outbox: webhooks.Outbox) -> None:
    """A transaction that rolls back takes its enqueued message with it."""
    assert isinstance(sqlite_outbox.store, SQLiteOutboxStore)
    conn = app_connection(sqlite_outbox.store.path)

    def place_order() -> None:
        with conn:
            conn.execute("INSERT INTO orders VALUES ('o2')")
            sqlite_outbox.enqueue_in(conn, "order.created", {"id": "o2"})
            raise RuntimeError("the business logic failed")

    with pytest.raises(RuntimeError):
        place_order()
    assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
    conn.close()
    assert await sqlite_outbox.deliveries() == []


async def test_sqlite_autocommit_and_foreign_databases_are_refused(
    sqlite_outbox: webhooks.Outbox, tmp_path: Path
) -> None:
    """Outside a transaction, on another file, or without fsync'd commits, enqueue_in()
    refuses instead of writing a message that could be lost or outlive a rollback."""
    assert isinstance(sqlite_outbox.store, SQLiteOutboxStore)
    auto = sqlite3.connect(sqlite_outbox.store.path, isolation_level=None)
    with pytest.raises(ConfigError, match="inside your transaction"):
        sqlite_outbox.enqueue_in(auto, "a", {})
    auto.close()
    lax = sqlite3.connect(sqlite_outbox.store.path)
    lax.execute("PRAGMA synchronous=NORMAL")
    with pytest.raises(ConfigError, match="synchronous=FULL"), lax:
        sqlite_outbox.enqueue_in(lax, "a", {})
    lax.close()
    other = sqlite3.connect(tmp_path / "other.db")
    with pytest.raises(ConfigError, match="own database file"):
        sqlite_outbox.enqueue_in(other, "a", {})
    other.close()
    assert await sqlite_outbox.deliveries() == []


@pytest.fixture
async def pg_outbox(clock: FakeClock) -> AsyncIterator[tuple[webhooks.Outbox, str, str]]:
    dsn = await postgres_dsn()
    schema = f"tether_otx_{uuid.uuid4().hex[:12]}"
    box = webhooks.Outbox(PostgresOutboxStore(dsn, schema=schema), clock=clock)
    await box.open()
    await box.add_endpoint("https://example.com/hooks")
    try:
        yield box, dsn, schema
    finally:
        await box.close()
        await drop_schema(dsn, schema)


async def test_asyncpg_commit_and_rollback(pg_outbox: tuple[webhooks.Outbox, str, str]) -> None:
    """On PostgreSQL the message follows the caller's transaction: kept on commit, gone on
    rollback; outside a transaction the call is refused."""
    import asyncpg

    box, dsn, schema = pg_outbox
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE TABLE {schema}.orders (id TEXT PRIMARY KEY)")
        # The schema name is the test's own, made from a uuid.
        insert = f"INSERT INTO {schema}.orders VALUES ($1)"  # noqa: S608
        # A session that commits without waiting for the disk gets a durable commit anyway.
        await conn.execute("SET synchronous_commit TO off")
        async with conn.transaction():
            await conn.execute(insert, "o1")
            kept = await box.enqueue_in(conn, "order.created", {"id": "o1"})
            assert await conn.fetchval("SHOW synchronous_commit") == "on"
        assert await conn.fetchval("SHOW synchronous_commit") == "off"

        async def place_failing_order() -> None:
            async with conn.transaction():
                await conn.execute(insert, "o2")
                await box.enqueue_in(conn, "order.created", {"id": "o2"})
                raise RuntimeError("the business logic failed")

        with pytest.raises(RuntimeError):
            await place_failing_order()
        with pytest.raises(ConfigError, match="inside your transaction"):
            await box.enqueue_in(conn, "a", {})
    finally:
        await conn.close()
    assert [d.msg_id for d in await box.deliveries()] == [kept]
