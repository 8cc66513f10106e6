"""Outbox store conformance: SQLite and PostgreSQL behave the same under the same tests."""

from __future__ import annotations

import asyncio

import pytest

from tether import FakeClock, webhooks
from tether._errors import ConfigError
from tether.webhooks import DeliveryStatus
from tether.webhooks._outbox_model import AttemptResult, DeliveryFilter

from .conftest import T0, StoreFactory

LEASE = 60.0


def delivered(now: float = T0) -> AttemptResult:
    return AttemptResult(
        status=DeliveryStatus.DELIVERED,
        retry_at=None,
        started_at=now,
        latency=0.01,
        status_code=200,
        outcome="delivered",
        error=None,
        response="ok",
        endpoint_ok=True,
    )


def failed(retry_at: float | None, **extra: object) -> AttemptResult:
    return AttemptResult(
        status=DeliveryStatus.PENDING if retry_at is not None else DeliveryStatus.DEAD,
        retry_at=retry_at,
        started_at=T0,
        latency=0.02,
        status_code=500,
        outcome="failed",
        error="500 Internal Server Error",
        response="boom",
        endpoint_ok=False,
        **extra,  # type: ignore[arg-type]
    )


async def test_enqueue_fans_out_to_subscribed_endpoints_only(outbox: webhooks.Outbox) -> None:
    """A message gets one delivery per endpoint whose filter matches its type, prefixes too."""
    everything = await outbox.add_endpoint("http://127.0.0.1:1/all")
    invoices = await outbox.add_endpoint("http://127.0.0.1:1/inv", event_types=["invoice.*"])
    exact = await outbox.add_endpoint("http://127.0.0.1:1/exact", event_types=["user.created"])
    msg_id = await outbox.enqueue("invoice.paid", {"id": "in_1"})
    rows = await outbox.deliveries(msg_id=msg_id)
    assert {d.endpoint_id for d in rows} == {everything.id, invoices.id}
    assert exact.id not in {d.endpoint_id for d in rows}
    assert all(d.status is DeliveryStatus.PENDING and d.attempts == 0 for d in rows)
    other = await outbox.enqueue("user.created", {"id": "u_1"})
    assert {d.endpoint_id for d in await outbox.deliveries(msg_id=other)} == {
        everything.id,
        exact.id,
    }


async def test_an_idempotency_key_stores_a_message_once(outbox: webhooks.Outbox) -> None:
    """Enqueueing twice with one key returns the first message's id and stores nothing new."""
    await outbox.add_endpoint("http://127.0.0.1:1/a")
    first = await outbox.enqueue("a", {"n": 1}, idempotency_key="order-7")
    again = await outbox.enqueue("a", {"n": 2}, idempotency_key="order-7")
    other = await outbox.enqueue("a", {"n": 3}, idempotency_key="order-8")
    assert first == again != other
    assert len(await outbox.deliveries()) == 2
    assert outbox.store.stats.duplicates == 1


async def test_concurrent_enqueues_are_all_stored(outbox: webhooks.Outbox) -> None:
    """Two hundred enqueues at once each return an id that has its delivery stored."""
    await outbox.add_endpoint("http://127.0.0.1:1/a")
    ids = await asyncio.gather(*(outbox.enqueue("a", {"n": n}) for n in range(200)))
    assert len(set(ids)) == 200
    stored = await outbox.deliveries(limit=500)
    assert {d.msg_id for d in stored} == set(ids)


async def test_a_claimed_delivery_is_invisible_until_its_lease_runs_out(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    """A second claimer sees nothing while the lease holds and gets the delivery after it."""
    box = webhooks.Outbox(store_factory(), clock=clock)
    await box.open()
    await box.add_endpoint("https://example.com/a")
    await box.enqueue("a", {"n": 1})
    other = store_factory()
    await other.open()
    leases = await box.store.claim(now=T0, limit=10, lease=LEASE)
    assert len(leases) == 1
    assert leases[0].delivery.attempts == 1
    assert leases[0].delivery.json() == {"n": 1}
    assert await other.claim(now=T0 + LEASE - 1, limit=10, lease=LEASE) == []
    again = await other.claim(now=T0 + LEASE, limit=10, lease=LEASE)
    assert [lease.delivery.id for lease in again] == [leases[0].delivery.id]
    assert again[0].delivery.attempts == 2
    # The first claimer's lease is gone: its late report does not move the delivery.
    outcome = await box.store.record(leases[0], delivered(), now=T0 + LEASE + 1)
    assert not outcome.held
    assert (await box.deliveries())[0].status is DeliveryStatus.PENDING
    await box.close()


async def test_two_stores_claiming_at_once_never_share_a_delivery(
    store_factory: StoreFactory, clock: FakeClock
) -> None:
    """Concurrent claims from two connections split the due deliveries without overlap."""
    box = webhooks.Outbox(store_factory(), clock=clock)
    await box.open()
    await box.add_endpoint("https://example.com/a")
    for n in range(60):
        await box.enqueue("a", {"n": n})
    other = store_factory()
    await other.open()
    batches = await asyncio.gather(
        *(s.claim(now=T0, limit=7, lease=LEASE) for s in [box.store, other] * 6)
    )
    ids = [lease.delivery.id for batch in batches for lease in batch]
    assert len(ids) == len(set(ids))
    assert len(ids) == 60
    await box.close()


async def test_recording_moves_the_delivery_and_logs_the_attempt(
    outbox: webhooks.Outbox,
) -> None:
    """A failure reschedules and logs; a success finishes, logs and ends the failure run."""
    endpoint = await outbox.add_endpoint("http://127.0.0.1:1/a")
    await outbox.enqueue("a", {"n": 1})
    store = outbox.store
    (lease,) = await store.claim(now=T0, limit=5, lease=LEASE)
    outcome = await store.record(lease, failed(T0 + 60), now=T0)
    assert outcome.held
    assert outcome.disabled is None
    row = (await outbox.deliveries())[0]
    assert (row.status, row.next_attempt_at, row.last_status) == (
        DeliveryStatus.PENDING,
        T0 + 60,
        500,
    )
    assert (await outbox.endpoint(endpoint.id)).failing_since == T0
    assert await store.claim(now=T0 + 59, limit=5, lease=LEASE) == []
    (lease,) = await store.claim(now=T0 + 60, limit=5, lease=LEASE)
    assert (await store.record(lease, delivered(T0 + 60), now=T0 + 60)).held
    row = (await outbox.deliveries())[0]
    assert (row.status, row.completed_at, row.attempts) == (DeliveryStatus.DELIVERED, T0 + 60, 2)
    assert (await outbox.endpoint(endpoint.id)).failing_since is None
    log = await outbox.attempts(delivery_id=row.id)
    assert [(a.attempt, a.status_code, a.outcome) for a in log] == [
        (2, 200, "delivered"),
        (1, 500, "failed"),
    ]


async def test_release_gives_a_delivery_back_without_counting_an_attempt(
    outbox: webhooks.Outbox,
) -> None:
    """A released delivery keeps its attempt count and comes due at the time given."""
    await outbox.add_endpoint("http://127.0.0.1:1/a")
    await outbox.enqueue("a", {"n": 1})
    (lease,) = await outbox.store.claim(now=T0, limit=5, lease=LEASE)
    assert await outbox.store.release(lease, retry_at=T0 + 5)
    row = (await outbox.deliveries())[0]
    assert (row.attempts, row.next_attempt_at) == (0, T0 + 5)
    assert await outbox.store.next_due() == T0 + 5


async def test_ordered_endpoints_deliver_one_message_per_key_at_a_time(
    outbox: webhooks.Outbox,
) -> None:
    """Only the head of an ordering lane is claimable; other keys and endpoints are not held."""
    ordered = await outbox.add_endpoint("http://127.0.0.1:1/o", ordered=True)
    unordered = await outbox.add_endpoint("http://127.0.0.1:1/u")
    first = await outbox.enqueue("a", {"n": 1}, ordering_key="cust_1")
    second = await outbox.enqueue("a", {"n": 2}, ordering_key="cust_1")
    other_key = await outbox.enqueue("a", {"n": 3}, ordering_key="cust_2")
    leases = await outbox.store.claim(now=T0, limit=10, lease=LEASE)
    claimed = {(lease.delivery.endpoint_id, lease.delivery.msg_id) for lease in leases}
    assert claimed == {
        (ordered.id, first),
        (ordered.id, other_key),
        (unordered.id, first),
        (unordered.id, second),
        (unordered.id, other_key),
    }
    head = next(
        x for x in leases if x.delivery.endpoint_id == ordered.id and x.delivery.msg_id == first
    )
    # The head failing keeps the lane blocked: order holds across retries.
    await outbox.store.record(head, failed(T0 + 10), now=T0)
    assert await outbox.store.claim(now=T0 + 5, limit=10, lease=LEASE) == []
    (retry,) = await outbox.store.claim(now=T0 + 10, limit=10, lease=LEASE)
    assert retry.delivery.msg_id == first
    # Dead-lettering the head lets the lane go on.
    await outbox.store.record(retry, failed(None), now=T0 + 10)
    (nxt,) = await outbox.store.claim(now=T0 + 10, limit=10, lease=LEASE)
    assert (nxt.delivery.endpoint_id, nxt.delivery.msg_id) == (ordered.id, second)


async def test_disabling_skips_pending_deliveries_and_new_messages(
    outbox: webhooks.Outbox,
) -> None:
    """A disabled endpoint's deliveries are SKIPPED, claim nothing, and can be replayed later."""
    endpoint = await outbox.add_endpoint("http://127.0.0.1:1/a")
    await outbox.enqueue("a", {"n": 1})
    await outbox.disable_endpoint(endpoint.id, reason="maintenance")
    await outbox.enqueue("a", {"n": 2})
    rows = await outbox.deliveries()
    assert [d.status for d in rows] == [DeliveryStatus.SKIPPED, DeliveryStatus.SKIPPED]
    assert await outbox.store.claim(now=T0, limit=10, lease=LEASE) == []
    assert (await outbox.endpoint(endpoint.id)).disabled_reason == "maintenance"
    assert await outbox.replay(status="skipped", dry_run=True) == 0
    await outbox.enable_endpoint(endpoint.id)
    assert await outbox.replay(status="skipped", dry_run=True) == 2
    assert await outbox.replay(status="skipped") == 2
    assert len(await outbox.store.claim(now=T0, limit=10, lease=LEASE)) == 2


async def test_replay_selects_by_status_time_endpoint_and_type(
    outbox: webhooks.Outbox, clock: FakeClock
) -> None:
    """Replay moves exactly the matching finished deliveries; a dry run moves none."""
    one = await outbox.add_endpoint("http://127.0.0.1:1/1")
    two = await outbox.add_endpoint("http://127.0.0.1:1/2")
    await outbox.enqueue("a", {"n": 1})
    clock.advance(100)
    await outbox.enqueue("b", {"n": 2})
    store = outbox.store
    for lease in await store.claim(now=T0 + 100, limit=10, lease=LEASE):
        await store.record(lease, failed(None), now=T0 + 100)
    assert (await store.counts())[DeliveryStatus.DEAD] == 4
    assert await outbox.replay(endpoint_id=one.id, dry_run=True) == 2
    assert await outbox.replay(event_type="b", dry_run=True) == 2
    assert await outbox.replay(since=T0 + 50, dry_run=True) == 2
    assert await outbox.replay(until=T0 + 50, endpoint_id=two.id, dry_run=True) == 1
    assert (await store.counts())[DeliveryStatus.DEAD] == 4
    assert await outbox.replay(until=T0 + 50, endpoint_id=two.id) == 1
    (again,) = await store.claim(now=T0 + 100, limit=10, lease=LEASE)
    assert (again.delivery.endpoint_id, again.delivery.event_type) == (two.id, "a")
    assert again.delivery.attempts == 1  # a fresh schedule
    with pytest.raises(ConfigError):
        await outbox.replay(status="pending")


async def test_manual_retry_of_one_dead_delivery(outbox: webhooks.Outbox) -> None:
    """retry() makes one dead delivery pending now; a pending one is left alone."""
    await outbox.add_endpoint("http://127.0.0.1:1/a")
    await outbox.enqueue("a", {"n": 1})
    (lease,) = await outbox.store.claim(now=T0, limit=5, lease=LEASE)
    assert not await outbox.retry(lease.delivery.id)
    await outbox.store.record(lease, failed(None), now=T0)
    (dead,) = await outbox.dead()
    assert dead.id == lease.delivery.id
    assert await outbox.retry(dead.id)
    assert (await outbox.deliveries())[0].status is DeliveryStatus.PENDING
    assert await outbox.dead() == []


async def test_a_410_style_disable_and_the_continuous_failure_limit(
    outbox: webhooks.Outbox,
) -> None:
    """An attempt can disable its endpoint at once, or after failing continuously long enough."""
    gone = await outbox.add_endpoint("http://127.0.0.1:1/gone")
    flaky = await outbox.add_endpoint("http://127.0.0.1:1/flaky", event_types=["f"])
    await outbox.enqueue("g", {"n": 1})
    await outbox.enqueue("g", {"n": 2})
    first, _second = await outbox.store.claim(now=T0, limit=1, lease=LEASE), None
    outcome = await outbox.store.record(first[0], failed(T0 + 60, disable="410 Gone"), now=T0)
    assert outcome.disabled == "410 Gone"
    assert not (await outbox.endpoint(gone.id)).enabled
    assert {d.status for d in await outbox.deliveries(endpoint_id=gone.id)} == {
        DeliveryStatus.SKIPPED
    }
    await outbox.enqueue("f", {"n": 3})
    day = 86_400.0
    (lease,) = await outbox.store.claim(now=T0, limit=5, lease=LEASE)
    assert lease.delivery.endpoint_id == flaky.id
    outcome = await outbox.store.record(lease, failed(T0 + day, disable_after=2 * day), now=T0)
    assert outcome.disabled is None
    (lease,) = await outbox.store.claim(now=T0 + day, limit=5, lease=LEASE)
    outcome = await outbox.store.record(
        lease, failed(T0 + 3 * day, disable_after=2 * day), now=T0 + 2 * day
    )
    assert outcome.disabled is not None
    assert "failing continuously" in outcome.disabled
    assert not (await outbox.endpoint(flaky.id)).enabled


async def test_retry_after_pauses_every_pending_delivery_of_the_endpoint(
    outbox: webhooks.Outbox,
) -> None:
    """A pause pushes the endpoint's other pending deliveries and new messages past it."""
    paused = await outbox.add_endpoint("http://127.0.0.1:1/p")
    other = await outbox.add_endpoint("http://127.0.0.1:1/o")
    await outbox.enqueue("a", {"n": 1})
    await outbox.enqueue("a", {"n": 2})
    leases = await outbox.store.claim(now=T0, limit=1, lease=LEASE)
    (lease,) = leases
    assert lease.delivery.endpoint_id == paused.id
    await outbox.store.record(lease, failed(T0 + 60, pause_until=T0 + 120), now=T0)
    await outbox.enqueue("a", {"n": 3})
    due = await outbox.store.claim(now=T0 + 1, limit=10, lease=LEASE)
    assert {x.delivery.endpoint_id for x in due} == {other.id}
    for x in due:
        await outbox.store.record(x, delivered(), now=T0 + 1)
    later = await outbox.store.claim(now=T0 + 120, limit=10, lease=LEASE)
    assert len(later) == 3
    assert {x.delivery.endpoint_id for x in later} == {paused.id}


async def test_purge_drops_old_attempts_and_finished_deliveries_only(
    outbox: webhooks.Outbox, clock: FakeClock
) -> None:
    """Retention deletes old attempts and finished rows; pending deliveries stay."""
    await outbox.add_endpoint("http://127.0.0.1:1/a")
    await outbox.enqueue("a", {"n": 1})
    await outbox.enqueue("a", {"n": 2})
    (lease,) = await outbox.store.claim(now=T0, limit=1, lease=LEASE)
    await outbox.store.record(lease, delivered(), now=T0)
    gone = await outbox.store.purge(attempts_before=T0 + 1, finished_before=T0 + 1)
    assert gone == 3  # one attempt, one delivery, its message
    (left,) = await outbox.deliveries()
    assert left.status is DeliveryStatus.PENDING
    assert await outbox.attempts() == []


async def test_endpoint_settings_round_trip_and_secrets_stay_out_of_reprs(
    outbox: webhooks.Outbox,
) -> None:
    """Every endpoint setting is stored; repr shows none of its secrets."""
    endpoint = await outbox.add_endpoint(
        "http://127.0.0.1:1/a",
        endpoint_id="billing",
        description="Billing",
        event_types=["invoice.*"],
        headers={"X-Tenant": "t1"},
        rate_limit="5/s",
        timeout=3.5,
        schedule=[1, 2, 3],
        ordered=True,
    )
    stored = await outbox.endpoint("billing")
    assert stored == endpoint
    assert stored.schedule == (1.0, 2.0, 3.0)
    secret = await outbox.secret("billing")
    assert secret.startswith("whsec_")
    assert secret not in repr(stored)
    assert secret not in repr(await outbox.endpoints())
    assert "t1" not in repr(stored)  # custom headers often carry the receiver's credentials
    with pytest.raises(ConfigError):
        await outbox.add_endpoint("http://127.0.0.1:1/b", endpoint_id="billing")
    updated = await outbox.update_endpoint(
        "billing", rate_limit=None, schedule=None, url="http://127.0.0.1:2/x"
    )
    assert (updated.rate_limit, updated.schedule, updated.url) == (
        None,
        None,
        "http://127.0.0.1:2/x",
    )
    assert await outbox.endpoint("billing") == updated
    await outbox.delete_endpoint("billing")
    with pytest.raises(ConfigError):
        await outbox.endpoint("billing")


async def test_rotation_keeps_the_old_secret_signing_for_the_overlap(
    outbox: webhooks.Outbox, clock: FakeClock
) -> None:
    """After a rotation both secrets sign until the overlap ends, then only the new one."""
    await outbox.add_endpoint("http://127.0.0.1:1/a", endpoint_id="ep")
    old = await outbox.secret("ep")
    new = await outbox.rotate_secret("ep", overlap=3600)
    assert new != old
    assert await outbox.secret("ep") == new
    endpoint = await outbox.endpoint("ep")
    assert endpoint.signing_secrets(clock.time()) == (new, old)
    assert endpoint.signing_secrets(clock.time() + 3600) == (new,)


async def test_deliveries_page_backwards_and_filter(outbox: webhooks.Outbox) -> None:
    """Listings are newest first and `before_id` continues where a page ended."""
    await outbox.add_endpoint("http://127.0.0.1:1/a")
    for n in range(5):
        await outbox.enqueue("a", {"n": n})
    page = await outbox.deliveries(limit=2)
    rest = await outbox.deliveries(limit=10, before_id=page[-1].id)
    ids = [d.id for d in page + rest]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 5
    assert await outbox.store.deliveries(DeliveryFilter(ids=(ids[0],))) == [page[0]]
