"""Leases in PostgreSQL: one statement per grant, judged by the server's clock.

A grant is a single `INSERT ... ON CONFLICT DO UPDATE ... WHERE <expired or same holder>
RETURNING`: the row lock the conflict takes serialises racing acquirers, and each re-checks the
condition against the row as the previous winner left it, so exactly one of them is granted.
Expiry is `clock_timestamp()` on the server, the one clock every holder shares. Released and
expired rows stay, so the fence counter survives them.
"""

# ruff: noqa: S608 - table and schema names pass check_identifier; every value is bound

from __future__ import annotations

import asyncio
from typing import Any

from tether._errors import ConfigError
from tether.stores._inbox import StoreError, check_identifier
from tether.stores._lease import HeldLease, check_lease, check_lease_args

__all__ = ["PostgresLeaseStore"]

_CONNECT_TIMEOUT = 10.0
_COMMAND_TIMEOUT = 30.0


def _database_errors() -> tuple[type[BaseException], ...]:
    import asyncpg  # noqa: PLC0415 - an optional dependency

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _safe(exc: BaseException) -> str:
    # asyncpg messages name the user and database, never the password; keep them short.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


class PostgresLeaseStore:
    """Leases in a PostgreSQL table, for hubs on several machines sharing one database.

    Args:
        dsn: a libpq URL ("postgresql://user@host:5432/db"), or an `asyncpg` pool to share
            (the store never closes a pool it was lent).
        schema: the schema holding the table, created if missing.
        table: the table's name.
        min_size, max_size: bounds of the pool the store makes from a DSN.
    """

    def __init__(
        self,
        dsn: str | Any,
        *,
        schema: str = "public",
        table: str = "tether_leases",
        min_size: int = 1,
        max_size: int = 4,
    ) -> None:
        if isinstance(dsn, str):
            if not dsn.startswith(("postgresql://", "postgres://")):
                raise ConfigError("the PostgreSQL lease store needs a postgresql:// URL or a pool")
            self._dsn: str | None = dsn
            self._pool: Any = None
            self._own_pool = True
        elif hasattr(dsn, "acquire") and hasattr(dsn, "fetchrow"):
            self._dsn = None
            self._pool = dsn
            self._own_pool = False
        else:
            raise ConfigError(f"dsn must be a postgresql:// URL or an asyncpg pool, got {dsn!r}")
        if not 1 <= min_size <= max_size:
            raise ConfigError("the pool needs 1 <= min_size <= max_size")
        self.schema = check_identifier(schema, "schema")
        self.table = check_identifier(table, "table")
        self.min_size = min_size
        self.max_size = max_size
        self._qualified = f"{self.schema}.{self.table}"
        self._ready = False
        self._opening = asyncio.Lock()
        self._closed = False
        q = self._qualified
        self._acquire_sql = (
            f"INSERT INTO {q} AS l (name, holder, fence, expires_at) "
            "VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3)) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            # A live lease renewed by its holder keeps its fence; anything else is a new grant.
            "fence = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp() "
            "THEN l.fence ELSE l.fence + 1 END, "
            "expires_at = excluded.expires_at "
            "WHERE l.expires_at <= clock_timestamp() OR l.holder = excluded.holder "
            "RETURNING fence, extract(epoch FROM expires_at)::float8"
        )
        self._release_sql = (
            f"UPDATE {q} SET expires_at = clock_timestamp() "
            "WHERE name = $1 AND holder = $2 AND fence = $3 AND expires_at > clock_timestamp()"
        )
        self._current_sql = (
            f"SELECT holder, fence, extract(epoch FROM expires_at)::float8 FROM {q} "
            "WHERE name = $1 AND expires_at > clock_timestamp()"
        )

    def __repr__(self) -> str:
        # The DSN may carry a password: only the table is shown.
        return f"PostgresLeaseStore(table={self._qualified!r})"

    async def open(self) -> None:
        if self._ready:
            return
        async with self._opening:
            if self._ready:
                return
            if self._closed:
                raise StoreError("this lease store was closed; make a new one")
            if self._pool is None:
                self._pool = await self._connect()
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    # Two processes creating the table at once would collide in the catalog.
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext($1))", self._qualified
                    )
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                    await conn.execute(
                        f"""CREATE TABLE IF NOT EXISTS {self._qualified} (
                            name TEXT PRIMARY KEY,
                            holder TEXT NOT NULL,
                            fence BIGINT NOT NULL,
                            expires_at TIMESTAMPTZ NOT NULL
                        )"""
                    )
            except _database_errors() as exc:
                await self._drop_pool()
                raise StoreError(
                    f"cannot prepare the PostgreSQL lease store: {_safe(exc)}"
                ) from None
            self._ready = True

    async def _connect(self) -> Any:
        try:
            import asyncpg  # noqa: PLC0415 - an optional dependency
        except ImportError:
            raise ConfigError(
                "the PostgreSQL lease store needs asyncpg: pip install 'tether[postgres]'"
            ) from None
        try:
            return await asyncpg.create_pool(
                self._dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                timeout=_CONNECT_TIMEOUT,
                command_timeout=_COMMAND_TIMEOUT,
                server_settings={
                    # A grant that returned must survive a crash, or a fence could repeat.
                    "synchronous_commit": "on",
                    "application_name": "tether-leases",
                },
            )
        except _database_errors() as exc:
            raise StoreError(
                f"cannot connect to the PostgreSQL lease store: {_safe(exc)}"
            ) from None

    async def _drop_pool(self) -> None:
        pool = self._pool
        if self._own_pool and pool is not None:
            self._pool = None
            await pool.close()

    async def aclose(self) -> None:
        self._closed = True
        self._ready = False
        await self._drop_pool()

    async def __aenter__(self) -> PostgresLeaseStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _fetchrow(self, sql: str, *args: object) -> Any:
        await self.open()
        try:
            return await self._pool.fetchrow(sql, *args)
        except _database_errors() as exc:
            raise StoreError(f"the PostgreSQL lease store failed: {_safe(exc)}") from None

    async def _execute(self, sql: str, *args: object) -> str:
        await self.open()
        try:
            status: str = await self._pool.execute(sql, *args)
        except _database_errors() as exc:
            raise StoreError(f"the PostgreSQL lease store failed: {_safe(exc)}") from None
        return status

    async def acquire(self, name: str, holder: str, ttl: float) -> HeldLease | None:
        ttl = check_lease_args(name, holder, ttl)
        row = await self._fetchrow(self._acquire_sql, name, holder, ttl)
        if row is None:
            return None
        return HeldLease(name, holder, int(row[0]), float(row[1]))

    async def release(self, lease: HeldLease) -> bool:
        lease = check_lease(lease)
        status = await self._execute(self._release_sql, lease.name, lease.holder, lease.fence)
        return status == "UPDATE 1"

    async def current(self, name: str) -> HeldLease | None:
        row = await self._fetchrow(self._current_sql, name)
        if row is None:
            return None
        return HeldLease(name, str(row[0]), int(row[1]), float(row[2]))
