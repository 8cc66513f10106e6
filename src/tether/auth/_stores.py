"""Token stores: where token sets live between calls, restarts and processes.

Every store offers compare-and-swap on the token set's `version` and a lock that other
processes sharing the store respect. Together they are the cross-process half of single-flight
refresh: the process that holds the lock re-reads the store, and adopts a token a peer already
rotated instead of spending the old refresh token a second time (which a server with reuse
detection answers by revoking the whole grant).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tether._core._oauth import TokenResponseError, TokenSet
from tether._errors import AuthError, ConfigError

try:  # POSIX advisory locks; where they do not exist, stores fall back to compare-and-swap only.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileTokenStore", "MemoryTokenStore", "SQLiteTokenStore", "TokenStore"]

#: How long a process waits for a store's refresh lock, and how long a SQLite lease lasts.
#: Longer than one refresh can take (3 attempts of 30 s plus backoff), so a lease never expires
#: under a refresh that is still running.
DEFAULT_LOCK_TIMEOUT = 120.0
_POLL = 0.02


class TokenStore(abc.ABC):
    """Keeps token sets by key. Subclass it to keep them elsewhere (a keyring, a database).

    `save` is a compare-and-swap: it writes only when the stored version is `expected_version`
    (None: nothing stored yet) and reports whether it did. `lock` serialises refreshes of one
    key across processes; in-process coordination is done before the store is reached.
    """

    @property
    @abc.abstractmethod
    def identity(self) -> str:
        """A name equal for every store object that reads and writes the same place."""

    @abc.abstractmethod
    async def load(self, key: str) -> TokenSet | None:
        """The stored token set for `key`, or None."""

    @abc.abstractmethod
    async def save(self, key: str, token: TokenSet, *, expected_version: int | None) -> bool:
        """Durably store `token` if the stored version is `expected_version`; False if not."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Forget `key` (after sign-out or revocation)."""

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Hold the refresh lock for `key` against other processes. The default holds none."""
        yield


def _decode(data: Any, where: str) -> TokenSet | None:
    if data is None:
        return None
    try:
        if isinstance(data, str | bytes):
            data = json.loads(data)
        if isinstance(data, dict):
            return TokenSet.from_json(data)
        problem = "not an object"
    except (TokenResponseError, ValueError) as error:
        problem = str(error)
    raise AuthError(f"token store {where} holds an unreadable token set: {problem}")


def _matches(current: TokenSet | None, expected_version: int | None) -> bool:
    if current is None:
        return expected_version is None or expected_version == 0
    return current.version == expected_version


class MemoryTokenStore(TokenStore):
    """Token sets in this process's memory: lost on exit, shared by credentials in the process."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenSet] = {}
        self._lock = threading.Lock()
        self._id = f"memory:{uuid.uuid4().hex}"

    @property
    def identity(self) -> str:
        return self._id

    async def load(self, key: str) -> TokenSet | None:
        with self._lock:
            return self._tokens.get(key)

    async def save(self, key: str, token: TokenSet, *, expected_version: int | None) -> bool:
        with self._lock:
            if not _matches(self._tokens.get(key), expected_version):
                return False
            self._tokens[key] = token
            return True

    async def delete(self, key: str) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def __repr__(self) -> str:
        return f"MemoryTokenStore(keys={len(self._tokens)})"


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry itself is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _acquire_flock(path: Path, *, timeout: float) -> int:
    """An exclusive `flock` on `path`, polled so waiting never blocks the event loop."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if fcntl is None:  # pragma: no cover - Windows
        return fd
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise AuthError(
                    f"timed out after {timeout:g} s waiting for the token store lock {path.name}"
                ) from None
            await asyncio.sleep(_POLL)
            continue
        return fd


def _release_flock(fd: int) -> None:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class FileTokenStore(TokenStore):
    """Token sets in one JSON file, created 0600 and replaced atomically after an fsync.

    The file is written through a temporary file in the same directory, created with mode 0600
    (never chmod-ed afterwards, so there is no moment it is readable by others), fsync-ed, renamed
    over the old file, and the directory fsync-ed: a crash leaves either the old or the new token
    set, never a torn file. Processes sharing the file coordinate with `flock` on sidecar lock
    files (`<file>.lock` for writes, `<file>.<key hash>.lock` for refreshes).
    """

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        self.path = Path(path).expanduser().absolute()
        if self.path.is_dir():
            raise ConfigError(f"FileTokenStore path {self.path} is a directory")
        self._lock_timeout = lock_timeout

    @property
    def identity(self) -> str:
        return f"file:{os.path.realpath(self.path)}"

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise AuthError(f"token store {self.path} is not valid JSON") from exc
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, dict):
            raise AuthError(f"token store {self.path} has an unknown format")
        return tokens

    def _write(self, tokens: dict[str, Any]) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        payload = json.dumps({"format": 1, "tokens": tokens}, indent=1, sort_keys=True).encode()
        temp = directory / f".{self.path.name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        _fsync_dir(directory)

    async def load(self, key: str) -> TokenSet | None:
        tokens = await asyncio.to_thread(self._read)
        return _decode(tokens.get(key), str(self.path))

    async def save(self, key: str, token: TokenSet, *, expected_version: int | None) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = await _acquire_flock(self._sidecar("lock"), timeout=self._lock_timeout)
        try:
            return await asyncio.to_thread(self._compare_and_write, key, token, expected_version)
        finally:
            _release_flock(fd)

    def _compare_and_write(self, key: str, token: TokenSet, expected_version: int | None) -> bool:
        tokens = self._read()
        current = _decode(tokens.get(key), str(self.path))
        if not _matches(current, expected_version):
            return False
        tokens[key] = token.to_json()
        self._write(tokens)
        return True

    async def delete(self, key: str) -> None:
        fd = await _acquire_flock(self._sidecar("lock"), timeout=self._lock_timeout)
        try:

            def remove() -> None:
                tokens = self._read()
                if tokens.pop(key, None) is not None:
                    self._write(tokens)

            await asyncio.to_thread(remove)
        finally:
            _release_flock(fd)

    def _sidecar(self, suffix: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{suffix}")

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        fd = await _acquire_flock(self._sidecar(f"{digest}.lock"), timeout=self._lock_timeout)
        try:
            yield
        finally:
            _release_flock(fd)

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tether_tokens (
    key TEXT PRIMARY KEY, version INTEGER NOT NULL, data TEXT NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tether_token_locks (
    key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL
);
"""


class SQLiteTokenStore(TokenStore):
    """Token sets in a SQLite database (WAL, synchronous=FULL), created 0600.

    Compare-and-swap is one conditional UPDATE; the refresh lock is a lease row that expires
    after `lock_timeout` seconds, so a process that died holding it does not block the others
    for longer than that.
    """

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        self.path = Path(path).expanduser().absolute()
        self._lock_timeout = lock_timeout
        self._ready = False
        self._init_lock = threading.Lock()

    @property
    def identity(self) -> str:
        return f"sqlite:{os.path.realpath(self.path)}"

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            with self._init_lock:
                if not self._ready:
                    self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    # Created 0600 before SQLite opens it, so it is never readable by others.
                    os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        if not self._ready:
            connection.executescript(_SCHEMA)
            self._ready = True
        return connection

    def _run(self, work: Any, *args: Any) -> Any:
        connection = self._connect()
        try:
            return work(connection, *args)
        finally:
            connection.close()

    async def load(self, key: str) -> TokenSet | None:
        def work(db: sqlite3.Connection) -> TokenSet | None:
            row = db.execute("SELECT data FROM tether_tokens WHERE key = ?", (key,)).fetchone()
            return _decode(row[0], str(self.path)) if row else None

        result: TokenSet | None = await asyncio.to_thread(self._run, work)
        return result

    async def save(self, key: str, token: TokenSet, *, expected_version: int | None) -> bool:
        data = json.dumps(token.to_json())

        def work(db: sqlite3.Connection) -> bool:
            now = time.time()
            if expected_version is None or expected_version == 0:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO tether_tokens (key, version, data, updated_at)"
                    " VALUES (?, ?, ?, ?)",
                    (key, token.version, data, now),
                )
            else:
                cursor = db.execute(
                    "UPDATE tether_tokens SET version = ?, data = ?, updated_at = ?"
                    " WHERE key = ? AND version = ?",
                    (token.version, data, now, key, expected_version),
                )
            return cursor.rowcount == 1

        result: bool = await asyncio.to_thread(self._run, work)
        return result

    async def delete(self, key: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM tether_tokens WHERE key = ?", (key,))

        await asyncio.to_thread(self._run, work)

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        owner = uuid.uuid4().hex

        def take(db: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = db.execute(
                "INSERT INTO tether_token_locks (key, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO UPDATE SET owner = excluded.owner,"
                " expires_at = excluded.expires_at WHERE tether_token_locks.expires_at < ?",
                (key, owner, now + self._lock_timeout, now),
            )
            return cursor.rowcount == 1

        def release(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM tether_token_locks WHERE key = ? AND owner = ?", (key, owner))

        deadline = time.monotonic() + self._lock_timeout
        while not await asyncio.to_thread(self._run, take):
            if time.monotonic() >= deadline:
                raise AuthError(
                    f"timed out after {self._lock_timeout:g} s waiting for the token store lock"
                )
            await asyncio.sleep(_POLL)
        try:
            yield
        finally:
            await asyncio.to_thread(self._run, release)

    def __repr__(self) -> str:
        return f"SQLiteTokenStore({str(self.path)!r})"
