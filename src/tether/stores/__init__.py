"""Durable stores behind tether's components: SQLite by default, PostgreSQL to share one.

    from tether import stores

    store = stores.SQLiteInboxStore("tether.db")                      # the default
    store = stores.PostgresInboxStore("postgresql://app@127.0.0.1/app")
    store = stores.open_inbox_store("postgresql://...")               # from a URL or a path

The outbox has the same two backends (`SQLiteOutboxStore`, `PostgresOutboxStore`); leases have
three (`SQLiteLeaseStore`, `PostgresLeaseStore`, `tether.distributed.RedisLeaseStore`, all
reachable through `open_lease_store`). Every backend of a concern implements one protocol and
passes the same conformance tests.
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
from tether.stores._lease import HeldLease, LeaseStore
from tether.stores._lease_postgres import PostgresLeaseStore
from tether.stores._lease_sqlite import SQLiteLeaseStore
from tether.stores._open import open_inbox_store, open_lease_store
from tether.stores._outbox_postgres import PostgresOutboxStore
from tether.stores._outbox_sqlite import SQLiteOutboxStore

__all__ = [
    "EventStatus",
    "HeldLease",
    "InboxEvent",
    "InboxStore",
    "Lease",
    "LeaseStore",
    "NewEvent",
    "PostgresInboxStore",
    "PostgresLeaseStore",
    "PostgresOutboxStore",
    "SQLiteInboxStore",
    "SQLiteLeaseStore",
    "SQLiteOutboxStore",
    "StoreError",
    "StoreStats",
    "open_inbox_store",
    "open_lease_store",
]
