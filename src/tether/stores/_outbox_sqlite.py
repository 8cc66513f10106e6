"""The SQLite outbox: the inbox's WAL + synchronous=FULL group-commit writer, outbox tables.

Every operation is a job for the writer that `SQLiteInboxStore` runs (one connection, one
transaction per batch of queued jobs, one fsync per batch): concurrent enqueues and attempt
records share commits. `enqueue_in()` runs the very same enqueue job on the caller's own
connection, inside the caller's transaction, so the message commits with the business change.
"""

# ruff: noqa: S608 - table names pass check_identifier; every value is bound

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tether._errors import ConfigError
from tether.stores._inbox import StoreError
from tether.stores._inbox_sqlite import SQLiteInboxStore, _fsync_directory
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
    fan_out_sql,
    filter_clause,
    schema_statements,
)

__all__ = ["SQLiteOutboxStore"]

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]


class _Database(SQLiteInboxStore):
    """The inbox store's connection and group-commit writer, creating the outbox's tables."""

    def __init__(self, path: str, tables: Tables, busy_timeout: float, max_batch: int) -> None:
        super().__init__(path, table=tables.prefix, busy_timeout=busy_timeout, max_batch=max_batch)
        self._tables = tables

    def _create_schema(self) -> None:
        conn = self._conn
        if conn is None:
            raise StoreError("the outbox store is closed")
        self._wait_and_begin(conn)
        for statement in schema_statements(self._tables, sqlite=True):
            conn.execute(statement)
        conn.execute("COMMIT")
        if self.path != ":memory:":
            _fsync_directory(Path(self.path).resolve().parent)


def _endpoint_params(endpoint: Endpoint) -> tuple[object, ...]:
    return (
        endpoint.url,
        endpoint.description,
        int(endpoint.enabled),
        endpoint.disabled_reason,
        encode_json(list(endpoint.event_types)),
        encode_json([list(pair) for pair in endpoint.headers]),
        encode_secrets(endpoint.secrets),
        endpoint.rate_limit,
        endpoint.timeout,
        None if endpoint.schedule is None else encode_json(list(endpoint.schedule)),
        int(endpoint.ordered),
        endpoint.updated_at,
    )


def disable_endpoint(
    conn: sqlite3.Connection, tables: Tables, endpoint_id: str, reason: str | None, now: float
) -> bool:
    """Disable the endpoint and skip its pending deliveries, in the current transaction."""
    done = conn.execute(
        f"UPDATE {tables.endpoints} SET enabled = 0, disabled_reason = ?, updated_at = ? "
        "WHERE id = ?",
        (reason, now, endpoint_id),
    ).rowcount
    conn.execute(
        f"UPDATE {tables.deliveries} SET status = 'skipped', completed_at = ?, "
        "claimed_until = NULL, claim_token = NULL WHERE endpoint_id = ? AND status = 'pending'",
        (now, endpoint_id),
    )
    return done == 1


class SQLiteOutboxStore:
    """The default outbox store: one SQLite file, durable on every acknowledged enqueue.

    Use it from one event loop (the one that opened it). The file may be the application's own
    database: `Outbox.enqueue_in(conn, ...)` then writes in the application's transaction.

    Args:
        path: the database file, created if missing.
        prefix: the tables' name prefix, so several outboxes can share one database.
        busy_timeout: seconds to wait for another connection holding the write lock.
        max_batch: the most operations one commit carries.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "tether.db",
        *,
        prefix: str = "tether_outbox",
        busy_timeout: float = 5.0,
        max_batch: int = 1024,
    ) -> None:
        self.path = os.fspath(path)
        self.tables = Tables(prefix)
        self.stats = OutboxStats()
        self._db = _Database(self.path, self.tables, busy_timeout, max_batch)
        self._watchers: list[Callable[[], object]] = []
        self._fan_out = fan_out_sql(self.tables, sqlite=True)

    def __repr__(self) -> str:
        return f"SQLiteOutboxStore(path={self.path!r}, prefix={self.tables.prefix!r})"

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> SQLiteOutboxStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _write(self, job: Job[T]) -> T:
        return await self._db._submit(job, writes=True)

    async def _read(self, job: Job[T]) -> T:
        return await self._db._submit(job, writes=False)

    # -- endpoints -------------------------------------------------------------------------

    async def save_endpoint(self, endpoint: Endpoint, *, create: bool) -> None:
        t = self.tables
        params = _endpoint_params(endpoint)

        def run(conn: sqlite3.Connection) -> None:
            if create:
                try:
                    conn.execute(
                        f"INSERT INTO {t.endpoints} (url, description, enabled, disabled_reason, "
                        "event_types, headers, secrets, rate_limit, timeout, schedule, ordered, "
                        "updated_at, id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                        "?, ?)",
                        (*params, endpoint.id, endpoint.created_at),
                    )
                except sqlite3.IntegrityError:
                    raise ConfigError(f"an endpoint with id {endpoint.id!r} exists") from None
                return
            done = conn.execute(
                f"UPDATE {t.endpoints} SET url = ?, description = ?, enabled = ?, "
                "disabled_reason = ?, event_types = ?, headers = ?, secrets = ?, rate_limit = ?, "
                "timeout = ?, schedule = ?, ordered = ?, updated_at = ? WHERE id = ?",
                (*params, endpoint.id),
            ).rowcount
            if done != 1:
                raise ConfigError(f"no endpoint with id {endpoint.id!r}")

        await self._write(run)

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        sql = f"SELECT {ENDPOINT_COLUMNS} FROM {self.tables.endpoints} WHERE id = ?"

        def run(conn: sqlite3.Connection) -> Endpoint | None:
            row = conn.execute(sql, (endpoint_id,)).fetchone()
            return None if row is None else endpoint_from_row(row)

        return await self._read(run)

    async def list_endpoints(self) -> list[Endpoint]:
        sql = f"SELECT {ENDPOINT_COLUMNS} FROM {self.tables.endpoints} ORDER BY created_at, id"

        def run(conn: sqlite3.Connection) -> list[Endpoint]:
            return [endpoint_from_row(row) for row in conn.execute(sql)]

        return await self._read(run)

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        t = self.tables

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute(f"DELETE FROM {t.deliveries} WHERE endpoint_id = ?", (endpoint_id,))
            conn.execute(f"DELETE FROM {t.attempts} WHERE endpoint_id = ?", (endpoint_id,))
            return (
                conn.execute(f"DELETE FROM {t.endpoints} WHERE id = ?", (endpoint_id,)).rowcount
                == 1
            )

        return await self._write(run)

    async def set_enabled(
        self, endpoint_id: str, *, enabled: bool, reason: str | None, now: float
    ) -> bool:
        t = self.tables

        def run(conn: sqlite3.Connection) -> bool:
            if not enabled:
                return disable_endpoint(conn, t, endpoint_id, reason, now)
            # A fresh start: the failures and pause that led to the disabling are history.
            return (
                conn.execute(
                    f"UPDATE {t.endpoints} SET enabled = 1, disabled_reason = NULL, "
                    "failing_since = NULL, paused_until = 0, updated_at = ? WHERE id = ?",
                    (now, endpoint_id),
                ).rowcount
                == 1
            )

        return await self._write(run)

    # -- messages --------------------------------------------------------------------------

    def enqueue_job(self, message: NewMessage) -> Job[tuple[str, bool]]:
        """The enqueue as a function of a connection: the store's own, or the caller's."""
        t = self.tables
        fan_out = self._fan_out
        m = message

        def run(conn: sqlite3.Connection) -> tuple[str, bool]:
            cursor = conn.execute(
                f"INSERT INTO {t.messages} (msg_id, event_type, payload, idempotency_key, "
                "ordering_key, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    m.msg_id,
                    m.event_type,
                    m.payload,
                    m.idempotency_key,
                    m.ordering_key,
                    m.created_at,
                ),
            )
            if cursor.rowcount != 1:
                row = conn.execute(
                    f"SELECT msg_id FROM {t.messages} WHERE idempotency_key = ?",
                    (m.idempotency_key,),
                ).fetchone()
                if row is None:
                    raise StoreError(f"message id {m.msg_id!r} collided with a stored one")
                return str(row[0]), False
            conn.execute(
                fan_out,
                (
                    cursor.lastrowid,
                    m.msg_id,
                    m.event_type,
                    m.ordering_key,
                    m.created_at,
                    m.created_at,
                    m.created_at,
                    m.event_type,
                    m.event_type,
                ),
            )
            return m.msg_id, True

        return run

    async def enqueue(self, message: NewMessage) -> tuple[str, bool]:
        msg_id, new = await self._write(self.enqueue_job(message))
        if new:
            self.stats.enqueued += 1
        else:
            self.stats.duplicates += 1
        self._notify()
        return msg_id, new

    def enqueue_in(self, conn: sqlite3.Connection, message: NewMessage) -> tuple[str, bool]:
        """Run the enqueue on `conn`, in its open transaction; the caller commits."""
        if not isinstance(conn, sqlite3.Connection):
            raise ConfigError("enqueue_in() on SQLite takes a sqlite3.Connection")
        if conn.isolation_level is None and not conn.in_transaction:
            # In autocommit mode each statement would commit on its own: the message could
            # then be stored while the caller's change rolls back, the dual write we avoid.
            raise ConfigError(
                "enqueue_in() must run inside your transaction: call BEGIN first "
                "(the connection is in autocommit mode)"
            )
        self._check_same_database(conn)
        if int(conn.execute("PRAGMA synchronous").fetchone()[0]) < 2:
            # Below FULL a commit can be lost with the machine (in WAL mode with NORMAL, the
            # last commits before a power cut): the message would be acknowledged, not safe.
            raise ConfigError(
                "enqueue_in() needs PRAGMA synchronous=FULL on this connection, so the commit "
                "that enqueues is on disk when it returns"
            )
        try:
            result = self.enqueue_job(message)(conn)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise ConfigError(
                    "the outbox tables are missing from this database: open the outbox on it "
                    "once (await outbox.open()) before enqueueing in a transaction"
                ) from None
            raise
        self._notify()
        return result

    def _check_same_database(self, conn: sqlite3.Connection) -> None:
        if self.path == ":memory:":
            return
        row = conn.execute("PRAGMA database_list").fetchone()
        theirs = row[2] if row is not None else ""
        if not theirs or Path(theirs).resolve() != Path(self.path).resolve():
            raise ConfigError(
                "enqueue_in() needs a connection to the outbox's own database file "
                f"({self.path}); this one is on {theirs or 'a temporary database'}"
            )

    def _notify(self) -> None:
        for wake in self._watchers:
            wake()

    async def watch(self, wake: Callable[[], object]) -> None:
        # SQLite has no cross-process notification: in-process enqueues wake the worker,
        # others are found by polling.
        self._watchers.append(wake)

    # -- workers ---------------------------------------------------------------------------

    async def claim(self, *, now: float, limit: int, lease: float) -> list[OutboxLease]:
        t = self.tables
        token = uuid.uuid4().hex
        until = now + lease
        sql = (
            f"UPDATE {t.deliveries} SET claimed_until = ?, claim_token = ?, "
            f"attempts = attempts + 1 WHERE id IN (SELECT c.id FROM {t.deliveries} c WHERE "
            f"{due_condition(t)} ORDER BY c.next_attempt_at, c.id LIMIT ?) "
            f"RETURNING {DELIVERY_COLUMNS}, message_seq"
        )
        payload_sql = (
            f"SELECT seq, payload FROM {t.messages} WHERE seq IN (SELECT value FROM json_each(?))"
        )

        def run(conn: sqlite3.Connection) -> list[OutboxLease]:
            rows = conn.execute(sql, (until, token, now, now, limit)).fetchall()
            if not rows:
                return []
            seqs = encode_json([int(row[12]) for row in rows])
            payloads = {int(seq): bytes(body) for seq, body in conn.execute(payload_sql, (seqs,))}
            leases = [
                OutboxLease(delivery_from_row(row, payloads.get(int(row[12]), b"")), token, until)
                for row in rows
            ]
            leases.sort(key=lambda x: (x.delivery.next_attempt_at, x.delivery.id))
            return leases

        return await self._write(run)

    async def renew(self, token: str, *, until: float) -> int:
        sql = (
            f"UPDATE {self.tables.deliveries} SET claimed_until = ? "
            "WHERE claim_token = ? AND status = 'pending'"
        )

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, (until, token)).rowcount

        return await self._write(run)

    async def release(self, lease: OutboxLease, *, retry_at: float) -> bool:
        sql = (
            f"UPDATE {self.tables.deliveries} SET next_attempt_at = ?, "
            "attempts = max(attempts - 1, 0), claimed_until = NULL, claim_token = NULL "
            "WHERE id = ? AND claim_token = ? AND status = 'pending'"
        )
        params = (retry_at, lease.delivery.id, lease.token)

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount == 1

        return await self._write(run)

    async def record(
        self, lease: OutboxLease, result: AttemptResult, *, now: float
    ) -> RecordOutcome:
        t = self.tables
        d = lease.delivery
        r = result

        def run(conn: sqlite3.Connection) -> RecordOutcome:
            if r.status is DeliveryStatus.PENDING:
                held = conn.execute(
                    f"UPDATE {t.deliveries} SET next_attempt_at = ?, last_status = ?, "
                    "last_error = ?, claimed_until = NULL, claim_token = NULL "
                    "WHERE id = ? AND claim_token = ? AND status = 'pending'",
                    (r.retry_at, r.status_code, r.error, d.id, lease.token),
                ).rowcount
            else:
                held = conn.execute(
                    f"UPDATE {t.deliveries} SET status = ?, completed_at = ?, last_status = ?, "
                    "last_error = ?, claimed_until = NULL, claim_token = NULL "
                    "WHERE id = ? AND claim_token = ? AND status = 'pending'",
                    (r.status.value, now, r.status_code, r.error, d.id, lease.token),
                ).rowcount
            # Logged even when the lease was lost: the request went out all the same.
            conn.execute(
                f"INSERT INTO {t.attempts} (delivery_id, msg_id, endpoint_id, attempt, "
                "started_at, latency, status_code, outcome, error, response) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
                ),
            )
            return RecordOutcome(held == 1, _endpoint_after(conn, t, d.endpoint_id, r, now))

        return await self._write(run)

    async def next_due(self) -> float | None:
        # Only the earliest rows by due time (an index range): callers cap their wait anyway.
        sql = (
            "SELECT min(max(next_attempt_at, coalesce(claimed_until, 0))) FROM "
            f"(SELECT next_attempt_at, claimed_until FROM {self.tables.deliveries} "
            "WHERE status = 'pending' ORDER BY next_attempt_at LIMIT 64)"
        )

        def run(conn: sqlite3.Connection) -> float | None:
            value = conn.execute(sql).fetchone()[0]
            return None if value is None else float(value)

        return await self._read(run)

    # -- operators -------------------------------------------------------------------------

    async def deliveries(
        self, selection: DeliveryFilter, *, limit: int = 50, before_id: int | None = None
    ) -> list[OutboxDelivery]:
        where, params = filter_clause(selection, sqlite=True)
        if before_id is not None:
            where += " AND id < ?"
            params.append(before_id)
        sql = (
            f"SELECT {DELIVERY_COLUMNS} FROM {self.tables.deliveries} WHERE {where} "
            "ORDER BY id DESC LIMIT ?"
        )
        params.append(max(0, limit))

        def run(conn: sqlite3.Connection) -> list[OutboxDelivery]:
            return [delivery_from_row(row) for row in conn.execute(sql, params)]

        return await self._read(run)

    async def attempts(
        self,
        *,
        delivery_id: int | None = None,
        msg_id: str | None = None,
        endpoint_id: str | None = None,
        limit: int = 50,
    ) -> list[DeliveryAttempt]:
        clauses, params = _attempt_filter(delivery_id, msg_id, endpoint_id)
        sql = (
            f"SELECT {ATTEMPT_COLUMNS} FROM {self.tables.attempts} WHERE {clauses} "
            "ORDER BY id DESC LIMIT ?"
        )
        params.append(max(0, limit))

        def run(conn: sqlite3.Connection) -> list[DeliveryAttempt]:
            return [attempt_from_row(row) for row in conn.execute(sql, params)]

        return await self._read(run)

    async def replay(self, selection: DeliveryFilter, *, now: float, dry_run: bool) -> int:
        t = self.tables
        where, params = filter_clause(selection, sqlite=True)
        # Deliveries of a disabled endpoint stay put: replaying them would send to it anyway.
        scope = (
            f"status != 'pending' AND {where} AND endpoint_id IN "
            f"(SELECT id FROM {t.endpoints} WHERE enabled = 1)"
        )
        if dry_run:
            sql = f"SELECT count(*) FROM {t.deliveries} WHERE {scope}"

            def count(conn: sqlite3.Connection) -> int:
                return int(conn.execute(sql, params).fetchone()[0])

            return await self._read(count)
        sql = (
            f"UPDATE {t.deliveries} SET status = 'pending', attempts = 0, next_attempt_at = ?, "
            f"completed_at = NULL, claimed_until = NULL, claim_token = NULL WHERE {scope}"
        )

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, (now, *params)).rowcount

        moved = await self._write(run)
        if moved:
            self._notify()
        return moved

    async def counts(self) -> dict[DeliveryStatus, int]:
        sql = f"SELECT status, count(*) FROM {self.tables.deliveries} GROUP BY status"

        def run(conn: sqlite3.Connection) -> dict[DeliveryStatus, int]:
            found = {DeliveryStatus(status): int(n) for status, n in conn.execute(sql)}
            return {status: found.get(status, 0) for status in DeliveryStatus}

        return await self._read(run)

    async def purge(self, *, attempts_before: float, finished_before: float | None) -> int:
        t = self.tables

        def run(conn: sqlite3.Connection) -> int:
            gone = conn.execute(
                f"DELETE FROM {t.attempts} WHERE started_at < ?", (attempts_before,)
            ).rowcount
            if finished_before is not None:
                gone += conn.execute(
                    f"DELETE FROM {t.deliveries} WHERE "
                    "status IN ('delivered', 'dead', 'skipped') "
                    "AND created_at < ?",
                    (finished_before,),
                ).rowcount
                gone += conn.execute(
                    f"DELETE FROM {t.messages} WHERE created_at < ? AND NOT EXISTS "
                    f"(SELECT 1 FROM {t.deliveries} d WHERE d.message_seq = seq)",
                    (finished_before,),
                ).rowcount
            return gone

        return await self._write(run)


def _attempt_filter(
    delivery_id: int | None, msg_id: str | None, endpoint_id: str | None
) -> tuple[str, list[object]]:
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
    return (" AND ".join(clauses) or "1 = 1"), params


def _endpoint_after(
    conn: sqlite3.Connection, t: Tables, endpoint_id: str, r: AttemptResult, now: float
) -> str | None:
    """Update the endpoint's failure run after an attempt; the reason if it got disabled."""
    if r.endpoint_ok:
        # Written only when a run of failures ends, so a healthy endpoint's row stays cold.
        conn.execute(
            f"UPDATE {t.endpoints} SET failing_since = NULL "
            "WHERE id = ? AND failing_since IS NOT NULL",
            (endpoint_id,),
        )
        return None
    conn.execute(
        f"UPDATE {t.endpoints} SET failing_since = ? WHERE id = ? AND failing_since IS NULL",
        (r.started_at, endpoint_id),
    )
    if r.pause_until is not None:
        conn.execute(
            f"UPDATE {t.endpoints} SET paused_until = ? WHERE id = ? AND paused_until < ?",
            (r.pause_until, endpoint_id, r.pause_until),
        )
        conn.execute(
            f"UPDATE {t.deliveries} SET next_attempt_at = ? WHERE endpoint_id = ? "
            "AND status = 'pending' AND next_attempt_at < ? "
            "AND (claimed_until IS NULL OR claimed_until <= ?)",
            (r.pause_until, endpoint_id, r.pause_until, now),
        )
    reason = r.disable
    if reason is None and r.disable_after is not None:
        row: Any = conn.execute(
            f"SELECT failing_since, enabled FROM {t.endpoints} WHERE id = ?", (endpoint_id,)
        ).fetchone()
        if row is not None and row[1] and row[0] is not None and now - row[0] >= r.disable_after:
            reason = f"failing continuously for {(now - row[0]) / 3600:.1f} h"
    if reason is None:
        return None
    enabled = conn.execute(
        f"SELECT enabled FROM {t.endpoints} WHERE id = ?", (endpoint_id,)
    ).fetchone()
    if enabled is None or not enabled[0]:
        return None
    disable_endpoint(conn, t, endpoint_id, reason, now)
    return reason
