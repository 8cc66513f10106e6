"""Stores for the inbox tests: SQLite in a temporary directory and PostgreSQL on loopback.

PostgreSQL is reached at 127.0.0.1:5432, database `test`, as user `postgres` or else the
current OS user. Each test gets its own schema and drops it. When PostgreSQL is unreachable the
PostgreSQL cases are skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import getpass
import importlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType

import pytest

from tether import stores

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_DATABASE = "test"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(module: str, why: str) -> ModuleType:
    """Import `module`, or skip the calling test module; under CI=true a missing one fails."""
    try:
        return importlib.import_module(module)
    except ImportError:
        message = f"{module} is not installed ({why}); it belongs in the test dependencies"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)


async def _reachable_dsn() -> tuple[str | None, str]:
    """A DSN that connects, or None and why not."""
    try:
        import asyncpg
    except ImportError:
        return None, "asyncpg is not installed"
    users = ["postgres"]
    if (me := getpass.getuser()) not in users:
        users.append(me)
    reasons = []
    for user in users:
        dsn = f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}"
        try:
            conn = await asyncpg.connect(dsn, timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            reasons.append(f"{user}: {type(exc).__name__}: {exc}")
            continue
        await conn.close()
        return dsn, ""
    return None, "; ".join(reasons)


_DSN_CACHE: dict[str, tuple[str | None, str]] = {}


async def postgres_dsn() -> str:
    """The loopback PostgreSQL DSN; skips (or fails under CI=true) when unreachable."""
    if "dsn" not in _DSN_CACHE:
        _DSN_CACHE["dsn"] = await _reachable_dsn()
    dsn, why = _DSN_CACHE["dsn"]
    if dsn is None:
        message = f"PostgreSQL at {PG_HOST}:{PG_PORT}/{PG_DATABASE} is unreachable: {why}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return dsn


async def drop_schema(dsn: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


StoreFactory = Callable[[], stores.InboxStore]


@pytest.fixture(params=["sqlite", "postgres"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Makes stores that all see the same data: a file, or a schema of its own."""
    made: list[stores.InboxStore] = []
    if request.param == "sqlite":
        path = tmp_path / "inbox.db"

        def make() -> stores.InboxStore:
            store = stores.SQLiteInboxStore(path)
            made.append(store)
            return store

        yield make
        for store in made:
            await store.close()
        return
    dsn = await postgres_dsn()
    schema = f"tether_test_{uuid.uuid4().hex[:12]}"

    def make_pg() -> stores.InboxStore:
        store = stores.PostgresInboxStore(dsn, schema=schema)
        made.append(store)
        return store

    try:
        yield make_pg
    finally:
        for store in made:
            await store.close()
        await drop_schema(dsn, schema)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[stores.InboxStore]:
    """An opened store of each kind."""
    opened = store_factory()
    await opened.open()
    yield opened
    await opened.close()
