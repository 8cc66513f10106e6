"""Hub test fixtures: hub stores on SQLite and PostgreSQL, and loopback Redis.

PostgreSQL and Redis are found as the inbox and distributed tests find them; each PostgreSQL
test gets a schema of its own, dropped afterwards. Under CI=true a missing service fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.inbox.conftest import drop_schema, in_ci, postgres_dsn
from tether.hub import HubStore
from tether.hub._store import PostgresHubStore, SQLiteHubStore

__all__ = ["HubStoreFactory", "drop_schema", "in_ci", "postgres_dsn"]

HubStoreFactory = Callable[[], HubStore]


@pytest.fixture(params=["sqlite", "postgres"])
async def hub_store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[HubStoreFactory]:
    """Makes hub stores that all see the same data: one file, or one schema of their own."""
    made: list[HubStore] = []
    if request.param == "sqlite":
        path = tmp_path / "hub.db"

        def make() -> HubStore:
            store = SQLiteHubStore(path)
            made.append(store)
            return store

        yield make
        for store in made:
            await store.close()
        return
    dsn = await postgres_dsn()
    schema = f"tether_test_{uuid.uuid4().hex[:12]}"

    def make_pg() -> HubStore:
        store = PostgresHubStore(dsn, schema=schema)
        made.append(store)
        return store

    try:
        yield make_pg
    finally:
        for store in made:
            await store.close()
        await drop_schema(dsn, schema)


@pytest.fixture
async def hub_store(hub_store_factory: HubStoreFactory) -> HubStore:
    store = hub_store_factory()
    await store.open()
    return store


REDIS_URL = os.environ.get("TETHER_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Loopback Redis; skipped when absent, a failure under CI=true."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            reachable = bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        reachable = False
    if not reachable:
        if in_ci():
            pytest.fail(f"Redis at {REDIS_URL} is required under CI=true")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    return REDIS_URL


@pytest.fixture
async def pg_store_url() -> AsyncIterator[str]:
    """A `postgresql://...?schema=...` hub store location of its own, dropped afterwards."""
    dsn = await postgres_dsn()
    schema = f"tether_hub_{uuid.uuid4().hex[:12]}"
    yield f"{dsn}?schema={schema}"
    await drop_schema(dsn, schema)
