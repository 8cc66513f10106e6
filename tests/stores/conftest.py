"""Lease stores of every kind over shared data: a SQLite file, a PostgreSQL schema, a Redis prefix.

PostgreSQL and Redis are found as the inbox and distributed tests find them (loopback;
skipped when absent, a failure under CI=true). SQLite judges expiry by a `FakeClock`; the
servers judge it by their own clocks, so with them a test waits (a bounded poll) for expiry.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.distributed.conftest import delete_prefixed, require_redis
from tests.inbox.conftest import drop_schema, postgres_dsn
from tether.stores import LeaseStore, PostgresLeaseStore, SQLiteLeaseStore
from tether.testing import FakeClock

T0 = 1_767_225_600.0


@dataclass
class LeaseBackend:
    """Makes stores that all see the same leases, as separate processes would."""

    kind: str
    #: Where the leases are: a file, a DSN or a Redis URL, and the schema or key prefix.
    target: str
    namespace: str
    factory: Callable[[], LeaseStore]
    #: SQLite's clock; None where the server's clock decides.
    clock: FakeClock | None
    made: list[LeaseStore] = field(default_factory=list)

    def make(self) -> LeaseStore:
        store = self.factory()
        self.made.append(store)
        return store

    def now(self) -> float:
        """The store's clock now (the servers run on this machine: they share its clock)."""
        return self.clock.time() if self.clock is not None else time.time()

    async def let_expire(self, store: LeaseStore, name: str, ttl: float) -> None:
        """Let a lease granted with `ttl` run out, on the store's own clock."""
        if self.clock is not None:
            self.clock.advance(ttl)
            return
        deadline = time.monotonic() + 10 * ttl + 5
        while await store.current(name) is not None:
            assert time.monotonic() < deadline, "the lease never expired"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for store in self.made:
            await store.aclose()


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def leases(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LeaseBackend]:
    """A lease backend of each kind, emptied afterwards."""
    if request.param == "sqlite":
        clock = FakeClock(wall=T0)
        path = tmp_path / "leases.db"
        backend = LeaseBackend(
            "sqlite", str(path), "", lambda: SQLiteLeaseStore(path, clock=clock), clock
        )
        yield backend
        await backend.close()
        return
    if request.param == "postgres":
        dsn = await postgres_dsn()
        schema = f"tether_lease_{uuid.uuid4().hex[:12]}"
        backend = LeaseBackend(
            "postgres", dsn, schema, lambda: PostgresLeaseStore(dsn, schema=schema), None
        )
        try:
            yield backend
        finally:
            await backend.close()
            await drop_schema(dsn, schema)
        return
    from tether.distributed import RedisLeaseStore

    url = require_redis()
    prefix = f"tt{uuid.uuid4().hex[:12]}"
    backend = LeaseBackend(
        "redis", url, prefix, lambda: RedisLeaseStore(redis=url, prefix=prefix), None
    )
    try:
        yield backend
    finally:
        await backend.close()
        await delete_prefixed(url, prefix)
