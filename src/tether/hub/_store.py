"""The hub's own state: its event log and each poller's last snapshot, on SQLite or PostgreSQL.

Both backends implement `HubStore` and pass one conformance suite. Times are wall-clock epoch
seconds passed in by the caller, so several hubs agree on them and tests can choose them.

Events get increasing ids in commit order (SQLite serialises writers; PostgreSQL appends under
a transaction-level advisory lock), so a reader tailing "everything after id N" never skips an
event that commits later with a smaller id. An event may carry a `key`: appending a key that
is already stored stores nothing, which makes handlers that run again after a crash harmless.
"""

# ruff: noqa: S608 - table and schema names pass check_identifier; every value is bound

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tether._errors import ConfigError
from tether.stores import StoreError
from tether.stores._inbox import check_identifier
from tether.stores._open import parse_store_location

__all__ = [
    "HubEvent",
    "HubStore",
    "PollerSnapshot",
    "PostgresHubStore",
    "SQLiteHubStore",
    "open_hub_store",
    "split_store_location",
]

T = TypeVar("T")

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: The most events one read returns.
MAX_EVENTS = 1000


@dataclass(frozen=True, slots=True)
class HubEvent:
    """Something that happened in the hub: stored, then published live.

    `type` is dotted (`data.oslo`, `webhook.weather.alerts.alert.created`); `source` names what
    produced it (a poller, an inbox source, a stream); `data` is JSON.
    """

    id: int
    at: float
    type: str
    source: str
    data: Any

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "type": self.type, "source": self.source,
                "data": self.data}  # fmt: skip


@dataclass(frozen=True, slots=True)
class PollerSnapshot:
    """A poller's state as its lease holder last wrote it; every hub serves it from here."""

    name: str
    data: Any
    #: Whether a poll ever succeeded (`data` may legitimately be null).
    has_data: bool
    last_success: float | None
    #: When the last poll, successful or not, finished.
    polled_at: float | None
    consecutive_failures: int
    #: {"class", "message", "at"} of the last failure, the message redacted; None after a success.
    last_error: dict[str, Any] | None
    #: The hub that wrote it, and its lease's fence: a write with a lower fence is refused.
    holder: str
    fence: int


@runtime_checkable
class HubStore(Protocol):
    """Durable storage for hub events and poller snapshots."""

    #: "sqlite" or "postgresql", for /health.
    kind: str

    async def open(self) -> None:
        """Connect and create the tables if needed; calling it again does nothing."""
        ...

    async def close(self) -> None:
        """Disconnect; calling it again does nothing."""
        ...

    async def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        ...

    async def append(
        self, type: str, source: str, data: Any, *, at: float, key: str | None = None
    ) -> HubEvent | None:
        """Store an event (committed when this returns); None when `key` is already stored."""
        ...

    async def find(self, key: str) -> HubEvent | None:
        """The event stored under `key`, or None."""
        ...

    async def events(
        self, *, since: int | None = None, type_prefix: str | None = None, limit: int = 100
    ) -> list[HubEvent]:
        """Events oldest first: those after id `since`, or else the newest `limit`."""
        ...

    async def last_id(self) -> int:
        """The newest event's id, 0 when there is none."""
        ...

    async def purge(self, *, before: float) -> int:
        """Delete events older than `before`; how many went."""
        ...

    async def put_snapshot(self, snapshot: PollerSnapshot) -> bool:
        """Store a poller's snapshot unless one with a higher fence is stored; whether it was."""
        ...

    async def snapshot(self, name: str) -> PollerSnapshot | None:
        """The poller's snapshot, or None."""
        ...

    async def snapshots(self) -> list[PollerSnapshot]:
        """Every poller's snapshot."""
        ...


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_EVENTS))


def _event(row: Sequence[Any]) -> HubEvent:
    return HubEvent(
        id=int(row[0]), at=float(row[1]), type=row[2], source=row[3], data=json.loads(row[4])
    )


def _snapshot(row: Sequence[Any]) -> PollerSnapshot:
    return PollerSnapshot(
        name=row[0],
        data=json.loads(row[1]),
        has_data=bool(row[2]),
        last_success=None if row[3] is None else float(row[3]),
        polled_at=None if row[4] is None else float(row[4]),
        consecutive_failures=int(row[5]),
        last_error=None if row[6] is None else json.loads(row[6]),
        holder=row[7],
        fence=int(row[8]),
    )


def _snapshot_values(s: PollerSnapshot) -> tuple[Any, ...]:
    return (
        s.name,
        _COMPACT.encode(s.data),
        int(s.has_data),
        s.last_success,
        s.polled_at,
        s.consecutive_failures,
        None if s.last_error is None else _COMPACT.encode(s.last_error),
        s.holder,
        s.fence,
    )


_SNAPSHOT_COLUMNS = (
    "name, data, has_data, last_success, polled_at, consecutive_failures, last_error, holder, fence"
)


# -- SQLite -------------------------------------------------------------------------------------


class SQLiteHubStore:
    """The hub's state in one SQLite file (WAL), beside the inbox and outbox tables.

    Every statement runs on a thread of the store's own, so a commit's fsync never blocks the
    event loop. Use it from the event loop that opened it.
    """

    kind = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] = "tether-hub.db",
        *,
        prefix: str = "tether_hub",
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = str(path)
        self.prefix = check_identifier(prefix, "prefix")
        self.busy_timeout = busy_timeout
        self._events = f"{self.prefix}_events"
        self._snapshots = f"{self.prefix}_snapshots"
        self._conn: sqlite3.Connection | None = None
        self._io: ThreadPoolExecutor | None = None
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SQLiteHubStore(path={self.path!r}, prefix={self.prefix!r})"

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn, io = self._conn, self._io
        if conn is None or io is None:
            raise StoreError("the hub store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(io, work, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"hub store: {exc}") from None

    async def open(self) -> None:
        async with self._opening:
            if self._conn is not None:
                return
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._io = ThreadPoolExecutor(1, thread_name_prefix="tether-hub-sqlite")
            loop = asyncio.get_running_loop()
            try:
                self._conn = await loop.run_in_executor(self._io, self._connect)
            except sqlite3.Error as exc:
                self._io.shutdown(wait=False)
                self._io = None
                raise StoreError(f"cannot open the hub store {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        # Events feed the outbox and the API; a committed one must survive the machine.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {self._events} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at REAL NOT NULL,
                type TEXT NOT NULL,
                source TEXT NOT NULL,
                data TEXT NOT NULL,
                key TEXT UNIQUE
            )"""
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {self._events}_at ON {self._events} (at)")
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {self._snapshots} (
                name TEXT PRIMARY KEY,
                data TEXT NOT NULL,
                has_data INTEGER NOT NULL,
                last_success REAL,
                polled_at REAL,
                consecutive_failures INTEGER NOT NULL,
                last_error TEXT,
                holder TEXT NOT NULL,
                fence INTEGER NOT NULL
            )"""
        )
        return conn

    async def close(self) -> None:
        async with self._opening:
            conn, self._conn = self._conn, None
            io, self._io = self._io, None
            if conn is not None and io is not None:
                await asyncio.get_running_loop().run_in_executor(io, conn.close)
            if io is not None:
                io.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def append(
        self, type: str, source: str, data: Any, *, at: float, key: str | None = None
    ) -> HubEvent | None:
        text = _COMPACT.encode(data)

        def work(conn: sqlite3.Connection) -> int | None:
            cursor = conn.execute(
                f"INSERT INTO {self._events} (at, type, source, data, key) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO NOTHING",
                (at, type, source, text, key),
            )
            return cursor.lastrowid if cursor.rowcount == 1 else None

        row_id = await self._run(work)
        if row_id is None:
            return None
        return HubEvent(id=row_id, at=at, type=type, source=source, data=json.loads(text))

    async def find(self, key: str) -> HubEvent | None:
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT id, at, type, source, data FROM {self._events} WHERE key = ?", (key,)
            ).fetchone()
        )
        return None if row is None else _event(row)

    async def events(
        self, *, since: int | None = None, type_prefix: str | None = None, limit: int = 100
    ) -> list[HubEvent]:
        conditions: list[str] = []
        values: list[Any] = []
        if since is not None:
            conditions.append("id > ?")
            values.append(since)
        if type_prefix:
            conditions.append("substr(type, 1, ?) = ?")
            values.extend((len(type_prefix), type_prefix))
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        order = "ASC" if since is not None else "DESC"
        sql = (
            f"SELECT id, at, type, source, data FROM {self._events} {where} "
            f"ORDER BY id {order} LIMIT ?"
        )
        values.append(_limit(limit))
        rows = await self._run(lambda conn: conn.execute(sql, values).fetchall())
        found = [_event(row) for row in rows]
        return found if since is not None else found[::-1]

    async def last_id(self) -> int:
        row = await self._run(
            lambda conn: conn.execute(f"SELECT max(id) FROM {self._events}").fetchone()
        )
        return int(row[0]) if row is not None and row[0] is not None else 0

    async def purge(self, *, before: float) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(f"DELETE FROM {self._events} WHERE at < ?", (before,)).rowcount

        return await self._run(work)

    async def put_snapshot(self, snapshot: PollerSnapshot) -> bool:
        values = _snapshot_values(snapshot)

        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                f"INSERT INTO {self._snapshots} ({_SNAPSHOT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET data = excluded.data, "
                "has_data = excluded.has_data, last_success = excluded.last_success, "
                "polled_at = excluded.polled_at, "
                "consecutive_failures = excluded.consecutive_failures, "
                "last_error = excluded.last_error, holder = excluded.holder, "
                f"fence = excluded.fence WHERE excluded.fence >= {self._snapshots}.fence",
                values,
            )
            return cursor.rowcount == 1

        return await self._run(work)

    async def snapshot(self, name: str) -> PollerSnapshot | None:
        row = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_SNAPSHOT_COLUMNS} FROM {self._snapshots} WHERE name = ?", (name,)
            ).fetchone()
        )
        return None if row is None else _snapshot(row)

    async def snapshots(self) -> list[PollerSnapshot]:
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {_SNAPSHOT_COLUMNS} FROM {self._snapshots} ORDER BY name"
            ).fetchall()
        )
        return [_snapshot(row) for row in rows]


# -- PostgreSQL ---------------------------------------------------------------------------------

_CONNECT_TIMEOUT = 10.0
_COMMAND_TIMEOUT = 30.0


def _database_errors() -> tuple[type[BaseException], ...]:
    import asyncpg  # noqa: PLC0415 - an optional dependency

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


def _safe(exc: BaseException) -> str:
    # asyncpg's messages name the server and the user, never the password; keep the class too.
    return f"{type(exc).__name__}: {exc}"


class PostgresHubStore:
    """The hub's state on PostgreSQL, shared by every hub of a deployment.

    Args:
        dsn: a libpq connection URL.
        schema: the schema holding the tables, created if missing.
        prefix: the tables' name prefix.
    """

    kind = "postgresql"

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        prefix: str = "tether_hub",
        min_size: int = 1,
        max_size: int = 5,
    ) -> None:
        self._dsn = dsn
        self.schema = check_identifier(schema, "schema")
        self.prefix = check_identifier(prefix, "prefix")
        self._events = f"{self.schema}.{self.prefix}_events"
        self._snapshots = f"{self.schema}.{self.prefix}_snapshots"
        self.min_size = min_size
        self.max_size = max_size
        self._pool: Any = None
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:
        # The DSN may carry a password: only the tables are named.
        return f"PostgresHubStore(schema={self.schema!r}, prefix={self.prefix!r})"

    async def open(self) -> None:
        async with self._opening:
            if self._pool is not None:
                return
            try:
                import asyncpg  # noqa: PLC0415 - an optional dependency
            except ImportError:
                raise ConfigError(
                    "a PostgreSQL hub store needs asyncpg: pip install 'tether[postgres]'"
                ) from None
            try:
                pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    timeout=_CONNECT_TIMEOUT,
                    command_timeout=_COMMAND_TIMEOUT,
                    server_settings={
                        "synchronous_commit": "on",
                        "application_name": "tether-hub",
                    },
                )
            except _database_errors() as exc:
                raise StoreError(
                    f"cannot connect to the PostgreSQL hub store: {_safe(exc)}"
                ) from None
            try:
                async with pool.acquire() as conn, conn.transaction():
                    # Two hubs creating the tables at once would collide in the catalog.
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._events)
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                    await conn.execute(
                        f"""CREATE TABLE IF NOT EXISTS {self._events} (
                            id BIGSERIAL PRIMARY KEY,
                            at DOUBLE PRECISION NOT NULL,
                            type TEXT NOT NULL,
                            source TEXT NOT NULL,
                            data TEXT NOT NULL,
                            key TEXT UNIQUE
                        )"""
                    )
                    await conn.execute(
                        f"CREATE INDEX IF NOT EXISTS {self.prefix}_events_at ON {self._events} (at)"
                    )
                    await conn.execute(
                        f"""CREATE TABLE IF NOT EXISTS {self._snapshots} (
                            name TEXT PRIMARY KEY,
                            data TEXT NOT NULL,
                            has_data INTEGER NOT NULL,
                            last_success DOUBLE PRECISION,
                            polled_at DOUBLE PRECISION,
                            consecutive_failures INTEGER NOT NULL,
                            last_error TEXT,
                            holder TEXT NOT NULL,
                            fence BIGINT NOT NULL
                        )"""
                    )
            except _database_errors() as exc:
                await pool.close()
                raise StoreError(f"cannot prepare the PostgreSQL hub store: {_safe(exc)}") from None
            self._pool = pool

    async def close(self) -> None:
        async with self._opening:
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close()

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        pool = self._pool
        if pool is None:
            raise StoreError("the hub store is not open")
        try:
            return list(await pool.fetch(sql, *args))
        except _database_errors() as exc:
            raise StoreError(f"hub store: {_safe(exc)}") from None

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def append(
        self, type: str, source: str, data: Any, *, at: float, key: str | None = None
    ) -> HubEvent | None:
        pool = self._pool
        if pool is None:
            raise StoreError("the hub store is not open")
        text = _COMPACT.encode(data)
        try:
            async with pool.acquire() as conn, conn.transaction():
                # Ids are handed out and committed in one order, so a reader that tails "after
                # id N" never passes over an event that was still being committed.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._events)
                row_id = await conn.fetchval(
                    f"INSERT INTO {self._events} (at, type, source, data, key) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING RETURNING id",
                    at,
                    type,
                    source,
                    text,
                    key,
                )
        except _database_errors() as exc:
            raise StoreError(f"hub store: {_safe(exc)}") from None
        if row_id is None:
            return None
        return HubEvent(id=int(row_id), at=at, type=type, source=source, data=json.loads(text))

    async def find(self, key: str) -> HubEvent | None:
        rows = await self._fetch(
            f"SELECT id, at, type, source, data FROM {self._events} WHERE key = $1", key
        )
        return _event(rows[0]) if rows else None

    async def events(
        self, *, since: int | None = None, type_prefix: str | None = None, limit: int = 100
    ) -> list[HubEvent]:
        conditions: list[str] = []
        values: list[Any] = []
        if since is not None:
            values.append(since)
            conditions.append(f"id > ${len(values)}")
        if type_prefix:
            values.append(type_prefix)
            conditions.append(f"left(type, length(${len(values)})) = ${len(values)}")
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        order = "ASC" if since is not None else "DESC"
        values.append(_limit(limit))
        rows = await self._fetch(
            f"SELECT id, at, type, source, data FROM {self._events} {where} "
            f"ORDER BY id {order} LIMIT ${len(values)}",
            *values,
        )
        found = [_event(row) for row in rows]
        return found if since is not None else found[::-1]

    async def last_id(self) -> int:
        rows = await self._fetch(f"SELECT max(id) FROM {self._events}")
        return int(rows[0][0]) if rows and rows[0][0] is not None else 0

    async def purge(self, *, before: float) -> int:
        rows = await self._fetch(
            f"WITH gone AS (DELETE FROM {self._events} WHERE at < $1 RETURNING 1) "
            "SELECT count(*) FROM gone",
            before,
        )
        return int(rows[0][0])

    async def put_snapshot(self, snapshot: PollerSnapshot) -> bool:
        rows = await self._fetch(
            f"INSERT INTO {self._snapshots} ({_SNAPSHOT_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (name) DO UPDATE SET data = excluded.data, "
            "has_data = excluded.has_data, last_success = excluded.last_success, "
            "polled_at = excluded.polled_at, "
            "consecutive_failures = excluded.consecutive_failures, "
            "last_error = excluded.last_error, holder = excluded.holder, "
            f"fence = excluded.fence WHERE excluded.fence >= {self._snapshots}.fence "
            "RETURNING 1",
            *_snapshot_values(snapshot),
        )
        return bool(rows)

    async def snapshot(self, name: str) -> PollerSnapshot | None:
        rows = await self._fetch(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM {self._snapshots} WHERE name = $1", name
        )
        return _snapshot(rows[0]) if rows else None

    async def snapshots(self) -> list[PollerSnapshot]:
        rows = await self._fetch(f"SELECT {_SNAPSHOT_COLUMNS} FROM {self._snapshots} ORDER BY name")
        return [_snapshot(row) for row in rows]


# -- choosing one -------------------------------------------------------------------------------


def split_store_location(location: str) -> tuple[Literal["sqlite", "postgresql"], str, str]:
    """(kind, location, schema) of a hub store location.

    A PostgreSQL URL may name its schema with a `schema=` query parameter, which is taken out
    (libpq does not know it); SQLite locations are a path or `sqlite:///path`.
    """
    kind, where = parse_store_location(
        location.strip(), what="hub store", kinds=("sqlite", "postgresql")
    )
    if kind != "postgresql":
        return "sqlite", where, "public"
    parts = urlsplit(where)
    schema = "public"
    kept = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "schema":
            schema = check_identifier(value, "schema")
        else:
            kept.append((name, value))
    return "postgresql", urlunsplit(parts._replace(query=urlencode(kept))), schema


def open_hub_store(location: str | os.PathLike[str], *, prefix: str = "tether_hub") -> HubStore:
    """The hub store at `location` (not yet opened): a SQLite path or a PostgreSQL URL."""
    kind, where, schema = split_store_location(os.fspath(location))
    if kind == "postgresql":
        return PostgresHubStore(where, schema=schema, prefix=prefix)
    return SQLiteHubStore(where, prefix=prefix)
