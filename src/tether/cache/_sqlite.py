"""A cache backend in one SQLite file: entries survive restarts, bounded in bytes.

Every statement runs on a worker thread (`asyncio.to_thread`): a lookup is small, but a
write may wait on another process's lock or a WAL checkpoint, and the event loop must not.
One connection is shared by those threads under a lock; SQLite serialises writers from
other processes with its own file locks (`busy_timeout`).

The file holds what the cache policy hands over: response metadata, bodies, and digests for
keys. URLs, request headers named by credentials, and known secret values are never part of
that (see `tether.policies._cache`), so the file can be read without leaking a credential.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from tether.cache._base import StoredResponse, decode_entry, encode_entry, positive_bytes

__all__ = ["SQLiteCache"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tether_cache (
    key TEXT NOT NULL,
    variant TEXT NOT NULL,
    partition TEXT NOT NULL,
    meta TEXT NOT NULL,
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (key, variant)
);
CREATE INDEX IF NOT EXISTS tether_cache_used ON tether_cache (used);
-- The running total is kept by triggers, so the bound holds for every process on the file
-- without summing the table on each write.
CREATE TABLE IF NOT EXISTS tether_cache_total (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO tether_cache_total (id, bytes) VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS tether_cache_added AFTER INSERT ON tether_cache BEGIN
    UPDATE tether_cache_total SET bytes = bytes + new.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS tether_cache_removed AFTER DELETE ON tether_cache BEGIN
    UPDATE tether_cache_total SET bytes = bytes - old.size WHERE id = 0;
END;
"""

# The least recently used rows are dropped in batches of this many while over the bound.
_EVICT_BATCH = 64
# Reads are recorded in memory and written with the next store (or once this many pile up),
# so a hit costs a read, not a write transaction.
_TOUCH_BATCH = 256
# Recency is a counter in the file, not a clock: every process sharing it agrees on order.
_TOUCH = (
    "UPDATE tether_cache SET used = (SELECT COALESCE(MAX(used), 0) + 1 FROM tether_cache) "
    "WHERE key = ?"
)
_INSERT = (
    "INSERT INTO tether_cache (key, variant, partition, meta, body, size, used) "
    "VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(used), 0) + 1 FROM tether_cache))"
)


def _give_back_pages(conn: sqlite3.Connection) -> None:
    # executescript, not execute: incremental_vacuum frees one page per step, and execute()
    # steps a statement that returns no rows only once.
    conn.executescript("PRAGMA incremental_vacuum;")


class SQLiteCache:
    """Keeps responses in the SQLite file at `path`, up to `max_bytes` of bodies and fields.

    The file is created readable by its owner only. It is opened on first use, in WAL mode
    with `synchronous=NORMAL`: a crash of the process loses nothing, a power cut may lose the
    last responses stored, which a cache can afford. Several processes may share one file.
    """

    __slots__ = ("_conn", "_lock", "_touched", "max_bytes", "path")

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 256 * 2**20) -> None:
        self.path = Path(path)
        self.max_bytes = positive_bytes("SQLiteCache", max_bytes)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # Keys read since the last write, oldest first: their recency is not on disk yet.
        self._touched: dict[str, None] = {}

    # -- the async surface: one worker-thread hop per call ----------------------------------

    async def get(self, key: str) -> Sequence[StoredResponse]:
        return await asyncio.to_thread(self._get, key)

    async def set(self, key: str, response: StoredResponse) -> None:
        await asyncio.to_thread(self._set, key, response)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    async def clear(self) -> None:
        await asyncio.to_thread(self._clear)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    # -- on the worker thread -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is not None:
            return conn
        if not self.path.exists():
            # Cached responses are the user's data: the file starts private, and SQLite gives
            # its -wal and -shm files the same permissions.
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        try:
            # auto_vacuum only takes effect before the first table exists; it lets evictions
            # give pages back so the file itself stays near the bound.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _get(self, key: str) -> list[StoredResponse]:
        with self._lock:
            conn = self._connect()
            rows = conn.execute(
                "SELECT variant, partition, meta, body FROM tether_cache WHERE key = ?", (key,)
            ).fetchall()
            if not rows:
                return []
            found: list[StoredResponse] = []
            damaged: list[tuple[str, str]] = []
            for variant, partition, meta, body in rows:
                entry = decode_entry(meta)
                if entry is None:
                    damaged.append((key, variant))
                else:
                    found.append(StoredResponse(entry=entry, body=body, partition=partition))
            if damaged:
                conn.executemany("DELETE FROM tether_cache WHERE key = ? AND variant = ?", damaged)
            self._touched.pop(key, None)
            self._touched[key] = None
            if len(self._touched) >= _TOUCH_BATCH:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._record_touches(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            return found

    def _record_touches(self, conn: sqlite3.Connection) -> None:
        """Write the recency of the keys read since the last write, in the order read."""
        touched = self._touched
        if touched:
            conn.executemany(_TOUCH, [(key,) for key in touched])
            touched.clear()

    def _set(self, key: str, response: StoredResponse) -> None:
        size = response.size
        variant = response.variant
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Reads first, so what was just used is not what gets evicted for this write.
                self._record_touches(conn)
                conn.execute(
                    "DELETE FROM tether_cache WHERE key = ? AND variant = ?", (key, variant)
                )
                if size <= self.max_bytes:
                    conn.execute(
                        _INSERT,
                        (
                            key,
                            variant,
                            response.partition,
                            encode_entry(response.entry),
                            response.body,
                            size,
                        ),
                    )
                evicted = self._evict(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if evicted:
                _give_back_pages(conn)

    def _evict(self, conn: sqlite3.Connection) -> bool:
        (total,) = conn.execute("SELECT bytes FROM tether_cache_total WHERE id = 0").fetchone()
        evicted = False
        while total > self.max_bytes:
            oldest = conn.execute(
                "SELECT rowid, size FROM tether_cache ORDER BY used LIMIT ?", (_EVICT_BATCH,)
            ).fetchall()
            if not oldest:
                break
            doomed = []
            for rowid, size in oldest:
                doomed.append((rowid,))
                total -= size
                if total <= self.max_bytes:
                    break
            conn.executemany("DELETE FROM tether_cache WHERE rowid = ?", doomed)
            evicted = True
        return evicted

    def _delete(self, key: str) -> None:
        with self._lock:
            self._connect().execute("DELETE FROM tether_cache WHERE key = ?", (key,))

    def _clear(self) -> None:
        with self._lock:
            conn = self._connect()
            conn.execute("DELETE FROM tether_cache")
            _give_back_pages(conn)

    def _close(self) -> None:
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            self._conn = None
            try:
                if self._touched:
                    conn.execute("BEGIN IMMEDIATE")
                    self._record_touches(conn)
                    conn.execute("COMMIT")
            finally:
                self._touched.clear()
                conn.close()

    def __repr__(self) -> str:
        return f"SQLiteCache({str(self.path)!r}, max_bytes={self.max_bytes})"
