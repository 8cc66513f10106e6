"""The PostgreSQL inbox: asyncpg, group commit on insert, `FOR UPDATE SKIP LOCKED` leases.

Deliveries queue in memory; one writer task takes everything queued and inserts it with a
single statement (one round trip, one commit, one WAL flush), so deliveries that arrive while a
commit is in flight share the next one. Every connection runs with synchronous_commit=on: a
commit that returned is on disk, whatever the server's default says.

Dispatchers in any number of processes claim due events with `FOR UPDATE SKIP LOCKED`, so
they never wait on each other and never claim the same event twice while a lease holds.
"""

# ruff: noqa: S608 - table and schema names pass check_identifier; every value is bound

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tether._errors import ConfigError
from tether.stores._inbox import EVENT_COLUMNS as _COLUMNS
from tether.stores._inbox import (
    EventStatus,
    InboxEvent,
    Lease,
    NewEvent,
    StoreError,
    StoreStats,
    check_identifier,
    encode_handled,
    encode_headers,
    finished_statuses,
)
from tether.stores._inbox import event_from_row as _event

__all__ = ["PostgresInboxStore"]

logger = logging.getLogger("tether.stores.inbox")

#: How many of the earliest pending events next_due() looks at.
_DUE_WINDOW = 1000
_CONNECT_TIMEOUT = 10.0
_COMMAND_TIMEOUT = 30.0
#: The most deliveries one INSERT statement carries (ten parameters each; PostgreSQL allows
#: 65 535). A larger batch is several statements in one transaction.
_ROWS_PER_STATEMENT = 128


@dataclass(slots=True)
class _Pending:
    event: NewEvent
    future: asyncio.Future[int | None]


def _parameters(batch: list[_Pending]) -> list[object]:
    """The batch's rows, flattened in the order of _insert_sql's placeholders."""
    values: list[object] = []
    for item in batch:
        e = item.event
        values += (
            e.source,
            e.event_id,
            e.event_type,
            e.received_at,
            encode_headers(e.headers),
            e.body,
            e.scheme,
            e.secret_index,
            e.signed_at,
            e.msg_id,
        )
    return values


def _database_errors() -> tuple[type[BaseException], ...]:
    import asyncpg  # noqa: PLC0415 - an optional dependency

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class PostgresInboxStore:
    """The inbox on PostgreSQL, for several receivers and dispatchers sharing one database.

    Args:
        dsn: a libpq connection URL, e.g. "postgresql://user@127.0.0.1:5432/app".
        schema: the schema holding the table, created if missing.
        table: the table's name.
        min_size, max_size: the connection pool's bounds.
        max_batch: the most deliveries one insert commit carries.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        table: str = "tether_inbox",
        min_size: int = 2,
        max_size: int = 10,
        max_batch: int = 1024,
    ) -> None:
        if max_batch < 1:
            raise ConfigError("max_batch must be at least 1")
        if not 1 <= min_size <= max_size:
            raise ConfigError("the pool needs 1 <= min_size <= max_size")
        self._dsn = dsn
        self.schema = check_identifier(schema, "schema")
        self.table = check_identifier(table, "table")
        self.min_size = min_size
        self.max_size = max_size
        self.max_batch = max_batch
        self.stats = StoreStats()
        self._qualified = f"{self.schema}.{self.table}"
        self._insert_sqls: dict[int, str] = {}
        self._pool: Any = None
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self._stopping = False
        self._closed = False

    def __repr__(self) -> str:
        # The DSN may carry a password: only the table is shown.
        return f"PostgresInboxStore(table={self._qualified!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        async with self._opening:
            if self._pool is not None:
                return
            if self._closed:
                raise StoreError("this store was closed; make a new one")
            try:
                import asyncpg  # noqa: PLC0415 - an optional dependency
            except ImportError:
                raise ConfigError(
                    "the PostgreSQL inbox needs asyncpg: pip install 'tether[postgres]'"
                ) from None
            try:
                pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    # Every wait is bounded: connecting, and each statement.
                    timeout=_CONNECT_TIMEOUT,
                    command_timeout=_COMMAND_TIMEOUT,
                    # Room for the INSERT of every row count up to _ROWS_PER_STATEMENT.
                    statement_cache_size=_ROWS_PER_STATEMENT + 100,
                    server_settings={
                        # A commit that returned must be on disk: that is what a 2xx promises.
                        "synchronous_commit": "on",
                        "application_name": "tether-inbox",
                    },
                )
            except _database_errors() as exc:
                raise StoreError(f"cannot connect to the PostgreSQL inbox: {_safe(exc)}") from None
            try:
                async with pool.acquire() as conn:
                    await self._create_schema(conn)
                    if await conn.fetchval("SHOW fsync") != "on":
                        logger.warning(
                            "PostgreSQL runs with fsync=off: acknowledged webhooks can be lost "
                            "if the machine fails"
                        )
            except _database_errors() as exc:
                await pool.close()
                raise StoreError(f"cannot prepare the PostgreSQL inbox: {_safe(exc)}") from None
            self._pool = pool
            self._writer = asyncio.create_task(self._write_loop(), name="tether-inbox-pg-writer")

    async def close(self) -> None:
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            # Queued deliveries commit first: close() never drops a write.
            self._stopping = True
            self._wake.set()
            await writer
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(StoreError("the inbox store closed before committing"))
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> PostgresInboxStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _create_schema(self, conn: Any) -> None:
        q = self._qualified
        async with conn.transaction():
            # Two processes creating the table at once would collide in the catalog.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", q)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {q} (
                    id BIGSERIAL PRIMARY KEY,
                    source TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    event_type TEXT,
                    status TEXT NOT NULL DEFAULT 'pending',
                    attempts INTEGER NOT NULL DEFAULT 0,
                    received_at DOUBLE PRECISION NOT NULL,
                    next_attempt_at DOUBLE PRECISION NOT NULL,
                    completed_at DOUBLE PRECISION,
                    last_error TEXT,
                    handled TEXT NOT NULL DEFAULT '[]',
                    headers TEXT NOT NULL,
                    body BYTEA NOT NULL,
                    scheme TEXT NOT NULL,
                    secret_index INTEGER,
                    signed_at BIGINT,
                    msg_id TEXT,
                    claimed_until DOUBLE PRECISION,
                    claim_token TEXT,
                    UNIQUE (source, event_id)
                )"""
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {self.table}_due ON {q} (next_attempt_at, id) "
                "WHERE status = 'pending'"
            )
            # Purges and counts of finished events use it. Partial, so that storing a delivery
            # (always pending) does not touch it: a row enters it once, when it is finished.
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {self.table}_received ON {q} (status, received_at) "
                "WHERE status <> 'pending'"
            )

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        if self._pool is None:
            if self._closed:
                raise StoreError("the inbox store is closed")
            await self.open()
        try:
            async with self._pool.acquire(timeout=_CONNECT_TIMEOUT) as conn:
                yield conn
        except _database_errors() as exc:
            raise StoreError(f"PostgreSQL inbox: {_safe(exc)}") from None

    # -- group commit ----------------------------------------------------------------------------

    def _insert_sql(self, rows: int) -> str:
        """The INSERT of `rows` deliveries in one statement; a duplicate (source, event_id) is
        skipped, whether it is already stored or earlier in the same statement.

        A VALUES list of scalar parameters rather than unnest() over one array per column:
        asyncpg checks every element of an array parameter for nesting with isinstance() against
        collections.abc, which cost more than the rest of encoding the batch. asyncpg prepares
        each row count once and keeps it in its statement cache.
        """
        sql = self._insert_sqls.get(rows)
        if sql is None:
            values = ", ".join(
                "(${0}, ${1}, ${2}, ${3}, ${3}, ${4}, ${5}, ${6}, ${7}, ${8}, ${9})".format(
                    *range(n * 10 + 1, n * 10 + 11)
                )
                for n in range(rows)
            )
            sql = self._insert_sqls[rows] = (
                f"INSERT INTO {self._qualified} (source, event_id, event_type, received_at, "
                "next_attempt_at, headers, body, scheme, secret_index, signed_at, msg_id) "
                f"VALUES {values} ON CONFLICT (source, event_id) DO NOTHING "
                "RETURNING id, source, event_id"
            )
        return sql

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            while self._pending:
                batch = [
                    self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))
                ]
                failure = await self._insert(batch)
                if failure is None:
                    continue
                if len(batch) == 1:
                    if not batch[0].future.done():
                        batch[0].future.set_exception(failure)
                    continue
                # One bad delivery must not fail the others that shared its commit.
                for item in batch:
                    failure = await self._insert([item])
                    if failure is not None and not item.future.done():
                        item.future.set_exception(failure)

    async def _insert(self, batch: list[_Pending]) -> BaseException | None:
        """Insert `batch` in one commit and settle its futures; the failure, if any."""
        try:
            async with self._connection() as conn:
                if len(batch) <= _ROWS_PER_STATEMENT:
                    rows = await conn.fetch(self._insert_sql(len(batch)), *_parameters(batch))
                else:
                    rows = []
                    async with conn.transaction():
                        for start in range(0, len(batch), _ROWS_PER_STATEMENT):
                            chunk = batch[start : start + _ROWS_PER_STATEMENT]
                            rows += await conn.fetch(
                                self._insert_sql(len(chunk)), *_parameters(chunk)
                            )
        except Exception as exc:
            return (
                exc
                if isinstance(exc, StoreError)
                else StoreError(f"PostgreSQL inbox: {_safe(exc)}")
            )
        inserted = {(row[1], row[2]): int(row[0]) for row in rows}
        self.stats.record_batch(len(batch), len(inserted))
        for item in batch:
            # The same delivery twice in one batch: the first is new, the rest duplicates.
            row_id = inserted.pop((item.event.source, item.event.event_id), None)
            if not item.future.done():
                item.future.set_result(row_id)
        return None

    # -- the protocol ----------------------------------------------------------------------------

    async def add(self, event: NewEvent) -> int | None:
        if self._writer is None or self._writer.done():
            if self._closed:
                raise StoreError("the inbox store is closed")
            await self.open()
            if self._writer is None or self._writer.done():
                raise StoreError("the PostgreSQL inbox writer stopped")
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(event, future))
        self._wake.set()
        return await future

    async def claim(self, *, now: float, limit: int, lease: float) -> list[Lease]:
        token = uuid.uuid4().hex
        until = now + lease
        q = self._qualified
        sql = (
            f"UPDATE {q} SET claimed_until = $1, claim_token = $2, attempts = attempts + 1 "
            f"WHERE id IN (SELECT id FROM {q} WHERE status = 'pending' AND next_attempt_at <= $3 "
            "AND (claimed_until IS NULL OR claimed_until <= $3) ORDER BY next_attempt_at, id "
            f"LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(sql, until, token, now, limit)
        events = sorted((_event(row) for row in rows), key=lambda e: (e.next_attempt_at, e.id))
        return [Lease(event, token, until) for event in events]

    async def renew(self, lease: Lease, *, handled: Sequence[str], until: float) -> Lease | None:
        sql = (
            f"UPDATE {self._qualified} SET handled = $1, claimed_until = $2 "
            "WHERE id = $3 AND claim_token = $4 AND status = 'pending'"
        )
        async with self._connection() as conn:
            done = await conn.execute(
                sql, encode_handled(handled), until, lease.event.id, lease.token
            )
        if not _one_row(done):
            return None
        return Lease(lease.event, lease.token, until)

    async def complete(
        self, lease: Lease, *, status: EventStatus, handled: Sequence[str], now: float
    ) -> bool:
        if status not in (EventStatus.DELIVERED, EventStatus.IGNORED):
            raise ConfigError("complete() finishes an event as DELIVERED or IGNORED")
        sql = (
            f"UPDATE {self._qualified} SET status = $1, handled = $2, completed_at = $3, "
            "claimed_until = NULL, claim_token = NULL "
            "WHERE id = $4 AND claim_token = $5 AND status = 'pending'"
        )
        async with self._connection() as conn:
            done = await conn.execute(
                sql, status.value, encode_handled(handled), now, lease.event.id, lease.token
            )
        return _one_row(done)

    async def fail(
        self,
        lease: Lease,
        *,
        error: str,
        handled: Sequence[str],
        retry_at: float | None,
        now: float,
    ) -> bool:
        q = self._qualified
        async with self._connection() as conn:
            if retry_at is None:
                done = await conn.execute(
                    f"UPDATE {q} SET status = 'dead', last_error = $1, handled = $2, "
                    "completed_at = $3, claimed_until = NULL, claim_token = NULL "
                    "WHERE id = $4 AND claim_token = $5 AND status = 'pending'",
                    error,
                    encode_handled(handled),
                    now,
                    lease.event.id,
                    lease.token,
                )
            else:
                done = await conn.execute(
                    f"UPDATE {q} SET last_error = $1, handled = $2, next_attempt_at = $3, "
                    "claimed_until = NULL, claim_token = NULL "
                    "WHERE id = $4 AND claim_token = $5 AND status = 'pending'",
                    error,
                    encode_handled(handled),
                    retry_at,
                    lease.event.id,
                    lease.token,
                )
        return _one_row(done)

    async def get(self, event_id: int) -> InboxEvent | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM {self._qualified} WHERE id = $1", event_id
            )
        return None if row is None else _event(row)

    async def find(self, source: str, event_id: str) -> InboxEvent | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM {self._qualified} WHERE source = $1 AND event_id = $2",
                source,
                event_id,
            )
        return None if row is None else _event(row)

    async def list(
        self,
        *,
        source: str | None = None,
        status: EventStatus | None = None,
        event_type: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[InboxEvent]:
        clauses: list[str] = []
        params: list[object] = []
        filters: tuple[tuple[str, object | None], ...] = (
            ("source", source),
            ("event_type", event_type),
            ("status", None if status is None else EventStatus(status).value),
        )
        for column, value in filters:
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${len(params)}")
        if before_id is not None:
            params.append(before_id)
            clauses.append(f"id < ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(max(0, limit))
        sql = (
            f"SELECT {_COLUMNS} FROM {self._qualified} {where} ORDER BY id DESC "
            f"LIMIT ${len(params)}"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        return [_event(row) for row in rows]

    async def counts(self) -> dict[EventStatus, int]:
        async with self._connection() as conn:
            # Pending rows are counted in the due index, finished ones in the received one.
            rows = await conn.fetch(
                f"SELECT 'pending', count(*) FROM {self._qualified} WHERE status = 'pending' "
                f"UNION ALL SELECT status, count(*) FROM {self._qualified} "
                "WHERE status <> 'pending' GROUP BY status"
            )
        found = {EventStatus(row[0]): int(row[1]) for row in rows}
        return {status: found.get(status, 0) for status in EventStatus}

    async def next_due(self) -> float | None:
        # Only the earliest rows by due time (an index range): a backlog of retries scheduled
        # far ahead costs nothing here. Callers cap their wait anyway.
        async with self._connection() as conn:
            value = await conn.fetchval(
                "SELECT min(greatest(next_attempt_at, coalesce(claimed_until, 0))) FROM "
                f"(SELECT next_attempt_at, claimed_until FROM {self._qualified} "
                f"WHERE status = 'pending' ORDER BY next_attempt_at LIMIT {_DUE_WINDOW}) AS due"
            )
        return None if value is None else float(value)

    async def replay(
        self,
        *,
        ids: Iterable[int] | None = None,
        status: EventStatus | None = None,
        source: str | None = None,
        now: float,
    ) -> int:
        params: list[object] = [now]
        if ids is not None:
            params.append([int(i) for i in ids])
            where = "id = ANY($2::bigint[])"
        elif status is None:
            raise ConfigError("replay() needs ids= or status=")
        else:
            params.append(EventStatus(status).value)
            where = "status = $2"
            if source is not None:
                params.append(source)
                where += " AND source = $3"
        sql = (
            f"UPDATE {self._qualified} SET status = 'pending', attempts = 0, "
            "next_attempt_at = $1, handled = '[]', completed_at = NULL, claimed_until = NULL, "
            f"claim_token = NULL WHERE status != 'pending' AND {where}"
        )
        async with self._connection() as conn:
            done = await conn.execute(sql, *params)
        return _row_count(done)

    async def purge(
        self,
        *,
        before: float,
        statuses: Iterable[EventStatus],
        source: str | None = None,
    ) -> int:
        chosen = finished_statuses(statuses)
        if not chosen:
            return 0
        # `status <> 'pending'` is implied by the list, and spelled out so the partial index serves.
        sql = (
            f"DELETE FROM {self._qualified} WHERE status = ANY($1::text[]) "
            "AND status <> 'pending' AND received_at < $2"
        )
        params: list[object] = [list(chosen), before]
        if source is not None:
            sql += " AND source = $3"
            params.append(source)
        async with self._connection() as conn:
            done = await conn.execute(sql, *params)
        return _row_count(done)


def _row_count(status: str) -> int:
    # asyncpg returns the command tag, e.g. "UPDATE 3" or "DELETE 0".
    try:
        return int(status.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return 0


def _one_row(status: str) -> bool:
    return _row_count(status) == 1


def _safe(exc: BaseException) -> str:
    # asyncpg messages name the user and database, never the password; keep the class for
    # the reader and cut the length.
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
