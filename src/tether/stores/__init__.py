"""Durable stores behind tether's components: SQLite by default, PostgreSQL to share one.

    from tether import stores

    store = stores.SQLiteInboxStore("tether.db")                      # the default
    store = stores.PostgresInboxStore("postgresql://app@127.0.0.1/app")
    store = stores.open_inbox_store("postgresql://...")               # from a URL or a path

Every backend implements the same protocol (`InboxStore`) and passes the same conformance tests.
"""

from tether.stores._inbox import (
    EventStatus,
    InboxEvent,
    InboxStore,
    Lease,
    NewEvent,
    StoreError,
    StoreStats,
)
from tether.stores._inbox_postgres import PostgresInboxStore
from tether.stores._inbox_sqlite import SQLiteInboxStore
from tether.stores._open import open_inbox_store

__all__ = [
    "EventStatus",
    "InboxEvent",
    "InboxStore",
    "Lease",
    "NewEvent",
    "PostgresInboxStore",
    "SQLiteInboxStore",
    "StoreError",
    "StoreStats",
    "open_inbox_store",
]
