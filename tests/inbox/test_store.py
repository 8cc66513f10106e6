"""Inbox store conformance: SQLite and PostgreSQL behave the same under the same tests."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tether import stores
from tether._errors import ConfigError
from tether.stores import EventStatus, NewEvent

from .conftest import StoreFactory

T0 = 1_767_225_600.0
LEASE = 30.0


def new_event(
    event_id: str = "evt_1",
    *,
    source: str = "stripe",
    event_type: str | None = "invoice.paid",
    received_at: float = T0,
    body: bytes = b'{"id":"evt_1"}',
) -> NewEvent:
    return NewEvent(
        source=source,
        event_id=event_id,
        event_type=event_type,
        received_at=received_at,
        headers=(("Content-Type", "application/json"), ("X-Repeat", "a"), ("X-Repeat", "b")),
        body=body,
        scheme="stripe",
        secret_index=1,
        signed_at=int(received_at),
        msg_id=None,
    )


async def test_an_event_round_trips_with_its_bytes_headers_and_verification(
    store: stores.InboxStore,
) -> None:
    """Everything the receiver wrote comes back exactly, non-UTF-8 body and repeated headers too."""
    body = b"\xff\xfe\x00 not utf-8 \x80"
    row_id = await store.add(new_event(body=body))
    assert row_id is not None
    event = await store.get(row_id)
    assert event is not None
    assert (event.source, event.event_id, event.event_type) == ("stripe", "evt_1", "invoice.paid")
    assert event.body == body
    assert event.headers == (
        ("Content-Type", "application/json"),
        ("X-Repeat", "a"),
        ("X-Repeat", "b"),
    )
    assert (event.scheme, event.secret_index, event.signed_at, event.msg_id) == (
        "stripe",
        1,
        int(T0),
        None,
    )
    assert event.status is EventStatus.PENDING
    assert (event.attempts, event.handled, event.completed_at) == (0, (), None)
    assert event.header("x-repeat") == "a"
    assert await store.find("stripe", "evt_1") == event


async def test_the_same_source_and_event_id_is_stored_once(store: stores.InboxStore) -> None:
    """A second delivery of an event is reported as a duplicate and changes nothing."""
    first = await store.add(new_event(body=b"first"))
    again = await store.add(new_event(body=b"second"))
    other_source = await store.add(new_event(source="github"))
    assert first is not None
    assert again is None
    assert other_source is not None
    stored = await store.get(first)
    assert stored is not None
    assert stored.body == b"first"
    assert store.stats.duplicates == 1


async def test_concurrent_deliveries_share_commits(store: stores.InboxStore) -> None:
    """Deliveries that arrive together are committed together: fewer commits than deliveries."""
    ids = await asyncio.gather(*(store.add(new_event(f"evt_{i}")) for i in range(300)))
    assert None not in ids
    assert len(set(ids)) == 300
    assert store.stats.inserted == 300
    assert store.stats.commits < 300
    assert store.stats.largest_batch > 1
    counts = await store.counts()
    assert counts[EventStatus.PENDING] == 300


async def test_the_same_event_twice_in_one_commit_is_stored_once(
    store: stores.InboxStore,
) -> None:
    """Concurrent copies of one delivery yield exactly one new row; the rest are duplicates."""
    ids = await asyncio.gather(*(store.add(new_event("evt_same")) for _ in range(20)))
    assert sum(1 for i in ids if i is not None) == 1
    assert (await store.counts())[EventStatus.PENDING] == 1


async def _assert_ids_name_their_events(
    store: stores.InboxStore, wanted: list[str], ids: list[int | None]
) -> None:
    """Each id add() returned is the row of the event it was asked to store."""
    for event_id, row_id in zip(wanted, ids, strict=True):
        if row_id is not None:
            event = await store.get(row_id)
            assert event is not None
            assert event.event_id == event_id


async def test_one_commit_mixing_new_stored_and_repeated_deliveries(
    store: stores.InboxStore,
) -> None:
    """In one commit, new events get their own ids, stored ones and repeats are duplicates."""
    stored = [await store.add(new_event(f"old_{i}")) for i in range(3)]
    wanted = ["new_0", "old_1", "new_1", "new_0", "old_2", "new_2", "new_1"]
    ids = await asyncio.gather(*(store.add(new_event(e)) for e in wanted))
    assert [i is not None for i in ids] == [True, False, True, False, False, True, False]
    assert None not in stored
    assert len({i for i in ids if i is not None} | set(stored)) == 6
    await _assert_ids_name_their_events(store, wanted, ids)
    assert (await store.counts())[EventStatus.PENDING] == 6


async def test_a_commit_of_hundreds_of_deliveries_with_repeats_far_apart(
    store: stores.InboxStore,
) -> None:
    """A commit larger than one statement carries: a repeat hundreds of rows later is caught."""
    wanted = [f"evt_{i % 250}" for i in range(400)]
    ids = await asyncio.gather(*(store.add(new_event(e)) for e in wanted))
    assert all(i is not None for i in ids[:250])
    assert all(i is None for i in ids[250:])
    assert store.stats.largest_batch > 128
    await _assert_ids_name_their_events(store, wanted, ids)


async def test_ids_stay_right_after_the_newest_events_were_purged(
    store: stores.InboxStore,
) -> None:
    """Ids never come back after a purge, and each one still names its own event."""
    first = await store.add(new_event("evt_a"))
    (lease,) = await store.claim(now=T0 + 1, limit=1, lease=LEASE)
    await store.complete(lease, status=EventStatus.DELIVERED, handled=(), now=T0 + 2)
    assert await store.purge(before=T0 + 10, statuses=[EventStatus.DELIVERED]) == 1
    wanted = [f"evt_{i}" for i in range(40)]
    ids = await asyncio.gather(*(store.add(new_event(e, received_at=T0 + 20)) for e in wanted))
    assert first is not None
    assert all(i is not None and i > first for i in ids)
    await _assert_ids_name_their_events(store, wanted, ids)


async def test_committed_events_survive_a_new_store_instance(
    store_factory: StoreFactory,
) -> None:
    """What add() acknowledged is there for the next process that opens the store."""
    first = store_factory()
    row_id = await first.add(new_event())
    await first.close()
    second = store_factory()
    await second.open()
    event = await second.get(row_id or -1)
    assert event is not None
    assert event.event_id == "evt_1"
    assert await second.add(new_event()) is None


async def test_claim_leases_due_events_oldest_first_and_counts_the_attempt(
    store: stores.InboxStore,
) -> None:
    """claim() takes due events by due time, up to the limit, and holds them for the lease."""
    await store.add(new_event("late", received_at=T0 + 10))
    await store.add(new_event("early", received_at=T0))
    await store.add(new_event("future", received_at=T0 + 1000))
    leases = await store.claim(now=T0 + 20, limit=5, lease=LEASE)
    assert [lease.event.event_id for lease in leases] == ["early", "late"]
    assert all(lease.event.attempts == 1 for lease in leases)
    assert all(lease.expires_at == T0 + 20 + LEASE for lease in leases)
    assert await store.claim(now=T0 + 21, limit=5, lease=LEASE) == []
    # By then the first leases expired: those events are due again, and still the oldest.
    limited = await store.claim(now=T0 + 2000, limit=2, lease=LEASE)
    assert [lease.event.event_id for lease in limited] == ["early", "late"]
    (last,) = await store.claim(now=T0 + 2000, limit=5, lease=LEASE)
    assert last.event.event_id == "future"


async def test_an_expired_lease_is_claimed_again_and_the_old_holder_loses_it(
    store: stores.InboxStore,
) -> None:
    """After a dispatcher dies its events come back; its late answers are then refused."""
    await store.add(new_event())
    (crashed,) = await store.claim(now=T0, limit=1, lease=LEASE)
    assert await store.claim(now=T0 + LEASE - 1, limit=1, lease=LEASE) == []
    (retaken,) = await store.claim(now=T0 + LEASE, limit=1, lease=LEASE)
    assert retaken.event.attempts == 2
    assert retaken.token != crashed.token
    now = T0 + LEASE + 1
    assert not await store.complete(crashed, status=EventStatus.DELIVERED, handled=[], now=now)
    assert not await store.fail(crashed, error="x", handled=[], retry_at=None, now=now)
    assert await store.renew(crashed, handled=["a"], until=now + LEASE) is None
    assert await store.complete(retaken, status=EventStatus.DELIVERED, handled=["h"], now=now)


async def test_complete_finishes_an_event_once(store: stores.InboxStore) -> None:
    """A completed event records its handlers and time and is never claimed again."""
    row_id = await store.add(new_event())
    (lease,) = await store.claim(now=T0, limit=1, lease=LEASE)
    assert await store.complete(lease, status=EventStatus.DELIVERED, handled=["a", "b"], now=T0 + 1)
    assert not await store.complete(lease, status=EventStatus.DELIVERED, handled=[], now=T0 + 2)
    event = await store.get(row_id or -1)
    assert event is not None
    assert (event.status, event.handled, event.completed_at) == (
        EventStatus.DELIVERED,
        ("a", "b"),
        T0 + 1,
    )
    assert await store.claim(now=T0 + 10_000, limit=1, lease=LEASE) == []
    assert await store.next_due() is None


async def test_complete_accepts_only_finished_statuses(store: stores.InboxStore) -> None:
    """complete() with PENDING or DEAD is API misuse."""
    await store.add(new_event())
    (lease,) = await store.claim(now=T0, limit=1, lease=LEASE)
    for status in (EventStatus.PENDING, EventStatus.DEAD):
        with pytest.raises(ConfigError):
            await store.complete(lease, status=status, handled=[], now=T0)


async def test_a_failed_attempt_waits_for_its_retry_time_then_dies(
    store: stores.InboxStore,
) -> None:
    """fail() with a retry time reschedules; fail() without one dead-letters with the error."""
    row_id = await store.add(new_event())
    (lease,) = await store.claim(now=T0, limit=1, lease=LEASE)
    assert await store.fail(lease, error="boom 1", handled=["a"], retry_at=T0 + 60, now=T0)
    assert await store.next_due() == T0 + 60
    assert await store.claim(now=T0 + 59, limit=1, lease=LEASE) == []
    (second,) = await store.claim(now=T0 + 60, limit=1, lease=LEASE)
    assert second.event.handled == ("a",)
    assert second.event.last_error == "boom 1"
    assert await store.fail(second, error="boom 2", handled=["a"], retry_at=None, now=T0 + 61)
    event = await store.get(row_id or -1)
    assert event is not None
    assert (event.status, event.attempts, event.last_error, event.completed_at) == (
        EventStatus.DEAD,
        2,
        "boom 2",
        T0 + 61,
    )
    assert await store.claim(now=T0 + 10_000, limit=1, lease=LEASE) == []


async def test_renew_records_progress_and_extends_the_lease(store: stores.InboxStore) -> None:
    """renew() keeps the event away from other dispatchers and remembers finished handlers."""
    row_id = await store.add(new_event())
    (lease,) = await store.claim(now=T0, limit=1, lease=LEASE)
    renewed = await store.renew(lease, handled=["first"], until=T0 + 100)
    assert renewed is not None
    assert renewed.expires_at == T0 + 100
    assert await store.claim(now=T0 + 50, limit=1, lease=LEASE) == []
    assert await store.next_due() == T0 + 100
    event = await store.get(row_id or -1)
    assert event is not None
    assert event.handled == ("first",)


async def test_replay_makes_finished_events_pending_with_a_fresh_budget(
    store: stores.InboxStore,
) -> None:
    """replay() by id or by status resets attempts and handlers and leaves pending events be."""
    ids = [await store.add(new_event(f"e{i}", source="s" if i < 2 else "t")) for i in range(4)]
    leases = await store.claim(now=T0, limit=4, lease=LEASE)
    by_id = {lease.event.id: lease for lease in leases}
    await store.fail(by_id[ids[0] or -1], error="x", handled=["h"], retry_at=None, now=T0)
    await store.fail(by_id[ids[2] or -1], error="x", handled=[], retry_at=None, now=T0)
    await store.complete(by_id[ids[1] or -1], status=EventStatus.DELIVERED, handled=["h"], now=T0)
    assert await store.replay(status=EventStatus.DEAD, source="s", now=T0 + 5) == 1
    assert await store.replay(ids=[ids[1] or -1, ids[3] or -1], now=T0 + 6) == 1
    replayed = await store.get(ids[0] or -1)
    assert replayed is not None
    assert (replayed.status, replayed.attempts, replayed.handled, replayed.next_attempt_at) == (
        EventStatus.PENDING,
        0,
        (),
        T0 + 5,
    )
    still_dead = await store.get(ids[2] or -1)
    assert still_dead is not None
    assert still_dead.status is EventStatus.DEAD
    counts = await store.counts()
    assert counts[EventStatus.PENDING] == 3
    with pytest.raises(ConfigError):
        await store.replay(now=T0)


async def test_purge_deletes_old_finished_events_only(store: stores.InboxStore) -> None:
    """purge() removes finished events received before the cutoff, never pending ones."""
    for i in range(3):
        await store.add(new_event(f"old{i}", received_at=T0))
    await store.add(new_event("new", received_at=T0 + 1000))
    await store.add(new_event("other", source="github", received_at=T0))
    leases = await store.claim(now=T0 + 1000, limit=10, lease=LEASE)
    by_event = {lease.event.event_id: lease for lease in leases}
    for name in ("old0", "new", "other"):
        await store.complete(by_event[name], status=EventStatus.DELIVERED, handled=[], now=T0)
    await store.fail(by_event["old1"], error="x", handled=[], retry_at=None, now=T0)
    # old2 is pending again, with a retry scheduled.
    await store.fail(by_event["old2"], error="x", handled=[], retry_at=T0 + 5000, now=T0)
    statuses = [EventStatus.DELIVERED, EventStatus.PENDING]
    assert await store.purge(before=T0 + 500, statuses=statuses, source="stripe") == 1
    assert await store.find("stripe", "old0") is None
    assert await store.find("github", "other") is not None
    assert await store.find("stripe", "old2") is not None
    all_finished = list(EventStatus)
    assert await store.purge(before=T0 + 500, statuses=all_finished) == 2
    remaining = {event.event_id for event in await store.list(limit=10)}
    assert remaining == {"new", "old2"}
    assert await store.purge(before=T0 + 500, statuses=[EventStatus.PENDING]) == 0


async def test_list_filters_and_pages_newest_first(store: stores.InboxStore) -> None:
    """list() filters by source, status and type, newest first, and pages with before_id."""
    for i in range(5):
        await store.add(new_event(f"e{i}", event_type="a" if i % 2 else "b"))
    await store.add(new_event("g", source="github", event_type="push"))
    everything = await store.list(limit=100)
    assert [e.event_id for e in everything] == ["g", "e4", "e3", "e2", "e1", "e0"]
    page = await store.list(source="stripe", limit=2)
    assert [e.event_id for e in page] == ["e4", "e3"]
    following = await store.list(source="stripe", limit=2, before_id=page[-1].id)
    assert [e.event_id for e in following] == ["e2", "e1"]
    assert [e.event_id for e in await store.list(event_type="a")] == ["e3", "e1"]
    assert await store.list(status=EventStatus.DEAD) == []
    assert len(await store.list(status=EventStatus.PENDING)) == 6


async def test_two_dispatchers_never_hold_the_same_event(store_factory: StoreFactory) -> None:
    """Concurrent claims from two store instances on one database split the events."""
    first, second = store_factory(), store_factory()
    await first.open()
    await second.open()
    await asyncio.gather(*(first.add(new_event(f"e{i}")) for i in range(60)))
    claims = await asyncio.gather(
        *((first if i % 2 else second).claim(now=T0, limit=7, lease=LEASE) for i in range(12))
    )
    claimed = [lease.event.id for batch in claims for lease in batch]
    assert len(claimed) == 60
    assert len(set(claimed)) == 60


def test_open_inbox_store_understands_paths_and_urls() -> None:
    """A path or sqlite:// URL gives SQLite, postgresql:// gives PostgreSQL, others fail."""
    assert isinstance(stores.open_inbox_store("inbox.db"), stores.SQLiteInboxStore)
    relative = stores.open_inbox_store("sqlite:///data/inbox.db")
    assert isinstance(relative, stores.SQLiteInboxStore)
    assert relative.path == "data/inbox.db"
    absolute = stores.open_inbox_store("sqlite:////var/lib/inbox.db")
    assert isinstance(absolute, stores.SQLiteInboxStore)
    assert absolute.path == "/var/lib/inbox.db"
    pg = stores.open_inbox_store("postgresql://app:hunter2@127.0.0.1/app", schema="hooks")
    assert isinstance(pg, stores.PostgresInboxStore)
    assert "hunter2" not in repr(pg)
    for bad in ("", "mysql://x/y", "sqlite://"):
        with pytest.raises(ConfigError):
            stores.open_inbox_store(bad)
    with pytest.raises(ConfigError):
        stores.SQLiteInboxStore("x.db", table="inbox; DROP TABLE x")


@contextlib.asynccontextmanager
async def _postgres_store(tmp_path: object, tag: str) -> AsyncIterator[stores.PostgresInboxStore]:
    """An open PostgreSQL store in a schema of its own, dropped afterwards."""
    from .conftest import drop_schema, postgres_dsn

    dsn = await postgres_dsn()
    schema = f"tether_test_{tag}_" + str(abs(hash(str(tmp_path))))[:8]
    store = stores.PostgresInboxStore(dsn, schema=schema)
    try:
        await store.open()
        yield store
    finally:
        await store.close()
        await drop_schema(dsn, schema)


async def _assert_the_refused_delivery_fails_alone(store: stores.InboxStore, bad: NewEvent) -> None:
    outcomes = await asyncio.gather(
        store.add(new_event("good_1")),
        store.add(bad),
        store.add(new_event("good_2")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], int)
    assert isinstance(outcomes[1], stores.StoreError)
    assert isinstance(outcomes[2], int)
    assert {e.event_id for e in await store.list()} == {"good_1", "good_2"}


async def test_a_delivery_postgres_rejects_fails_alone(tmp_path: object) -> None:
    """A row the database refuses (a NUL in text) fails only its own delivery in the batch."""
    async with _postgres_store(tmp_path, "nul") as store:
        await _assert_the_refused_delivery_fails_alone(store, new_event("bad\x00id"))


async def test_sqlite_waits_for_another_writer_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """While another process holds the write lock, add() waits off the event loop, then commits."""
    path = tmp_path / "locked.db"
    async with stores.SQLiteInboxStore(path) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        adding = asyncio.create_task(store.add(new_event()))
        for _ in range(20):
            await asyncio.sleep(0)  # the loop keeps running: nothing here waits on SQLite
        assert not adding.done()
        other.execute("COMMIT")
        other.close()
        assert await adding is not None


async def test_sqlite_gives_up_on_a_lock_held_past_busy_timeout(tmp_path: Path) -> None:
    """A write lock held longer than busy_timeout fails the write with a StoreError."""
    path = tmp_path / "stuck.db"
    async with stores.SQLiteInboxStore(path, busy_timeout=0.2) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(stores.StoreError, match="locked"):
                await store.add(new_event())
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert await store.add(new_event()) is not None


async def test_sqlite_counts_and_purges_from_indexes_not_table_scans(tmp_path: Path) -> None:
    """Counting and purging read indexes; the one for finished events holds only those."""
    path = tmp_path / "plans.db"
    async with stores.SQLiteInboxStore(path) as store:
        first = await store.add(new_event(event_id="evt_a"))
        await store.add(new_event(event_id="evt_b"))
        (lease,) = await store.claim(now=T0 + 1, limit=1, lease=LEASE)
        await store.complete(lease, status=EventStatus.DELIVERED, handled=(), now=T0 + 2)
        counts = await store.counts()
        assert counts[EventStatus.PENDING] == 1
        assert counts[EventStatus.DELIVERED] == 1
        assert lease.event.id == first
    conn = sqlite3.connect(path)
    try:
        finished = conn.execute(
            "SELECT count(*) FROM tether_inbox INDEXED BY tether_inbox_received "
            "WHERE status <> 'pending'"
        ).fetchone()[0]
        assert finished == 1
        for sql in (
            "SELECT 'pending', count(*) FROM tether_inbox WHERE status = 'pending' UNION ALL "
            "SELECT status, count(*) FROM tether_inbox WHERE status <> 'pending' GROUP BY status",
            "DELETE FROM tether_inbox WHERE status IN ('delivered', 'dead') "
            "AND status <> 'pending' AND received_at < 1",
        ):
            steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
            reads = [step for step in steps if step.startswith(("SCAN", "SEARCH"))]
            # "SCAN tether_inbox" alone would be a full table scan.
            assert reads, steps
            assert all("USING" in step and "INDEX" in step for step in reads), steps
    finally:
        conn.close()


async def test_sqlite_stores_a_commit_of_deliveries_as_one_statement(tmp_path: Path) -> None:
    """Deliveries that share a commit are one INSERT in autocommit mode, not a transaction of
    one INSERT per row: each statement costs the event loop a GIL hand-over."""
    statements: list[str] = []
    async with stores.SQLiteInboxStore(tmp_path / "one.db") as store:
        await store.add(new_event("evt_first"))
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        ids = await asyncio.gather(*(store.add(new_event(f"evt_{i}")) for i in range(50)))
        store._conn.set_trace_callback(None)
    assert None not in ids
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == 1
    assert inserts[0].count("(source, event_id)") == 1  # the conflict target, once
    assert not [s for s in statements if s.startswith(("BEGIN", "COMMIT"))]


async def test_sqlite_stores_deliveries_as_one_statement_beside_the_dispatchers_writes(
    tmp_path: Path,
) -> None:
    """Deliveries queued with a completion still go in as one INSERT, committed before it."""
    statements: list[str] = []
    async with stores.SQLiteInboxStore(tmp_path / "mixed.db") as store:
        await store.add(new_event("evt_first"))
        (lease,) = await store.claim(now=T0 + 1, limit=1, lease=LEASE)
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        *ids, completed = await asyncio.gather(
            *(store.add(new_event(f"evt_{i}")) for i in range(20)),
            store.complete(lease, status=EventStatus.DELIVERED, handled=(), now=T0 + 2),
        )
        store._conn.set_trace_callback(None)
        assert completed is True
        assert None not in ids
        await _assert_ids_name_their_events(store, [f"evt_{i}" for i in range(20)], ids)
        counts = await store.counts()
        assert (counts[EventStatus.PENDING], counts[EventStatus.DELIVERED]) == (20, 1)
    writes = [s.split()[0] for s in statements if s.split()[0] in ("INSERT", "UPDATE", "BEGIN")]
    assert writes == ["INSERT", "BEGIN", "UPDATE"]


async def test_a_delivery_sqlite_rejects_fails_alone(tmp_path: Path) -> None:
    """A row SQLite refuses fails only its own delivery, not the ones that shared its commit."""
    async with stores.SQLiteInboxStore(tmp_path / "refuse.db") as store:
        bad = new_event("evt_bad")
        object.__setattr__(bad, "body", None)  # violates NOT NULL, as a broken caller would
        await _assert_the_refused_delivery_fails_alone(store, bad)


async def test_postgres_keeps_pending_deliveries_out_of_the_finished_index(tmp_path: Path) -> None:
    """Storing a delivery touches no index for finished events; purge and counts still work."""
    import asyncpg

    async with _postgres_store(tmp_path, "idx") as store:
        await store.add(new_event("evt_a"))
        await store.add(new_event("evt_b"))
        (lease,) = await store.claim(now=T0 + 1, limit=1, lease=LEASE)
        await store.complete(lease, status=EventStatus.DELIVERED, handled=(), now=T0 + 2)
        counts = await store.counts()
        assert (counts[EventStatus.PENDING], counts[EventStatus.DELIVERED]) == (1, 1)
        assert await store.purge(before=T0 + 10, statuses=[EventStatus.DELIVERED]) == 1
        conn = await asyncpg.connect(store._dsn)
        try:
            definition = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
                store.schema,
                "tether_inbox_received",
            )
        finally:
            await conn.close()
        assert "WHERE (status <> 'pending'" in definition
