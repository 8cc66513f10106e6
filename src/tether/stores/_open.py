"""Choosing a store from one string, for configuration files and the CLI."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from tether._errors import ConfigError
from tether.stores._inbox import InboxStore
from tether.stores._inbox_postgres import PostgresInboxStore
from tether.stores._inbox_sqlite import SQLiteInboxStore
from tether.stores._lease import LeaseStore
from tether.stores._lease_postgres import PostgresLeaseStore
from tether.stores._lease_sqlite import SQLiteLeaseStore

__all__ = ["open_inbox_store", "open_lease_store"]


def open_inbox_store(
    location: str | os.PathLike[str], *, table: str = "tether_inbox", schema: str = "public"
) -> InboxStore:
    """The inbox store at `location` (not yet opened).

    `location` is a file path or `sqlite:///relative.db` / `sqlite:////absolute.db` for SQLite,
    or a `postgresql://` (or `postgres://`) URL. `schema` applies to PostgreSQL only.

    Raises:
        ConfigError: an empty location or an unknown URL scheme.
    """
    text = os.fspath(location)
    if not text.strip():
        raise ConfigError("the inbox store location is empty")
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return PostgresInboxStore(text, schema=schema, table=table)
    if scheme == "sqlite":
        path = unquote(text[len("sqlite://") :])
        # sqlite:///x.db is relative, sqlite:////x.db absolute: SQLAlchemy's convention.
        path = path.removeprefix("/")
        if not path:
            raise ConfigError("a sqlite:// URL needs a path, e.g. sqlite:///tether.db")
        return SQLiteInboxStore(path, table=table)
    if scheme:
        raise ConfigError(
            f"unknown inbox store URL scheme {scheme!r}: use a file path, sqlite:///path "
            "or postgresql://..."
        )
    return SQLiteInboxStore(text, table=table)


def open_lease_store(
    target: str | os.PathLike[str], *, table: str = "tether_leases", schema: str = "public"
) -> LeaseStore:
    """The lease store at `target` (not yet opened).

    A file path or `sqlite:///path` gives a `SQLiteLeaseStore`, a `postgresql://` URL a
    `PostgresLeaseStore` (in `schema`), a `redis://`, `rediss://` or `unix://` URL a
    `tether.distributed.RedisLeaseStore` (which needs the `redis` extra).

    Raises:
        ConfigError: an empty target or an unknown URL scheme.
    """
    text = os.fspath(target)
    if not text.strip():
        raise ConfigError("the lease store location is empty")
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return PostgresLeaseStore(text, schema=schema, table=table)
    if scheme in ("redis", "rediss", "unix"):
        try:
            from tether.distributed import RedisLeaseStore  # noqa: PLC0415 - optional extra
        except ImportError:
            raise ConfigError(
                "a redis:// lease store needs redis-py: pip install 'tether[redis]'"
            ) from None
        return RedisLeaseStore(redis=text)
    if scheme == "sqlite":
        path = unquote(text[len("sqlite://") :]).removeprefix("/")
        if not path:
            raise ConfigError("a sqlite:// URL needs a path, e.g. sqlite:///tether.db")
        return SQLiteLeaseStore(path, table=table)
    if scheme:
        raise ConfigError(
            f"unknown lease store URL scheme {scheme!r}: use a file path, sqlite:///path, "
            "postgresql://... or redis://..."
        )
    return SQLiteLeaseStore(text, table=table)
