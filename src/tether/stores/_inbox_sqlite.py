"""The SQLite inbox: WAL with synchronous=FULL, group commit, the fsync off the event loop.

One writer task owns the connection. Callers queue work and await a future; the writer takes
everything queued, runs it in one transaction and commits once, so every delivery that arrived
while the previous commit was being fsync'd shares the next fsync. A caller's future resolves
only after its commit returned, which is what lets the receiver answer 2xx.

A batch of nothing but new deliveries (the receiver's hot path) is one multi-row INSERT, run on
a thread of the store's own in autocommit mode: SQLite inserts every row, writes the WAL and
fsyncs it inside one sqlite3_step, during which Python's GIL is released, so the event loop keeps
serving requests while SQLite does all of the work. (Past _ROWS_PER_STATEMENT rows, a batch is
several such statements in one explicit transaction.) One statement matters: the sqlite3 module
releases and retakes the GIL around every step, and while the event loop is busy, retaking it
can wait out the interpreter's switch interval (5 ms), so a statement per row, or a RETURNING
clause read row by row, would make a commit wait once per delivery.

The other writes (the dispatcher's claims and completions, the CLI's replays and purges) run
their statements on the event loop, where they only touch SQLite's page cache and take
microseconds; their COMMIT and any wait for another process's write lock run on the store's
thread. A batch holding both commits its deliveries first, then the rest: two commits."""

# ruff: noqa: S608 - table and schema names pass check_identifier; every value is bound

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

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

__all__ = ["SQLiteInboxStore"]

T = TypeVar("T")

#: The most deliveries one INSERT statement carries. The statement is prepared once per row
#: count and kept in the connection's statement cache, which is sized to hold all of them.
_ROWS_PER_STATEMENT = 128

#: How many of the earliest pending events next_due() looks at.
_DUE_WINDOW = 1000


class _Job:
    """One queued operation and the future its caller awaits."""

    # A plain slotted class, not a dataclass: one is made per delivery, on the hot path.
    __slots__ = ("arg", "future", "insert", "run", "writes")

    def __init__(
        self,
        run: Callable[[sqlite3.Connection, Any], object],
        arg: object,
        future: asyncio.Future[Any],
        writes: bool,
        insert: bool,
    ) -> None:
        self.run = run
        #: What `run` gets besides the connection: a delivery's row, or None.
        self.arg = arg
        self.future = future
        #: Whether the job writes; reads run after the batch's write transaction.
        self.writes = writes
        #: Whether the job is a delivery insert, for the group-commit statistics.
        self.insert = insert


def _call(conn: sqlite3.Connection, run: Callable[[sqlite3.Connection], object]) -> object:
    return run(conn)


_Outcome = tuple[_Job, object, BaseException | None]


class _Thread:
    """The store's own thread: runs calls one at a time, in order, and hands back the outcomes.

    A commit costs one C queue put in, and one call_soon_threadsafe out. run_in_executor on a
    ThreadPoolExecutor does the same job in several times the Python code (its work item, a
    concurrent future with its condition, the asyncio future chained to it), once per commit.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # A daemon: a store nobody closed must not keep the process alive. Nothing is lost if
        # one dies mid-commit; that delivery was not acknowledged.
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def call(self, fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self._loop.create_future()
        self._calls.put((fn, args, future))
        return future

    def stop(self) -> None:
        self._calls.put(None)

    def _serve(self) -> None:
        calls = self._calls
        while (call := calls.get()) is not None:
            fn, args, future = call
            result: object = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the caller, who raises it
                error = exc
            try:
                self._loop.call_soon_threadsafe(_resolve, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits for this any more
                return
            # Holds nothing while it waits for the next call.
            del call, fn, args, future, result, error


_Call = tuple[Callable[..., Any], tuple[object, ...], "asyncio.Future[Any]"]


def _resolve(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.done():  # its caller gave up (a client disconnect cancels it)
        return
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


def _busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class SQLiteInboxStore:
    """The default inbox store: one SQLite file, durable on every acknowledged commit.

    Use it from one event loop (the one that opened it).

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
        self._pending: collections.deque[_Job] = collections.deque()
        self._wake = asyncio.Event()
        self._conn: sqlite3.Connection | None = None
        self._io: _Thread | None = None
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()
        self._stopping = False
        self._closed = False
        self._insert_head = (
            f"INSERT INTO {self.table} (source, event_id, event_type, received_at, "
            "next_attempt_at, headers, body, scheme, secret_index, signed_at, msg_id) VALUES "
        )
        self._insert_sqls: dict[int, str] = {}
        insert_sql = self._insert_sql(1)

        # Made once: a delivery queues only its row, not a closure of its own. One cursor serves
        # every insert on a connection, rather than a new one per delivery.
        cursors: dict[sqlite3.Connection, sqlite3.Cursor] = {}

        def insert(conn: sqlite3.Connection, row: tuple[object, ...]) -> int | None:
            cursor = cursors.get(conn)
            if cursor is None:
                cursors.clear()  # a reopened store has a new connection
                cursor = cursors[conn] = conn.cursor()
            cursor.execute(insert_sql, row)
            return cursor.lastrowid if cursor.rowcount == 1 else None

        self._insert = insert

    def _insert_sql(self, rows: int) -> str:
        """The INSERT of `rows` deliveries in one statement; a duplicate (source, event_id) is
        skipped, whether it is already stored or earlier in the same statement."""
        sql = self._insert_sqls.get(rows)
        if sql is None:
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
            sql = f"{self._insert_head}{values} ON CONFLICT (source, event_id) DO NOTHING"
            self._insert_sqls[rows] = sql
        return sql

    def _insert_rows(
        self, conn: sqlite3.Connection, rows: list[tuple[object, ...]]
    ) -> list[int | None]:
        """Stores `rows` durably, on the store's thread; each row's new id, None for a duplicate.

        Up to _ROWS_PER_STATEMENT rows are one statement in autocommit mode: the inserts, the WAL
        write and the fsync all happen inside one sqlite3_step, with the GIL released. More rows
        take one explicit transaction of several such statements. Raises sqlite3.Error, with
        nothing written, if the write lock is busy (timeout 0) or SQLite refuses a row; the
        caller then takes the ordinary path, which waits for the lock and isolates the row.
        (Should the lookup of duplicates fail after a single statement committed, the ordinary
        path finds every row stored and reports them as duplicates: kept, never lost.)
        """
        cursor = conn.cursor()
        if len(rows) <= _ROWS_PER_STATEMENT:
            cursor.execute(self._insert_sql(len(rows)), list(itertools.chain.from_iterable(rows)))
            return self._new_ids(conn, cursor, rows)
        cursor.execute("BEGIN IMMEDIATE")
        try:
            ids: list[int | None] = []
            for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                chunk = rows[start : start + _ROWS_PER_STATEMENT]
                cursor.execute(
                    self._insert_sql(len(chunk)), list(itertools.chain.from_iterable(chunk))
                )
                ids += self._new_ids(conn, cursor, chunk)
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return ids

    def _new_ids(
        self, conn: sqlite3.Connection, cursor: sqlite3.Cursor, rows: list[tuple[object, ...]]
    ) -> list[int | None]:
        """Which of `rows`, just inserted by `cursor`'s one statement, are new, and their ids."""
        stored, last = cursor.rowcount, cursor.lastrowid
        if stored == len(rows) and last is not None:
            # Every row is new. AUTOINCREMENT gave them consecutive ids in the order of the
            # VALUES list, the last of which SQLite reports.
            return list(range(last - stored + 1, last + 1))
        if stored <= 0 or last is None:
            return [None] * len(rows)
        # Some were duplicates (rare). A skipped row still uses up an id, so the ids have gaps:
        # look the keys up. AUTOINCREMENT never gives out an id twice, so the rows this statement
        # stored are the `stored` highest ids found, at most `last`; a key repeated within the
        # statement was stored by its first occurrence.
        keys = list(dict.fromkeys((row[0], row[1]) for row in rows))
        values = ", ".join(["(?, ?)"] * len(keys))
        sql = (
            f"SELECT t.source, t.event_id, t.id FROM (VALUES {values}) AS k "
            f"CROSS JOIN {self.table} AS t ON t.source = k.column1 AND t.event_id = k.column2"
        )
        found = {(s, e): i for s, e, i in conn.execute(sql, list(itertools.chain(*keys)))}
        new = set(sorted(i for i in found.values() if i <= last)[-stored:])
        ids: list[int | None] = []
        for row in rows:
            key = (row[0], row[1])
            ident = found.get(key)
            if ident in new:
                new.discard(ident)
                ids.append(ident)
            else:
                ids.append(None)
        return ids

    def __repr__(self) -> str:
        return f"SQLiteInboxStore(path={self.path!r}, table={self.table!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        async with self._opening:
            if self._writer is not None:
                return
            if self._closed:
                raise StoreError("this store was closed; make a new one")
            self._loop = asyncio.get_running_loop()
            self._io = _Thread(self._loop, "tether-inbox-sqlite")
            try:
                self._conn = await self._in_thread(self._connect)
                await self._in_thread(self._create_schema)
            except BaseException:
                await self._release()
                self._closed = True
                raise
            self._writer = asyncio.create_task(self._write_loop(), name="tether-inbox-sqlite")

    async def close(self) -> None:
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            # Everything queued before close() still commits: close() never drops a write.
            self._stopping = True
            self._wake.set()
            await writer
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(StoreError("the inbox store is closed"))
        await self._release()

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        io, self._io = self._io, None
        if conn is not None and io is not None:
            with contextlib.suppress(sqlite3.Error):
                await io.call(conn.close)
        if io is not None:
            io.stop()

    async def __aenter__(self) -> SQLiteInboxStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the writer ----------------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        if self._io is None:
            raise StoreError("the inbox store is closed")
        try:
            return await self._io.call(fn, *args)
        except sqlite3.Error as exc:
            raise _wrap(exc) from None

    def _connect(self) -> sqlite3.Connection:
        # timeout=0: a statement on the event loop must never wait for a lock; waits happen
        # on the store's thread (see _begin).
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            timeout=0,
            check_same_thread=False,
            cached_statements=_ROWS_PER_STATEMENT + 64,
        )
        mode = "wal"
        if self.path != ":memory:":
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        if mode != "wal":
            conn.close()
            raise StoreError(f"SQLite refused WAL mode for {self.path} (got {mode})")
        # FULL: in WAL mode every commit fsyncs the WAL, so a commit survives power loss;
        # NORMAL would only survive a process crash.
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _wait_and_begin(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout=0")

    async def _begin(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            # Another process holds the write lock: wait for it off the event loop.
            await self._in_thread(self._wait_and_begin, conn)

    async def _transaction(self, conn: sqlite3.Connection, jobs: list[_Job]) -> list[object]:
        await self._begin(conn)
        try:
            results = [job.run(conn, job.arg) for job in jobs]
            await self._in_thread(conn.execute, "COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return results

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [
                self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))
            ]
            for job, result, error in await self._run_batch(batch):
                _resolve(job.future, result, error)

    async def _write(self, conn: sqlite3.Connection, writes: list[_Job]) -> Sequence[object]:
        """Runs `writes` in one durable commit: deliveries alone as one statement on the store's
        thread, anything else as a transaction on the event loop."""
        io = self._io
        if io is not None and all(job.insert for job in writes):
            rows = [job.arg for job in writes]
            with contextlib.suppress(sqlite3.Error):  # nothing was written: see _insert_rows
                return await io.call(self._insert_rows, conn, rows)
        return await self._transaction(conn, writes)

    async def _write_group(
        self, conn: sqlite3.Connection, writes: list[_Job], outcomes: list[_Outcome]
    ) -> None:
        """Commits `writes` together and settles them; where one fails, runs each alone and
        leaves the outcomes in `outcomes` for the caller to settle."""
        try:
            results = await self._write(conn, writes)
        except Exception:
            # One bad operation must not fail the deliveries that shared its commit.
            alone: list[_Outcome] = []
            for job in writes:
                try:
                    (result,) = await self._transaction(conn, [job])
                except Exception as exc:
                    alone.append((job, None, _wrap(exc)))
                else:
                    alone.append((job, result, None))
            done = [result for job, result, error in alone if job.insert and error is None]
            if done:
                self.stats.record_batch(len(done), sum(1 for r in done if r is not None))
            outcomes += alone
            return
        # The common case, settled here in one pass rather than through outcome tuples.
        size = stored = 0
        for job, result in zip(writes, results, strict=True):
            if job.insert:
                size += 1
                if result is not None:
                    stored += 1
            _resolve(job.future, result, None)
        if size:
            self.stats.record_batch(size, stored)

    async def _run_batch(self, batch: list[_Job]) -> list[_Outcome]:
        """Runs `batch`; the outcomes of jobs not already settled, which the caller settles."""
        conn = self._conn
        if conn is None:
            error = StoreError("the inbox store is closed")
            return [(job, None, error) for job in batch]
        writes = [job for job in batch if job.writes]
        reads = [job for job in batch if not job.writes] if len(writes) < len(batch) else []
        outcomes: list[_Outcome] = []
        if writes:
            inserts = [job for job in writes if job.insert]
            if inserts and len(inserts) < len(writes) and self._io is not None:
                # Deliveries first, as one statement on the store's thread (see _write), then
                # the other writes in a transaction of their own. Nothing queued together
                # depends on their order: the other writes touch events stored earlier.
                groups = [inserts, [job for job in writes if not job.insert]]
            else:
                groups = [writes]
            for group in groups:
                await self._write_group(conn, group, outcomes)
        for job in reads:
            try:
                outcomes.append((job, job.run(conn, job.arg), None))
            except Exception as exc:
                outcomes.append((job, None, _wrap(exc)))
        return outcomes

    async def _submit(self, run: Callable[[sqlite3.Connection], T], *, writes: bool) -> T:
        if self._writer is None:
            await self._ensure_open()
        future: asyncio.Future[T] = self._enqueue(_call, run, writes=writes, insert=False)
        return await future

    def _enqueue(
        self,
        run: Callable[[sqlite3.Connection, Any], object],
        arg: object,
        *,
        writes: bool,
        insert: bool,
    ) -> asyncio.Future[Any]:
        if self._writer is None or self._loop is None:
            raise StoreError(
                "the inbox store is closed" if self._closed else "the inbox store is not open"
            )
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise StoreError("an SQLite inbox store is used from the event loop that opened it")
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Job(run, arg, future, writes, insert))
        self._wake.set()
        return future

    async def _ensure_open(self) -> None:
        if self._writer is None:
            if self._closed:
                raise StoreError("the inbox store is closed")
            await self.open()

    # -- schema --------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        conn = self._conn
        if conn is None:
            raise StoreError("the inbox store is closed")
        t = self.table
        self._wait_and_begin(conn)
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
        # Purges and counts of finished events use it. Partial, so that storing a delivery
        # (always pending) does not touch it: a row enters it once, when it is finished.
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {t}_received ON {t} (status, received_at) "
            "WHERE status <> 'pending'"
        )
        conn.execute("COMMIT")
        if self.path != ":memory:":
            _fsync_directory(Path(self.path).resolve().parent)

    # -- the protocol ----------------------------------------------------------------------------

    async def add(self, event: NewEvent) -> int | None:
        if self._writer is None:
            await self._ensure_open()
        row = (
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
        future: asyncio.Future[int | None] = self._enqueue(
            self._insert, row, writes=True, insert=True
        )
        return await future

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
        # Two index-only counts: pending rows in the due index, finished ones in the received one.
        sql = (
            f"SELECT 'pending', count(*) FROM {self.table} WHERE status = 'pending' UNION ALL "
            f"SELECT status, count(*) FROM {self.table} WHERE status <> 'pending' GROUP BY status"
        )

        def run(conn: sqlite3.Connection) -> dict[EventStatus, int]:
            found = {EventStatus(status): int(n) for status, n in conn.execute(sql)}
            return {status: found.get(status, 0) for status in EventStatus}

        return await self._submit(run, writes=False)

    async def next_due(self) -> float | None:
        # Only the earliest rows by due time (an index range): a backlog of retries scheduled
        # far ahead costs nothing here. Callers cap their wait anyway.
        sql = (
            "SELECT min(max(next_attempt_at, coalesce(claimed_until, 0))) FROM "
            f"(SELECT next_attempt_at, claimed_until FROM {self.table} WHERE status = 'pending' "
            f"ORDER BY next_attempt_at LIMIT {_DUE_WINDOW})"
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
        # `status <> 'pending'` is implied by the list, and spelled out so the partial index serves.
        sql = (
            f"DELETE FROM {self.table} WHERE status IN ({marks}) AND status <> 'pending' "
            "AND received_at < ?"
        )
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
