"""Choosing a store from one string, for configuration files and the CLI."""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import unquote, urlsplit

from tether._errors import ConfigError
from tether.stores._inbox import InboxStore
from tether.stores._inbox_postgres import PostgresInboxStore
from tether.stores._inbox_sqlite import SQLiteInboxStore
from tether.stores._lease import LeaseStore
from tether.stores._lease_postgres import PostgresLeaseStore
from tether.stores._lease_sqlite import SQLiteLeaseStore

__all__ = ["StoreKind", "open_inbox_store", "open_lease_store", "parse_store_location"]


StoreKind = Literal["sqlite", "postgresql", "redis"]

_KINDS: dict[str, StoreKind] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "sqlite": "sqlite",
}
_SPELLING: dict[StoreKind, str] = {
    "sqlite": "sqlite:///path",
    "postgresql": "postgresql://...",
    "redis": "redis://...",
}


def parse_store_location(
    location: str | os.PathLike[str], *, what: str, kinds: tuple[StoreKind, ...]
) -> tuple[StoreKind, str]:
    """(kind, location) of a store named by one string: a file path, `sqlite:///relative.db` /
    `sqlite:////absolute.db` (SQLAlchemy's convention), a `postgresql://` (or `postgres://`) URL
    or, where `kinds` allows it, a `redis://`, `rediss://` or `unix://` URL.

    Raises:
        ConfigError: an empty location, or a URL scheme outside `kinds`.
    """
    text = os.fspath(location)
    if not text.strip():
        raise ConfigError(f"the {what} location is empty")
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if not scheme:
        return "sqlite", text
    kind = _KINDS.get(scheme)
    if kind is None or kind not in kinds:
        names = ["a file path", *(_SPELLING[k] for k in kinds)]
        known = f"{', '.join(names[:-1])} or {names[-1]}"
        raise ConfigError(f"unknown {what} URL scheme {scheme!r}: use {known}")
    if kind == "sqlite":
        path = unquote(text[len("sqlite://") :]).removeprefix("/")
        if not path:
            raise ConfigError("a sqlite:// URL needs a path, e.g. sqlite:///tether.db")
        return "sqlite", path
    return kind, text


def open_inbox_store(
    location: str | os.PathLike[str], *, table: str = "tether_inbox", schema: str = "public"
) -> InboxStore:
    """The inbox store at `location` (not yet opened).

    `location` is a file path or `sqlite:///relative.db` / `sqlite:////absolute.db` for SQLite,
    or a `postgresql://` (or `postgres://`) URL. `schema` applies to PostgreSQL only.

    Raises:
        ConfigError: an empty location or an unknown URL scheme.
    """
    kind, where = parse_store_location(location, what="inbox store", kinds=("sqlite", "postgresql"))
    if kind == "postgresql":
        return PostgresInboxStore(where, schema=schema, table=table)
    return SQLiteInboxStore(where, table=table)


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
    kind, where = parse_store_location(
        target, what="lease store", kinds=("sqlite", "postgresql", "redis")
    )
    if kind == "postgresql":
        return PostgresLeaseStore(where, schema=schema, table=table)
    if kind == "redis":
        try:
            from tether.distributed import RedisLeaseStore  # noqa: PLC0415 - optional extra
        except ImportError:
            raise ConfigError(
                "a redis:// lease store needs redis-py: pip install 'tether[redis]'"
            ) from None
        return RedisLeaseStore(redis=where)
    return SQLiteLeaseStore(where, table=table)
