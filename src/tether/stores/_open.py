"""Choosing an inbox store from one string, for configuration files and the CLI."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from tether._errors import ConfigError
from tether.stores._inbox import InboxStore
from tether.stores._inbox_postgres import PostgresInboxStore
from tether.stores._inbox_sqlite import SQLiteInboxStore

__all__ = ["open_inbox_store"]


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
