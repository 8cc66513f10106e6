"""Leases in a SQLite file: for several processes on one machine (the default hub store).

Each grant is one `BEGIN IMMEDIATE` transaction: the write lock is taken before the row is
read, so two processes racing for a free lease cannot both see it free. The row is kept when a
lease is released or runs out, so its fence counter survives and the next holder's is larger.
Expiry is judged by this process's wall clock (`clock.time()`), which every process on the
machine shares; a test passes a `FakeClock`.
"""

# ruff: noqa: S608 - the table name passes check_identifier; every value is bound

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tether._clock import Clock, SystemClock
from tether._errors import ConfigError
from tether.stores._inbox import StoreError, check_identifier
from tether.stores._lease import HeldLease, check_lease, check_lease_args

__all__ = ["SQLiteLeaseStore"]

T = TypeVar("T")


class SQLiteLeaseStore:
    """Leases in one SQLite file, shared by every process that opens it.

    Args:
        path: the database file, created if missing (it may be the hub's own database).
        table: the table's name.
        clock: where "now" comes from; expiry is `clock.time()` (epoch seconds).
        busy_timeout: seconds to wait for another process holding the write lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "tether.db",
        *,
        table: str = "tether_leases",
        clock: Clock | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        wait: object = busy_timeout
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not busy_timeout >= 0:
            raise ConfigError(f"busy_timeout must be seconds >= 0, got {busy_timeout!r}")
        self.path = os.fspath(path)
        if not self.path:
            raise ConfigError("the lease store path is empty")
        self.table = check_identifier(table, "table")
        self.busy_timeout = float(busy_timeout)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._conn: sqlite3.Connection | None = None
        self._io: ThreadPoolExecutor | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteLeaseStore(path={self.path!r}, table={self.table!r})"

    async def open(self) -> None:
        if self._conn is not None:
            return
        async with self._opening:
            if self._conn is not None:
                return
            if self._closed:
                raise StoreError("this lease store was closed; make a new one")
            io = ThreadPoolExecutor(1, thread_name_prefix="tether-lease-sqlite")
            try:
                self._conn = await asyncio.get_running_loop().run_in_executor(io, self._connect)
            except sqlite3.Error as exc:
                io.shutdown(wait=False)
                raise StoreError(f"cannot open the SQLite lease store {self.path}: {exc}") from None
            self._io = io

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=self.busy_timeout, check_same_thread=False
        )
        try:
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode=WAL")
            # A grant that returned must survive a crash, or a fence could be handed out twice.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {self.table} (
                    name TEXT PRIMARY KEY,
                    holder TEXT NOT NULL,
                    fence INTEGER NOT NULL,
                    expires_at REAL NOT NULL
                )"""
            )
        except BaseException:
            conn.close()
            raise
        return conn

    async def aclose(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        io, self._io = self._io, None
        if conn is not None and io is not None:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.get_running_loop().run_in_executor(io, conn.close)
        if io is not None:
            io.shutdown(wait=False)

    async def __aenter__(self) -> SQLiteLeaseStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        await self.open()
        conn, io = self._conn, self._io
        if conn is None or io is None:
            raise StoreError("the lease store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(io, work, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"the SQLite lease store failed: {exc}") from None

    def _transaction(self, conn: sqlite3.Connection, body: Callable[[float], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read after the write lock is ours: a wait for another process must not leave
            # us judging expiry by a time that has passed.
            result = body(self._clock.time())
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def acquire(self, name: str, holder: str, ttl: float) -> HeldLease | None:
        ttl = check_lease_args(name, holder, ttl)
        table = self.table

        def work(conn: sqlite3.Connection) -> HeldLease | None:
            def body(now: float) -> HeldLease | None:
                row = conn.execute(
                    f"SELECT holder, fence, expires_at FROM {table} WHERE name = ?", (name,)
                ).fetchone()
                expires_at = now + ttl
                if row is None:
                    fence = 1
                    conn.execute(
                        f"INSERT INTO {table} (name, holder, fence, expires_at)"
                        " VALUES (?, ?, ?, ?)",
                        (name, holder, fence, expires_at),
                    )
                    return HeldLease(name, holder, fence, expires_at)
                current_holder, fence, current_expiry = row
                live = current_expiry > now
                if live and current_holder != holder:
                    return None
                if not live:
                    # Anyone may have seen it free since it ran out: a new grant, a new fence.
                    fence += 1
                conn.execute(
                    f"UPDATE {table} SET holder = ?, fence = ?, expires_at = ? WHERE name = ?",
                    (holder, fence, expires_at, name),
                )
                return HeldLease(name, holder, fence, expires_at)

            return self._transaction(conn, body)

        return await self._run(work)

    async def release(self, lease: HeldLease) -> bool:
        lease = check_lease(lease)
        table = self.table

        def work(conn: sqlite3.Connection) -> bool:
            now = self._clock.time()
            # Ending it means "expired now": the row and its fence stay for the next holder.
            cursor = conn.execute(
                f"UPDATE {table} SET expires_at = ?"
                " WHERE name = ? AND holder = ? AND fence = ? AND expires_at > ?",
                (now, lease.name, lease.holder, lease.fence, now),
            )
            return cursor.rowcount == 1

        return await self._run(work)

    async def current(self, name: str) -> HeldLease | None:
        table = self.table

        def work(conn: sqlite3.Connection) -> HeldLease | None:
            row = conn.execute(
                f"SELECT holder, fence, expires_at FROM {table} WHERE name = ? AND expires_at > ?",
                (name, self._clock.time()),
            ).fetchone()
            return None if row is None else HeldLease(name, row[0], row[1], row[2])

        return await self._run(work)
