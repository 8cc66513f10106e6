"""HubStore conformance: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from tether import ConfigError
from tether.hub import HubStore, PollerSnapshot, open_hub_store
from tether.hub._store import PostgresHubStore, SQLiteHubStore, split_store_location

from .conftest import HubStoreFactory


def _snapshot(name: str = "oslo", *, fence: int = 1, data: object = None) -> PollerSnapshot:
    return PollerSnapshot(
        name=name,
        data=data,
        has_data=data is not None,
        last_success=100.0 if data is not None else None,
        polled_at=100.0,
        consecutive_failures=0,
        last_error=None,
        holder="hub-a",
        fence=fence,
    )


async def test_append_returns_increasing_ids_and_keeps_the_data(hub_store: HubStore) -> None:
    """Appended events come back with increasing ids, their type, source and JSON data."""
    first = await hub_store.append("data.oslo", "oslo", {"t": 1.5, "list": [1, "x"]}, at=10.0)
    second = await hub_store.append("poller.oslo.available", "oslo", None, at=11.0)
    assert first is not None
    assert second is not None
    assert second.id > first.id
    events = await hub_store.events(since=0)
    assert [e.to_json() for e in events] == [first.to_json(), second.to_json()]
    assert events[0].data == {"t": 1.5, "list": [1, "x"]}
    assert await hub_store.last_id() == second.id


async def test_a_repeated_key_is_stored_once(hub_store: HubStore) -> None:
    """An event appended again with the same key stores nothing and returns None."""
    stored = await hub_store.append("webhook.a", "a", {"n": 1}, at=1.0, key="inbox:a:1")
    again = await hub_store.append("webhook.a", "a", {"n": 1}, at=2.0, key="inbox:a:1")
    assert stored is not None
    assert again is None
    assert len(await hub_store.events(since=0)) == 1
    assert await hub_store.find("inbox:a:1") == stored
    assert await hub_store.find("inbox:a:2") is None


async def test_events_filter_by_id_prefix_and_limit(hub_store: HubStore) -> None:
    """`since` pages forward, `type_prefix` filters by type prefix, and without `since` the
    newest `limit` events come back oldest first."""
    ids = []
    for index in range(6):
        kind = "data.oslo" if index % 2 == 0 else "webhook.w.alert"
        event = await hub_store.append(kind, "s", index, at=float(index))
        assert event is not None
        ids.append(event.id)
    assert [e.data for e in await hub_store.events(since=ids[1])] == [2, 3, 4, 5]
    assert [e.data for e in await hub_store.events(since=0, limit=2)] == [0, 1]
    assert [e.data for e in await hub_store.events(type_prefix="data.")] == [0, 2, 4]
    assert [e.data for e in await hub_store.events(limit=2)] == [4, 5]
    assert [e.data for e in await hub_store.events(type_prefix="webhook", limit=2)] == [3, 5]
    # A prefix is text, not a pattern: '%' and '_' match only themselves.
    assert await hub_store.events(type_prefix="data_") == []
    assert await hub_store.events(type_prefix="%") == []


async def test_purge_removes_only_older_events(hub_store: HubStore) -> None:
    """purge(before=t) deletes events older than t and says how many."""
    for at in (1.0, 2.0, 3.0):
        await hub_store.append("x", "s", at, at=at)
    assert await hub_store.purge(before=2.5) == 2
    assert [e.data for e in await hub_store.events(since=0)] == [3.0]


async def test_snapshots_are_fenced(hub_store: HubStore) -> None:
    """A snapshot with a lower fence than the stored one is refused; equal or higher wins."""
    assert await hub_store.snapshot("oslo") is None
    assert await hub_store.put_snapshot(_snapshot(fence=2, data={"v": 1}))
    assert await hub_store.put_snapshot(_snapshot(fence=2, data={"v": 2}))
    assert not await hub_store.put_snapshot(_snapshot(fence=1, data={"v": 3}))
    stored = await hub_store.snapshot("oslo")
    assert stored is not None
    assert stored.data == {"v": 2}
    assert stored.fence == 2
    failed = PollerSnapshot(
        name="oslo",
        data={"v": 2},
        has_data=True,
        last_success=100.0,
        polled_at=130.0,
        consecutive_failures=2,
        last_error={"class": "ServerError", "message": "503", "at": 130.0},
        holder="hub-b",
        fence=3,
    )
    assert await hub_store.put_snapshot(failed)
    assert await hub_store.snapshot("oslo") == failed
    await hub_store.put_snapshot(_snapshot("bergen"))
    assert [s.name for s in await hub_store.snapshots()] == ["bergen", "oslo"]


async def test_two_stores_on_one_database_see_each_other(
    hub_store_factory: HubStoreFactory,
) -> None:
    """Concurrent appends from two stores on one database get distinct ids, all readable."""
    one, two = hub_store_factory(), hub_store_factory()
    await one.open()
    await two.open()
    await asyncio.gather(
        *(store.append("x", "s", i, at=float(i)) for i in range(20) for store in (one, two))
    )
    assert len({e.id for e in await two.events(since=0)}) == 40
    await one.ping()


def test_locations() -> None:
    """Paths and sqlite:// URLs open SQLite; postgresql:// URLs PostgreSQL, schema taken out."""
    assert isinstance(open_hub_store("hub.db"), SQLiteHubStore)
    assert split_store_location("sqlite:///x/hub.db") == ("sqlite", "x/hub.db", "public")
    kind, dsn, schema = split_store_location("postgresql://u:pw@127.0.0.1/db?schema=s1&sslmode=x")
    assert (kind, dsn, schema) == ("postgresql", "postgresql://u:pw@127.0.0.1/db?sslmode=x", "s1")
    store = open_hub_store("postgresql://u:pw@127.0.0.1/db?schema=s1")
    assert isinstance(store, PostgresHubStore)
    assert "pw" not in repr(store)
    with pytest.raises(ConfigError):
        open_hub_store("mysql://x")
    with pytest.raises(ConfigError):
        open_hub_store("postgresql://x/db?schema=bad-name")
