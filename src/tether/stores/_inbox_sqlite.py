"""The SQLite inbox: WAL with synchronous=FULL, one writer thread, group commit.

One thread owns the connection. Callers queue work and await a future; the thread takes
everything queued, runs it in one transaction and commits once, so every delivery that arrived
while the previous commit was being fsync'd shares the next fsync. A caller's future resolves
only after its commit returned, which is what lets the receiver answer 2xx.
"""

# ruff: noqa: S608 - table and schema names pass check_identifier; every value is bound

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tether._errors import ConfigError
from tether.stores._inbox import (
    EventStatus,
    InboxEvent,
    Lease,
    NewEvent,
    StoreError,
    StoreStats,
    check_identifier,
    decode_handled,
    decode_headers,
    encode_handled,
    encode_headers,
    finished_statuses,
)

__all__ = ["SQLiteInboxStore"]

T = TypeVar("T")

_COLUMNS = (
    "id, source, event_id, event_type, status, attempts, received_at, next_attempt_at, "
    "completed_at, last_error, handled, headers, body, scheme, secret_index, signed_at, msg_id"
)


def _event(row: Sequence[Any]) -> InboxEvent:
    return InboxEvent(
        id=int(row[0]),
        source=row[1],
        event_id=row[2],
        event_type=row[3],
        status=EventStatus(row[4]),
        attempts=int(row[5]),
        received_at=float(row[6]),
        next_attempt_at=float(row[7]),
        completed_at=None if row[8] is None else float(row[8]),
        last_error=row[9],
        handled=decode_handled(row[10]),
        headers=decode_headers(row[11]),
        body=bytes(row[12]),
        scheme=row[13],
        secret_index=row[14],
        signed_at=row[15],
        msg_id=row[16],
    )


@dataclass(slots=True)
class _Job:
    run: Callable[[sqlite3.Connection], object]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    #: Whether the job writes; reads run outside the batch's write transaction.
    writes: bool
    #: Whether the job is a delivery insert, for the group-commit statistics.
    insert: bool = False


def _settle(outcomes: list[tuple[asyncio.Future[Any], object, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():  # the caller gave up (a client disconnect cancels the request)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _fsync_directory(path: Path) -> None:
    # A new database or WAL file is durable only once its directory entry is.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class SQLiteInboxStore:
    """The default inbox store: one SQLite file, durable on every acknowledged commit.

    Args:
        path: the database file, created if missing; ":memory:" keeps nothing on disk and is
            for tests only.
        table: the table's name, so several inboxes can share one database.
        max_batch: the most operations one commit carries.
        busy_timeout: seconds to wait for another process (say, the CLI) holding the write lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "tether.db",
        *,
        table: str = "tether_inbox",
        max_batch: int = 1024,
        busy_timeout: float = 5.0,
    ) -> None:
        if max_batch < 1:
            raise ConfigError("max_batch must be at least 1")
        self.path = str(path)
        self.table = check_identifier(table, "table")
        self.max_batch = max_batch
        self.busy_timeout = busy_timeout
        self.stats = StoreStats()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteInboxStore(path={self.path!r}, table={self.table!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._thread is not None:
                return
            if self._closed:
                raise StoreError("this store was closed; make a new one")
            thread = threading.Thread(
                target=self._serve, name=f"tether-inbox-sqlite:{self.table}", daemon=True
            )
            thread.start()
            self._thread = thread
            try:
                await self._submit(self._create_schema, writes=True)
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        self._closed = True
        if thread is None:
            return
        self._jobs.put(None)
        # Everything queued before the sentinel still commits: close() never drops a write.
        await asyncio.to_thread(thread.join)

    async def __aenter__(self) -> SQLiteInboxStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the writer thread -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        if self.path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.close()
                raise StoreError(f"SQLite refused WAL mode for {self.path} (got {mode})")
        # FULL: in WAL mode every commit fsyncs the WAL, so a commit survives power loss;
        # NORMAL would only survive a process crash.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        return conn

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        failure: BaseException | None = None
        try:
            conn = self._connect()
        except (sqlite3.Error, OSError, StoreError) as exc:
            failure = exc
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                batch = [job]
                stop = False
                while len(batch) < self.max_batch:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                if conn is None:
                    error = StoreError(f"cannot open the SQLite inbox at {self.path}: {failure}")
                    self._deliver([(j, None, error) for j in batch])
                else:
                    self._deliver(self._run_batch(conn, batch))
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_Job]
    ) -> list[tuple[_Job, object, BaseException | None]]:
        writes = [job for job in batch if job.writes]
        reads = [job for job in batch if not job.writes]
        outcomes: list[tuple[_Job, object, BaseException | None]] = []
        if writes:
            try:
                conn.execute("BEGIN IMMEDIATE")
                results = [job.run(conn) for job in writes]
                conn.execute("COMMIT")
            except Exception:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if len(writes) == 1:
                    outcomes.append(self._alone(conn, writes[0]))
                else:
                    # One bad operation must not fail the deliveries that shared its commit.
                    outcomes.extend(self._alone(conn, job) for job in writes)
            else:
                outcomes.extend(
                    (job, result, None) for job, result in zip(writes, results, strict=True)
                )
            self._count_inserts(outcomes)
        for job in reads:
            try:
                outcomes.append((job, job.run(conn), None))
            except Exception as exc:
                outcomes.append((job, None, _wrap(exc)))
        return outcomes

    def _alone(
        self, conn: sqlite3.Connection, job: _Job
    ) -> tuple[_Job, object, BaseException | None]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = job.run(conn)
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return (job, None, _wrap(exc))
        return (job, result, None)

    def _count_inserts(self, outcomes: list[tuple[_Job, object, BaseException | None]]) -> None:
        done = [result for job, result, error in outcomes if job.insert and error is None]
        if done:
            self.stats.record_batch(len(done), sum(1 for r in done if r is not None))

    @staticmethod
    def _deliver(outcomes: list[tuple[_Job, object, BaseException | None]]) -> None:
        by_loop: dict[
            asyncio.AbstractEventLoop,
            list[tuple[asyncio.Future[Any], object, BaseException | None]],
        ] = {}
        for job, result, error in outcomes:
            by_loop.setdefault(job.loop, []).append((job.future, result, error))
        for loop, items in by_loop.items():
            # One wake-up per loop per commit, not one per delivery.
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, items)

    async def _submit(
        self, run: Callable[[sqlite3.Connection], T], *, writes: bool, insert: bool = False
    ) -> T:
        if self._thread is None:
            if self._closed:
                raise StoreError("the inbox store is closed")
            await self.open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(run, future, loop, writes, insert))
        return await future

    # -- schema --------------------------------------------------------------------------------

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        t = self.table
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {t} (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                source TEXT NOT NULL,
                event_id TEXT NOT NULL,
                event_type TEXT,
                status TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                received_at REAL NOT NULL,
                next_attempt_at REAL NOT NULL,
                completed_at REAL,
                last_error TEXT,
                handled TEXT NOT NULL DEFAULT '[]',
                headers TEXT NOT NULL,
                body BLOB NOT NULL,
                scheme TEXT NOT NULL,
                secret_index INTEGER,
                signed_at INTEGER,
                msg_id TEXT,
                claimed_until REAL,
                claim_token TEXT,
                UNIQUE (source, event_id)
            )"""
        )
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {t}_due ON {t} (next_attempt_at, id) "
            "WHERE status = 'pending'"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_received ON {t} (status, received_at)")
        if self.path != ":memory:":
            _fsync_directory(Path(self.path).resolve().parent)

    # -- the protocol ----------------------------------------------------------------------------

    async def add(self, event: NewEvent) -> int | None:
        sql = (
            f"INSERT INTO {self.table} (source, event_id, event_type, received_at, "
            "next_attempt_at, headers, body, scheme, secret_index, signed_at, msg_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, event_id) DO NOTHING"
        )
        params = (
            event.source,
            event.event_id,
            event.event_type,
            event.received_at,
            event.received_at,
            encode_headers(event.headers),
            event.body,
            event.scheme,
            event.secret_index,
            event.signed_at,
            event.msg_id,
        )

        def run(conn: sqlite3.Connection) -> int | None:
            cursor = conn.execute(sql, params)
            return cursor.lastrowid if cursor.rowcount == 1 else None

        return await self._submit(run, writes=True, insert=True)

    async def claim(self, *, now: float, limit: int, lease: float) -> list[Lease]:
        token = uuid.uuid4().hex
        until = now + lease
        sql = (
            f"UPDATE {self.table} SET claimed_until = ?, claim_token = ?, attempts = attempts + 1 "
            f"WHERE id IN (SELECT id FROM {self.table} WHERE status = 'pending' "
            "AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) "
            f"ORDER BY next_attempt_at, id LIMIT ?) RETURNING {_COLUMNS}"
        )

        def run(conn: sqlite3.Connection) -> list[Lease]:
            rows = conn.execute(sql, (until, token, now, now, limit)).fetchall()
            events = sorted((_event(row) for row in rows), key=lambda e: (e.next_attempt_at, e.id))
            return [Lease(event, token, until) for event in events]

        return await self._submit(run, writes=True)

    async def renew(self, lease: Lease, *, handled: Sequence[str], until: float) -> Lease | None:
        sql = (
            f"UPDATE {self.table} SET handled = ?, claimed_until = ? "
            "WHERE id = ? AND claim_token = ? AND status = 'pending'"
        )
        params = (encode_handled(handled), until, lease.event.id, lease.token)

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount == 1

        if not await self._submit(run, writes=True):
            return None
        return Lease(lease.event, lease.token, until)

    async def complete(
        self, lease: Lease, *, status: EventStatus, handled: Sequence[str], now: float
    ) -> bool:
        if status not in (EventStatus.DELIVERED, EventStatus.IGNORED):
            raise ConfigError("complete() finishes an event as DELIVERED or IGNORED")
        sql = (
            f"UPDATE {self.table} SET status = ?, handled = ?, completed_at = ?, "
            "claimed_until = NULL, claim_token = NULL "
            "WHERE id = ? AND claim_token = ? AND status = 'pending'"
        )
        params = (status.value, encode_handled(handled), now, lease.event.id, lease.token)

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount == 1

        return await self._submit(run, writes=True)

    async def fail(
        self,
        lease: Lease,
        *,
        error: str,
        handled: Sequence[str],
        retry_at: float | None,
        now: float,
    ) -> bool:
        if retry_at is None:
            sql = (
                f"UPDATE {self.table} SET status = 'dead', last_error = ?, handled = ?, "
                "completed_at = ?, claimed_until = NULL, claim_token = NULL "
                "WHERE id = ? AND claim_token = ? AND status = 'pending'"
            )
            params: tuple[object, ...] = (
                error,
                encode_handled(handled),
                now,
                lease.event.id,
                lease.token,
            )
        else:
            sql = (
                f"UPDATE {self.table} SET last_error = ?, handled = ?, next_attempt_at = ?, "
                "claimed_until = NULL, claim_token = NULL "
                "WHERE id = ? AND claim_token = ? AND status = 'pending'"
            )
            params = (error, encode_handled(handled), retry_at, lease.event.id, lease.token)

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount == 1

        return await self._submit(run, writes=True)

    async def get(self, event_id: int) -> InboxEvent | None:
        sql = f"SELECT {_COLUMNS} FROM {self.table} WHERE id = ?"

        def run(conn: sqlite3.Connection) -> InboxEvent | None:
            row = conn.execute(sql, (event_id,)).fetchone()
            return None if row is None else _event(row)

        return await self._submit(run, writes=False)

    async def find(self, source: str, event_id: str) -> InboxEvent | None:
        sql = f"SELECT {_COLUMNS} FROM {self.table} WHERE source = ? AND event_id = ?"

        def run(conn: sqlite3.Connection) -> InboxEvent | None:
            row = conn.execute(sql, (source, event_id)).fetchone()
            return None if row is None else _event(row)

        return await self._submit(run, writes=False)

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
        for column, value in (("source", source), ("event_type", event_type)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if status is not None:
            clauses.append("status = ?")
            params.append(EventStatus(status).value)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM {self.table} {where} ORDER BY id DESC LIMIT ?"
        params.append(max(0, limit))

        def run(conn: sqlite3.Connection) -> list[InboxEvent]:
            return [_event(row) for row in conn.execute(sql, params).fetchall()]

        return await self._submit(run, writes=False)

    async def counts(self) -> dict[EventStatus, int]:
        sql = f"SELECT status, count(*) FROM {self.table} GROUP BY status"

        def run(conn: sqlite3.Connection) -> dict[EventStatus, int]:
            found = {EventStatus(status): int(n) for status, n in conn.execute(sql)}
            return {status: found.get(status, 0) for status in EventStatus}

        return await self._submit(run, writes=False)

    async def next_due(self) -> float | None:
        sql = (
            f"SELECT min(max(next_attempt_at, coalesce(claimed_until, 0))) FROM {self.table} "
            "WHERE status = 'pending'"
        )

        def run(conn: sqlite3.Connection) -> float | None:
            value = conn.execute(sql).fetchone()[0]
            return None if value is None else float(value)

        return await self._submit(run, writes=False)

    async def replay(
        self,
        *,
        ids: Iterable[int] | None = None,
        status: EventStatus | None = None,
        source: str | None = None,
        now: float,
    ) -> int:
        where, params = _replay_filter(ids, status, source)
        sql = (
            f"UPDATE {self.table} SET status = 'pending', attempts = 0, next_attempt_at = ?, "
            "handled = '[]', completed_at = NULL, claimed_until = NULL, claim_token = NULL "
            f"WHERE status != 'pending' AND {where}"
        )

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, (now, *params)).rowcount

        return await self._submit(run, writes=True)

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
        marks = ", ".join("?" for _ in chosen)
        sql = f"DELETE FROM {self.table} WHERE status IN ({marks}) AND received_at < ?"
        params: list[object] = [*chosen, before]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, params).rowcount

        return await self._submit(run, writes=True)


def _replay_filter(
    ids: Iterable[int] | None, status: EventStatus | None, source: str | None
) -> tuple[str, list[object]]:
    if ids is not None:
        chosen = [int(i) for i in ids]
        return "id IN (SELECT value FROM json_each(?))", [json.dumps(chosen)]
    if status is None:
        raise ConfigError("replay() needs ids= or status=")
    clauses, params = ["status = ?"], [EventStatus(status).value]
    if source is not None:
        clauses.append("source = ?")
        params.append(source)
    return " AND ".join(clauses), list(params)


def _wrap(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"SQLite inbox: {type(exc).__name__}: {exc}")
    return exc
