"""The PostgreSQL outbox: asyncpg, `FOR UPDATE SKIP LOCKED` leases, LISTEN/NOTIFY wake-ups.

The connection pool is the inbox store's (synchronous_commit=on on every connection, so a
commit that returned is on disk). Workers in any number of processes claim due deliveries with
`FOR UPDATE SKIP LOCKED`: they never wait on each other and never claim one delivery twice
while its lease holds. Each enqueue sends a NOTIFY inside its transaction, so idle workers in
every process wake when it commits instead of at their next poll.
"""

# ruff: noqa: S608 - table and schema names pass check_identifier; every value is bound

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from tether._errors import ConfigError
from tether.stores._inbox import NewEvent, StoreError
from tether.stores._inbox_postgres import PostgresInboxStore, _database_errors, _row_count, _safe
from tether.webhooks._outbox_model import (
    AttemptResult,
    DeliveryAttempt,
    DeliveryFilter,
    DeliveryStatus,
    Endpoint,
    NewMessage,
    OutboxDelivery,
    OutboxLease,
    OutboxStats,
    RecordOutcome,
    encode_json,
    encode_secrets,
)
from tether.webhooks._outbox_sql import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    ENDPOINT_COLUMNS,
    Tables,
    attempt_from_row,
    delivery_from_row,
    due_condition,
    endpoint_from_row,
    enqueue_statement_pg,
    fan_out_sql,
    filter_clause,
    numbered,
    schema_statements,
)

__all__ = ["PostgresOutboxStore"]

logger = logging.getLogger("tether.stores.outbox")

#: Pending rows next_due() looks at, earliest first.
_DUE_WINDOW = 64


@dataclass(frozen=True, slots=True)
class _Delivered:
    """A successful attempt waiting in the group-commit queue."""

    lease: OutboxLease
    result: AttemptResult
    now: float


class _Database(PostgresInboxStore):
    """The inbox store's connection pool and group-commit writer, on the outbox's tables.

    The writer batches what `add()` queued into one statement and one commit; here the queue
    carries successful attempts (`_Delivered`) instead of inbox events, and `_insert` records
    a whole batch of them at once.
    """

    def __init__(self, dsn: str, tables: Tables, schema: str, min_size: int, max_size: int) -> None:
        super().__init__(
            dsn, schema=schema, table=tables.prefix, min_size=min_size, max_size=max_size
        )
        self._tables = tables
        self._record = self._record_sql()

    async def _create_schema(self, conn: Any) -> None:
        async with conn.transaction():
            # Two processes creating the tables at once would collide in the catalog.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", self._tables.deliveries
            )
            # Running DDL on tables that workers are using would take locks that can deadlock
            # with their statements; the last object created says everything exists.
            last = f"{self._tables.schema}.{self._tables.index('msg_created')}"
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", last):
                return
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._tables.schema}")
            for statement in schema_statements(self._tables, sqlite=False):
                await conn.execute(statement)

    def _record_sql(self) -> str:
        t = self._tables
        return (
            "WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::int4[], "
            "$5::float8[], $6::float8[], $7::int4[], $8::text[], $9::text[], $10::text[], "
            "$11::float8[]) AS r(id, msg_id, endpoint_id, attempt, started_at, latency, "
            "status_code, response, token, status, completed_at)), "
            f"a AS (INSERT INTO {t.attempts} (delivery_id, msg_id, endpoint_id, attempt, "
            "started_at, latency, status_code, outcome, response) SELECT id, msg_id, "
            "endpoint_id, attempt, started_at, latency, status_code, 'delivered', response "
            "FROM r), "
            f"e AS (UPDATE {t.endpoints} SET failing_since = NULL WHERE id IN "
            "(SELECT endpoint_id FROM r) AND failing_since IS NOT NULL), "
            f"u AS (UPDATE {t.deliveries} d SET status = r.status, completed_at = r.completed_at, "
            "last_status = r.status_code, last_error = NULL, claimed_until = NULL, "
            "claim_token = NULL FROM r WHERE d.id = r.id AND d.claim_token = r.token "
            "AND d.status = 'pending' RETURNING d.id) SELECT id FROM u"
        )

    async def _insert(self, batch: list[Any]) -> BaseException | None:
        done: list[_Delivered] = [item.event for item in batch]
        try:
            async with self._connection() as conn:
                rows = await conn.fetch(
                    self._record,
                    [x.lease.delivery.id for x in done],
                    [x.lease.delivery.msg_id for x in done],
                    [x.lease.delivery.endpoint_id for x in done],
                    [x.lease.delivery.attempts for x in done],
                    [x.result.started_at for x in done],
                    [x.result.latency for x in done],
                    [x.result.status_code for x in done],
                    [x.result.response for x in done],
                    [x.lease.token for x in done],
                    [x.result.status.value for x in done],
                    [x.now for x in done],
                )
        except Exception as exc:
            return (
                exc
                if isinstance(exc, StoreError)
                else StoreError(f"PostgreSQL outbox: {_safe(exc)}")
            )
        held = {int(row[0]) for row in rows}
        for item, x in zip(batch, done, strict=True):
            if not item.future.done():
                item.future.set_result(1 if x.lease.delivery.id in held else None)
        return None


def _endpoint_params(endpoint: Endpoint) -> tuple[object, ...]:
    return (
        endpoint.url,
        endpoint.description,
        endpoint.enabled,
        endpoint.disabled_reason,
        encode_json(list(endpoint.event_types)),
        encode_json([list(pair) for pair in endpoint.headers]),
        encode_secrets(endpoint.secrets),
        endpoint.rate_limit,
        endpoint.timeout,
        None if endpoint.schedule is None else encode_json(list(endpoint.schedule)),
        endpoint.ordered,
        endpoint.updated_at,
    )


class PostgresOutboxStore:
    """The outbox on PostgreSQL, for several worker processes sharing one database.

    Args:
        dsn: a libpq connection URL, e.g. "postgresql://user@127.0.0.1:5432/app".
        schema: the schema holding the tables, created if missing.
        prefix: the tables' name prefix.
        min_size, max_size: the connection pool's bounds.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        prefix: str = "tether_outbox",
        min_size: int = 2,
        max_size: int = 10,
    ) -> None:
        self._dsn = dsn
        self.tables = Tables(prefix, schema)
        self.stats = OutboxStats()
        self._db = _Database(dsn, self.tables, schema, min_size, max_size)
        self._channel = f"{schema}.{prefix}"
        self._listener: Any = None
        self._wakers: list[Callable[[], object]] = []
        self._relisten: asyncio.Task[None] | None = None
        self._closing = False
        self._fan_out = numbered(fan_out_sql(self.tables, sqlite=False))
        self._enqueue = enqueue_statement_pg(self.tables)
        self._notify_wanted = asyncio.Event()
        self._notifier: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        # The DSN may carry a password: only the tables are shown.
        return f"PostgresOutboxStore(prefix={self.tables.deliveries.rsplit('_', 1)[0]!r})"

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        self._closing = True
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notifier
        relisten, self._relisten = self._relisten, None
        if relisten is not None:
            relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relisten
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=5)
        await self._db.close()

    async def __aenter__(self) -> PostgresOutboxStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._db._connection()

    # -- endpoints -------------------------------------------------------------------------

    async def save_endpoint(self, endpoint: Endpoint, *, create: bool) -> None:
        t = self.tables
        params = _endpoint_params(endpoint)
        if create:
            sql = (
                f"INSERT INTO {t.endpoints} (url, description, enabled, disabled_reason, "
                "event_types, headers, secrets, rate_limit, timeout, schedule, ordered, "
                "updated_at, id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                "$11, $12, $13, $14) ON CONFLICT (id) DO NOTHING"
            )
            async with self._connection() as conn:
                done = await conn.execute(sql, *params, endpoint.id, endpoint.created_at)
            if _row_count(done) != 1:
                raise ConfigError(f"an endpoint with id {endpoint.id!r} exists")
            return
        sql = (
            f"UPDATE {t.endpoints} SET url = $1, description = $2, enabled = $3, "
            "disabled_reason = $4, event_types = $5, headers = $6, secrets = $7, "
            "rate_limit = $8, timeout = $9, schedule = $10, ordered = $11, updated_at = $12 "
            "WHERE id = $13"
        )
        async with self._connection() as conn:
            done = await conn.execute(sql, *params, endpoint.id)
        if _row_count(done) != 1:
            raise ConfigError(f"no endpoint with id {endpoint.id!r}")

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {ENDPOINT_COLUMNS} FROM {self.tables.endpoints} WHERE id = $1",
                endpoint_id,
            )
        return None if row is None else endpoint_from_row(row)

    async def list_endpoints(self) -> list[Endpoint]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {ENDPOINT_COLUMNS} FROM {self.tables.endpoints} ORDER BY created_at, id"
            )
        return [endpoint_from_row(row) for row in rows]

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        t = self.tables
        async with self._connection() as conn, conn.transaction():
            await conn.execute(f"DELETE FROM {t.deliveries} WHERE endpoint_id = $1", endpoint_id)
            await conn.execute(f"DELETE FROM {t.attempts} WHERE endpoint_id = $1", endpoint_id)
            done = await conn.execute(f"DELETE FROM {t.endpoints} WHERE id = $1", endpoint_id)
        return _row_count(done) == 1

    async def set_enabled(
        self, endpoint_id: str, *, enabled: bool, reason: str | None, now: float
    ) -> bool:
        t = self.tables
        async with self._connection() as conn, conn.transaction():
            if not enabled:
                return await _disable(conn, t, endpoint_id, reason, now)
            done = await conn.execute(
                f"UPDATE {t.endpoints} SET enabled = TRUE, disabled_reason = NULL, "
                "failing_since = NULL, paused_until = 0, updated_at = $1 WHERE id = $2",
                now,
                endpoint_id,
            )
        return _row_count(done) == 1

    # -- messages --------------------------------------------------------------------------

    async def enqueue_in(self, conn: Any, message: NewMessage) -> tuple[str, bool]:
        """Run the enqueue on `conn`, inside its open transaction; the caller commits."""
        if not hasattr(conn, "is_in_transaction") or not hasattr(conn, "fetchval"):
            raise ConfigError("enqueue_in() on PostgreSQL takes an asyncpg connection")
        if not conn.is_in_transaction():
            raise ConfigError(
                "enqueue_in() must run inside your transaction: `async with conn.transaction():`"
            )
        t = self.tables
        m = message
        # The caller's commit now carries the message: it must be flushed to disk before it
        # returns, whatever this session or the server says (LOCAL: this transaction only).
        await conn.execute("SET LOCAL synchronous_commit TO on")
        seq = await conn.fetchval(
            f"INSERT INTO {t.messages} (msg_id, event_type, payload, idempotency_key, "
            "ordering_key, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING "
            "RETURNING seq",
            m.msg_id,
            m.event_type,
            m.payload,
            m.idempotency_key,
            m.ordering_key,
            m.created_at,
        )
        if seq is None:
            existing = await conn.fetchval(
                f"SELECT msg_id FROM {t.messages} WHERE idempotency_key = $1", m.idempotency_key
            )
            if existing is None:
                raise StoreError(f"message id {m.msg_id!r} collided with a stored one")
            return str(existing), False
        await conn.execute(
            self._fan_out,
            seq,
            m.msg_id,
            m.event_type,
            m.ordering_key,
            m.created_at,
            m.created_at,
            m.created_at,
            m.event_type,
            m.event_type,
        )
        # Delivered to listeners when (and only if) the caller's transaction commits.
        await conn.execute("SELECT pg_notify($1, '')", self._channel)
        return m.msg_id, True

    async def enqueue(self, message: NewMessage) -> tuple[str, bool]:
        m = message
        async with self._connection() as conn:
            seq = await conn.fetchval(
                self._enqueue,
                m.msg_id,
                m.event_type,
                m.payload,
                m.idempotency_key,
                m.ordering_key,
                m.created_at,
            )
            if seq is None:
                existing = await conn.fetchval(
                    f"SELECT msg_id FROM {self.tables.messages} WHERE idempotency_key = $1",
                    m.idempotency_key,
                )
                if existing is None:
                    raise StoreError(f"message id {m.msg_id!r} collided with a stored one")
                self.stats.duplicates += 1
                return str(existing), False
        self.stats.enqueued += 1
        self._poke()
        return m.msg_id, True

    def _poke(self) -> None:
        # NOTIFY serialises the commits of the transactions that send it (PostgreSQL holds a
        # global lock while they commit), so enqueues do not send one each: one notifier
        # sends a NOTIFY after commits, and every enqueue meanwhile shares it.
        self._notify_wanted.set()
        if self._notifier is None or self._notifier.done():
            self._notifier = asyncio.create_task(self._notify_loop(), name="tether-outbox-notify")

    async def _notify_loop(self) -> None:
        while not self._db._closed:
            await self._notify_wanted.wait()
            self._notify_wanted.clear()
            try:
                async with self._connection() as conn:
                    await conn.execute("SELECT pg_notify($1, '')", self._channel)
            except StoreError as exc:
                # Workers still poll: a lost wake-up only delays delivery to the next poll.
                logger.warning("outbox: cannot notify workers: %s", exc)
                return

    async def watch(self, wake: Callable[[], object]) -> None:
        self._wakers.append(wake)
        if self._listener is None and self._relisten is None and not await self._listen():
            self._lost()

    def _woken(self, *_: object) -> None:
        for wake in self._wakers:
            wake()

    async def _listen(self) -> bool:
        """Open the LISTEN connection; False (and polling alone) when it cannot be opened."""
        import asyncpg  # noqa: PLC0415 - an optional dependency

        errors: tuple[type[BaseException], ...] = (*_database_errors(), TimeoutError)
        try:
            listener = await asyncpg.connect(self._dsn, timeout=10)
            await listener.add_listener(self._channel, self._woken)
        except errors as exc:
            # Polling still finds every message; the wake-up only makes it sooner.
            logger.warning("outbox: cannot LISTEN for new messages: %s", _safe(exc))
            return False
        listener.add_termination_listener(self._lost)
        self._listener = listener
        return True

    def _lost(self, *_: object) -> None:
        # The server restarted or dropped the connection: listen again, with a bounded wait
        # between tries, and wake the workers meanwhile so nothing waits for a notification
        # that was lost with the connection.
        self._listener = None
        self._woken()
        if not self._closing and (self._relisten is None or self._relisten.done()):
            self._relisten = asyncio.create_task(self._listen_again(), name="tether-outbox-listen")

    async def _listen_again(self) -> None:
        delay = 0.5
        while not self._closing and self._listener is None:
            await asyncio.sleep(delay)
            if await self._listen():
                self._woken()
                return
            delay = min(delay * 2, 30.0)

    # -- workers ---------------------------------------------------------------------------

    async def claim(self, *, now: float, limit: int, lease: float) -> list[OutboxLease]:
        t = self.tables
        token = uuid.uuid4().hex
        until = now + lease
        cols = ", ".join(f"u.{c.strip()}" for c in DELIVERY_COLUMNS.split(","))
        sql = numbered(
            f"WITH picked AS (SELECT c.id FROM {t.deliveries} c WHERE {due_condition(t)} "
            "ORDER BY c.next_attempt_at, c.id LIMIT ? FOR UPDATE OF c SKIP LOCKED), "
            f"u AS (UPDATE {t.deliveries} d SET claimed_until = ?, claim_token = ?, "
            "attempts = d.attempts + 1 FROM picked WHERE d.id = picked.id RETURNING d.*) "
            f"SELECT {cols}, m.payload FROM u JOIN {t.messages} m ON m.seq = u.message_seq "
            "ORDER BY u.next_attempt_at, u.id"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(sql, now, now, limit, until, token)
        return [OutboxLease(delivery_from_row(row, bytes(row[12])), token, until) for row in rows]

    async def renew(self, token: str, *, until: float) -> int:
        async with self._connection() as conn:
            done = await conn.execute(
                f"UPDATE {self.tables.deliveries} SET claimed_until = $1 "
                "WHERE claim_token = $2 AND status = 'pending'",
                until,
                token,
            )
        return _row_count(done)

    async def release(self, lease: OutboxLease, *, retry_at: float) -> bool:
        async with self._connection() as conn:
            done = await conn.execute(
                f"UPDATE {self.tables.deliveries} SET next_attempt_at = $1, "
                "attempts = greatest(attempts - 1, 0), claimed_until = NULL, claim_token = NULL "
                "WHERE id = $2 AND claim_token = $3 AND status = 'pending'",
                retry_at,
                lease.delivery.id,
                lease.token,
            )
        return _row_count(done) == 1

    async def record(
        self, lease: OutboxLease, result: AttemptResult, *, now: float
    ) -> RecordOutcome:
        t = self.tables
        d = lease.delivery
        r = result
        attempt = (
            d.id,
            d.msg_id,
            d.endpoint_id,
            d.attempts,
            r.started_at,
            r.latency,
            r.status_code,
            r.outcome,
            r.error,
            r.response,
        )
        insert = (
            f"INSERT INTO {t.attempts} (delivery_id, msg_id, endpoint_id, attempt, started_at, "
            "latency, status_code, outcome, error, response) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        if r.endpoint_ok:
            # The common case shares one statement and one commit with every success that
            # finished meanwhile (the inbox's group-commit writer).
            queued = _Delivered(lease, r, now)
            # The writer only queues what add() is given and hands it to _insert, which here
            # reads _Delivered: the cast names the inbox's parameter type, nothing converts.
            held = await self._db.add(cast(NewEvent, queued))
            return RecordOutcome(held == 1)
        async with self._connection() as conn, conn.transaction():
            if r.status is DeliveryStatus.PENDING:
                done = await conn.execute(
                    f"UPDATE {t.deliveries} SET next_attempt_at = $1, last_status = $2, "
                    "last_error = $3, claimed_until = NULL, claim_token = NULL "
                    "WHERE id = $4 AND claim_token = $5 AND status = 'pending'",
                    r.retry_at,
                    r.status_code,
                    r.error,
                    d.id,
                    lease.token,
                )
            else:
                done = await conn.execute(
                    f"UPDATE {t.deliveries} SET status = $1, completed_at = $2, last_status = $3, "
                    "last_error = $4, claimed_until = NULL, claim_token = NULL "
                    "WHERE id = $5 AND claim_token = $6 AND status = 'pending'",
                    r.status.value,
                    now,
                    r.status_code,
                    r.error,
                    d.id,
                    lease.token,
                )
            await conn.execute(insert, *attempt)
            disabled = await _endpoint_failed(conn, t, d.endpoint_id, r, now)
        return RecordOutcome(_row_count(done) == 1, disabled)

    async def next_due(self) -> float | None:
        # Only the earliest rows by due time (an index range), as the inbox does: a backlog
        # scheduled far ahead costs nothing here, and callers cap their wait anyway.
        async with self._connection() as conn:
            value = await conn.fetchval(
                "SELECT min(greatest(next_attempt_at, coalesce(claimed_until, 0))) FROM "
                f"(SELECT next_attempt_at, claimed_until FROM {self.tables.deliveries} "
                f"WHERE status = 'pending' ORDER BY next_attempt_at LIMIT {_DUE_WINDOW}) AS due"
            )
        return None if value is None else float(value)

    # -- operators -------------------------------------------------------------------------

    async def deliveries(
        self, selection: DeliveryFilter, *, limit: int = 50, before_id: int | None = None
    ) -> list[OutboxDelivery]:
        where, params = filter_clause(selection, sqlite=False)
        if before_id is not None:
            where += " AND id < ?"
            params.append(before_id)
        params.append(max(0, limit))
        sql = numbered(
            f"SELECT {DELIVERY_COLUMNS} FROM {self.tables.deliveries} WHERE {where} "
            "ORDER BY id DESC LIMIT ?"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        return [delivery_from_row(row) for row in rows]

    async def attempts(
        self,
        *,
        delivery_id: int | None = None,
        msg_id: str | None = None,
        endpoint_id: str | None = None,
        limit: int = 50,
    ) -> list[DeliveryAttempt]:
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (
            ("delivery_id", delivery_id),
            ("msg_id", msg_id),
            ("endpoint_id", endpoint_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        params.append(max(0, limit))
        sql = numbered(
            f"SELECT {ATTEMPT_COLUMNS} FROM {self.tables.attempts} "
            f"WHERE {' AND '.join(clauses) or 'TRUE'} ORDER BY id DESC LIMIT ?"
        )
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *params)
        return [attempt_from_row(row) for row in rows]

    async def replay(self, selection: DeliveryFilter, *, now: float, dry_run: bool) -> int:
        t = self.tables
        where, params = filter_clause(selection, sqlite=False)
        scope = (
            f"status != 'pending' AND {where} AND endpoint_id IN "
            f"(SELECT id FROM {t.endpoints} WHERE enabled)"
        )
        async with self._connection() as conn:
            if dry_run:
                return int(
                    await conn.fetchval(
                        numbered(f"SELECT count(*) FROM {t.deliveries} WHERE {scope}"), *params
                    )
                )
            async with conn.transaction():
                done = await conn.execute(
                    numbered(
                        f"UPDATE {t.deliveries} SET status = 'pending', attempts = 0, "
                        "next_attempt_at = ?, completed_at = NULL, claimed_until = NULL, "
                        f"claim_token = NULL WHERE {scope}"
                    ),
                    now,
                    *params,
                )
                await conn.execute("SELECT pg_notify($1, '')", self._channel)
        return _row_count(done)

    async def counts(self) -> dict[DeliveryStatus, int]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT status, count(*) FROM {self.tables.deliveries} GROUP BY status"
            )
        found = {DeliveryStatus(row[0]): int(row[1]) for row in rows}
        return {status: found.get(status, 0) for status in DeliveryStatus}

    async def purge(self, *, attempts_before: float, finished_before: float | None) -> int:
        t = self.tables
        async with self._connection() as conn, conn.transaction():
            gone = _row_count(
                await conn.execute(
                    f"DELETE FROM {t.attempts} WHERE started_at < $1", attempts_before
                )
            )
            if finished_before is not None:
                gone += _row_count(
                    await conn.execute(
                        f"DELETE FROM {t.deliveries} WHERE "
                        "status IN ('delivered', 'dead', 'skipped') "
                        "AND created_at < $1",
                        finished_before,
                    )
                )
                gone += _row_count(
                    await conn.execute(
                        f"DELETE FROM {t.messages} m WHERE m.created_at < $1 AND NOT EXISTS "
                        f"(SELECT 1 FROM {t.deliveries} d WHERE d.message_seq = m.seq)",
                        finished_before,
                    )
                )
        return gone


async def _disable(conn: Any, t: Tables, endpoint_id: str, reason: str | None, now: float) -> bool:
    done = await conn.execute(
        f"UPDATE {t.endpoints} SET enabled = FALSE, disabled_reason = $1, updated_at = $2 "
        "WHERE id = $3",
        reason,
        now,
        endpoint_id,
    )
    await conn.execute(
        f"UPDATE {t.deliveries} SET status = 'skipped', completed_at = $1, claimed_until = NULL, "
        "claim_token = NULL WHERE endpoint_id = $2 AND status = 'pending'",
        now,
        endpoint_id,
    )
    return _row_count(done) == 1


async def _endpoint_failed(
    conn: Any, t: Tables, endpoint_id: str, r: AttemptResult, now: float
) -> str | None:
    """Record a failed attempt on its endpoint; the reason if that disabled it."""
    await conn.execute(
        f"UPDATE {t.endpoints} SET failing_since = $1 WHERE id = $2 AND failing_since IS NULL",
        r.started_at,
        endpoint_id,
    )
    if r.pause_until is not None:
        await conn.execute(
            f"UPDATE {t.endpoints} SET paused_until = $1 WHERE id = $2 AND paused_until < $1",
            r.pause_until,
            endpoint_id,
        )
        await conn.execute(
            f"UPDATE {t.deliveries} SET next_attempt_at = $1 WHERE endpoint_id = $2 "
            "AND status = 'pending' AND next_attempt_at < $1 "
            "AND (claimed_until IS NULL OR claimed_until <= $3)",
            r.pause_until,
            endpoint_id,
            now,
        )
    row = await conn.fetchrow(
        f"SELECT failing_since, enabled FROM {t.endpoints} WHERE id = $1", endpoint_id
    )
    if row is None or not row[1]:
        return None
    reason = r.disable
    failing_since = row[0]
    if (
        reason is None
        and r.disable_after is not None
        and failing_since is not None
        and now - failing_since >= r.disable_after
    ):
        reason = f"failing continuously for {(now - row[0]) / 3600:.1f} h"
    if reason is None:
        return None
    await _disable(conn, t, endpoint_id, reason, now)
    return reason
