"""The worker against a real loopback receiver: signing, schedule, Retry-After, 410, redirects,
rotation, rate limits, breakers, leases and the attempt log, on both stores."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from tether import Breaker, FakeClock, webhooks
from tether.webhooks import DeliveryStatus

from ..conftest import LoopbackServer
from .conftest import LOOPBACK, T0, StoreFactory, worker


def status(code: int, headers: dict[str, str] | None = None, body: str = "") -> web.Response:
    return web.Response(status=code, headers=headers, text=body)


async def test_every_attempt_is_signed_with_the_same_id_and_a_fresh_timestamp(
    outbox: webhooks.Outbox, server: LoopbackServer, clock: FakeClock
) -> None:
    """Standard Webhooks headers verify on each attempt; webhook-id stays, the time moves."""
    endpoint = await outbox.add_endpoint(f"{server.url}/hook", headers={"X-Tenant": "t1"})
    secret = await outbox.secret(endpoint.id)
    server.script("POST", "/hook", lambda: status(500), lambda: status(204))
    msg_id = await outbox.enqueue("invoice.paid", {"id": "in_1", "amount": 5})
    w = worker(outbox)
    assert await w.run_once() == 1
    clock.advance(60)
    assert await w.run_once() == 1
    await w.aclose()
    first, second = server.seen
    for seen, sent_at in ((first, T0), (second, T0 + 60)):
        verified = webhooks.verify(
            "standard", secret=secret, headers=seen.headers, body=seen.body, now=sent_at
        )
        assert verified.msg_id == msg_id
        assert seen.headers["webhook-timestamp"] == str(int(sent_at))
        assert seen.headers["X-Tenant"] == "t1"
        assert seen.headers["Content-Type"] == "application/json"
        assert json.loads(seen.body) == {"id": "in_1", "amount": 5}
    (delivery,) = await outbox.deliveries()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)


async def test_the_default_schedule_then_the_dead_letter(
    outbox: webhooks.Outbox, server: LoopbackServer, clock: FakeClock
) -> None:
    """Failures retry after 1 min, 5 min, 25 min, 2 h and 10 h; the sixth failure is dead."""
    endpoint = await outbox.add_endpoint(f"{server.url}/hook")
    server.script("POST", "/hook", lambda: status(500, body="nope"))
    await outbox.enqueue("a", {"n": 1})
    w = worker(outbox)
    gaps = []
    for _ in range(6):
        assert await w.run_once() == 1
        (delivery,) = await outbox.deliveries()
        if delivery.status is DeliveryStatus.PENDING:
            gaps.append(delivery.next_attempt_at - clock.time())
            assert await w.run_once() == 0  # nothing is due before its time
            clock.advance(delivery.next_attempt_at - clock.time())
    await w.aclose()
    assert gaps == [60, 300, 1500, 7200, 36000]
    (dead,) = await outbox.dead()
    assert (dead.attempts, dead.last_status, dead.endpoint_id) == (6, 500, endpoint.id)
    log = await outbox.attempts(delivery_id=dead.id)
    assert [a.attempt for a in log] == [6, 5, 4, 3, 2, 1]
    assert {a.response for a in log} == {"nope"}


async def test_an_endpoint_schedule_and_jitter(
    outbox: webhooks.Outbox, server: LoopbackServer, clock: FakeClock
) -> None:
    """An endpoint's own schedule wins; jitter spreads a delay by at most 20 % either way."""
    await outbox.add_endpoint(f"{server.url}/hook", schedule=[10])
    server.script("POST", "/hook", lambda: status(500))
    await outbox.enqueue("a", {"n": 1})
    w = outbox.worker(rand=lambda: 1.0)
    await w.run_once()
    (delivery,) = await outbox.deliveries()
    assert delivery.next_attempt_at == pytest.approx(T0 + 12)
    clock.advance(12)
    await w.run_once()
    await w.aclose()
    assert (await outbox.deliveries())[0].status is DeliveryStatus.DEAD


async def test_retry_after_is_honoured_and_clamped(
    outbox: webhooks.Outbox, server: LoopbackServer
) -> None:
    """A longer Retry-After delays the retry (up to max_retry_after) and pauses the endpoint."""
    await outbox.add_endpoint(f"{server.url}/slow", event_types=["slow"])
    await outbox.add_endpoint(f"{server.url}/greedy", event_types=["greedy"])
    server.script("POST", "/slow", lambda: status(429, {"Retry-After": "600"}))
    server.script("POST", "/greedy", lambda: status(503, {"Retry-After": "999999"}))
    await outbox.enqueue("slow", {"n": 1})
    await outbox.enqueue("greedy", {"n": 2})
    w = worker(outbox, max_retry_after=7200.0)
    assert await w.run_once() == 2
    await w.aclose()
    by_type = {d.event_type: d for d in await outbox.deliveries()}
    assert by_type["slow"].next_attempt_at == T0 + 600
    assert by_type["greedy"].next_attempt_at == T0 + 7200
    paused = {e.url.rsplit("/", 1)[1]: e.paused_until for e in await outbox.endpoints()}
    assert paused == {"slow": T0 + 600, "greedy": T0 + 7200}


async def test_410_gone_disables_the_endpoint(
    outbox: webhooks.Outbox, server: LoopbackServer
) -> None:
    """A 410 disables its endpoint at once and skips everything still pending for it."""
    endpoint = await outbox.add_endpoint(f"{server.url}/hook")
    server.script("POST", "/hook", lambda: status(410))
    for n in range(3):
        await outbox.enqueue("a", {"n": n})
    w = worker(outbox, concurrency=1)
    assert await w.run_once() == 1
    assert await w.run_once() == 0
    await w.aclose()
    current = await outbox.endpoint(endpoint.id)
    assert not current.enabled
    assert current.disabled_reason is not None
    assert "410" in current.disabled_reason
    assert {d.status for d in await outbox.deliveries()} == {DeliveryStatus.SKIPPED}
    assert [a.outcome for a in await outbox.attempts()] == ["gone"]
    assert server.count("/hook") == 1


async def test_redirects_are_not_followed(outbox: webhooks.Outbox, server: LoopbackServer) -> None:
    """A 3xx is a failed attempt; the Location is never requested."""
    await outbox.add_endpoint(f"{server.url}/hook")
    server.script("POST", "/hook", lambda: status(307, {"Location": f"{server.url}/elsewhere"}))
    await outbox.enqueue("a", {"n": 1})
    w = worker(outbox)
    await w.run_once()
    await w.aclose()
    assert server.count("/elsewhere") == 0
    (attempt,) = await outbox.attempts()
    assert attempt.status_code == 307
    assert attempt.error is not None
    assert "redirects are not followed" in attempt.error


async def test_rotation_sends_both_signatures_during_the_overlap(
    outbox: webhooks.Outbox, server: LoopbackServer, clock: FakeClock
) -> None:
    """While old and new secrets overlap each verifies; afterwards only the new one does."""
    endpoint = await outbox.add_endpoint(f"{server.url}/hook")
    old = await outbox.secret(endpoint.id)
    new = await outbox.rotate_secret(endpoint.id, overlap=600)
    server.script("POST", "/hook", lambda: status(200))
    await outbox.enqueue("a", {"n": 1})
    w = worker(outbox)
    await w.run_once()
    clock.advance(601)
    await outbox.enqueue("a", {"n": 2})
    await asyncio.sleep(0)
    w2 = worker(outbox)  # a fresh worker reads the endpoint again
    await w2.run_once()
    await w.aclose()
    await w2.aclose()
    during, after = server.seen
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        webhooks.verify("standard", secret=secret, headers=during.headers, body=during.body, now=T0)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    webhooks.verify("standard", secret=new, headers=after.headers, body=after.body, now=T0 + 601)
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(
            "standard", secret=old, headers=after.headers, body=after.body, now=T0 + 601
        )


async def test_response_excerpts_are_truncated_and_never_hold_the_secret(
    outbox: webhooks.Outbox, server: LoopbackServer
) -> None:
    """A receiver echoing the signing secret finds it redacted in the attempt log."""
    endpoint = await outbox.add_endpoint(f"{server.url}/hook")
    secret = await outbox.secret(endpoint.id)
    server.script("POST", "/hook", lambda: status(400, body=f"bad key {secret} " + "x" * 5000))
    await outbox.enqueue("a", {"n": 1})
    w = worker(outbox, response_excerpt=200)
    await w.run_once()
    await w.aclose()
    (attempt,) = await outbox.attempts()
    assert attempt.response is not None
    assert secret not in attempt.response
    assert "[REDACTED]" in attempt.response
    assert len(attempt.response) <= 200


async def test_a_rate_limited_endpoint_releases_what_it_cannot_send(
    outbox: webhooks.Outbox, server: LoopbackServer
) -> None:
    """Deliveries beyond the endpoint's rate go back unattempted, due when a slot frees."""
    await outbox.add_endpoint(f"{server.url}/hook", rate_limit="1/min")
    server.script("POST", "/hook", lambda: status(200))
    for n in range(3):
        await outbox.enqueue("a", {"n": n})
    w = worker(outbox, rate_limit_wait=5.0)
    assert await w.run_once() == 3
    await w.aclose()
    assert server.count("/hook") == 1
    rows = await outbox.deliveries()
    pending = [d for d in rows if d.status is DeliveryStatus.PENDING]
    assert len(pending) == 2
    assert all(d.attempts == 0 and d.next_attempt_at > T0 for d in pending)
    assert w.attempted["released"] == 2


async def test_an_open_circuit_holds_deliveries_without_attempting_them(
    outbox: webhooks.Outbox, server: LoopbackServer
) -> None:
    """Once the endpoint's breaker opens, its deliveries are put back, not sent."""
    await outbox.add_endpoint(f"{server.url}/hook", schedule=[0] * 10)
    server.script("POST", "/hook", lambda: status(500))
    for n in range(6):
        await outbox.enqueue("a", {"n": n})
    breaker = Breaker(minimum_calls=2, failure_rate=0.5, open_for=30.0)
    w = worker(outbox, breaker=breaker, concurrency=2)
    await w.run_once()
    await w.run_once()
    await w.aclose()
    assert server.count("/hook") == 2
    assert w.attempted["released"] == 2
    assert sum(d.attempts for d in await outbox.deliveries()) == 2


async def test_continuous_failure_disables_the_endpoint(
    outbox: webhooks.Outbox, server: LoopbackServer, clock: FakeClock
) -> None:
    """An endpoint failing for longer than disable_after is disabled by the worker."""
    endpoint = await outbox.add_endpoint(f"{server.url}/hook", schedule=[3600] * 5)
    server.script("POST", "/hook", lambda: status(502))
    await outbox.enqueue("a", {"n": 1})
    w = worker(outbox, disable_after=7200.0)
    for _ in range(3):
        await w.run_once()
        clock.advance(3600)
    await w.aclose()
    current = await outbox.endpoint(endpoint.id)
    assert not current.enabled
    assert current.disabled_reason == "failing continuously for 2.0 h"
    assert (await outbox.deliveries())[0].status is DeliveryStatus.SKIPPED


async def test_a_lost_worker_lease_is_taken_over_and_resent_with_the_same_id(
    outbox: webhooks.Outbox, server: LoopbackServer, clock: FakeClock
) -> None:
    """A delivery claimed by a worker that vanished is sent once its lease runs out."""
    await outbox.add_endpoint(f"{server.url}/hook")
    server.script("POST", "/hook", lambda: status(200))
    msg_id = await outbox.enqueue("a", {"n": 1})
    w = worker(outbox)
    # A worker that claimed and died: its lease is all that remains.
    await outbox.store.claim(now=clock.time(), limit=10, lease=w.policy.lease_seconds)
    assert await w.run_once() == 0
    clock.advance(w.policy.lease_seconds)
    assert await w.run_once() == 1
    await w.aclose()
    (seen,) = server.seen
    assert seen.headers["webhook-id"] == msg_id
    (delivery,) = await outbox.deliveries()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)


async def test_the_heartbeat_extends_leases_in_flight(
    outbox: webhooks.Outbox, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a claim is held, the heartbeat pushes its lease forward from the current time."""
    await outbox.add_endpoint("https://example.com/hook")
    await outbox.enqueue("a", {"n": 1})
    w = worker(outbox, max_timeout=0.06, timeout=0.05, lease_grace=0.03)
    (lease,) = await w._claim(10)
    renewed = asyncio.Event()
    renew = outbox.store.renew

    async def spy(token: str, *, until: float) -> int:
        count = await renew(token, until=until)
        if count:
            renewed.set()
        return count

    monkeypatch.setattr(outbox.store, "renew", spy)
    clock.advance(10)
    beat = asyncio.create_task(w._heartbeat())
    try:
        async with asyncio.timeout(5):
            await renewed.wait()
    finally:
        beat.cancel()
    # Long past the original lease, the delivery is still held: the renewal took.
    assert await outbox.store.claim(now=lease.expires_at + 5, limit=1, lease=1) == []
    await w.aclose()


async def test_a_running_worker_delivers_what_is_enqueued_at_once(
    store_factory: StoreFactory, server: LoopbackServer
) -> None:
    """In the background with the real clock, an enqueue wakes the worker; stop() is clean."""
    box = webhooks.Outbox(store_factory(), egress=LOOPBACK)
    await box.open()
    await box.add_endpoint(f"{server.url}/hook")
    server.script("POST", "/hook", lambda: status(200))
    async with box.worker(policy=webhooks.OutboxPolicy(poll_interval=30.0)) as w:
        ids = [await box.enqueue("a", {"n": n}) for n in range(20)]
        async with asyncio.timeout(10):
            while (await box.counts())[DeliveryStatus.DELIVERED] < 20:
                await asyncio.sleep(0.01)
    assert {s.headers["webhook-id"] for s in server.seen} == set(ids)
    assert w.attempted["delivered"] == 20
    await box.close()


async def test_a_changed_url_takes_effect_for_queued_deliveries(
    outbox: webhooks.Outbox, server: LoopbackServer, clock: FakeClock
) -> None:
    """Deliveries still queued go to the endpoint's new URL once a worker rereads it."""
    endpoint = await outbox.add_endpoint(f"{server.url}/old")
    server.script("POST", "/old", lambda: status(200))
    server.script("POST", "/new", lambda: status(200))
    await outbox.enqueue("a", {"n": 1})
    w = worker(outbox)
    await w.run_once()
    await outbox.update_endpoint(endpoint.id, url=f"{server.url}/new")
    await outbox.enqueue("a", {"n": 2})
    clock.advance(w.policy.endpoint_ttl)
    await w.run_once()
    await w.aclose()
    assert (server.count("/old"), server.count("/new")) == (1, 1)


async def test_the_worker_purges_attempts_and_messages_past_retention(
    outbox: webhooks.Outbox, server: LoopbackServer, clock: FakeClock
) -> None:
    """After the retention periods, the attempt log and finished deliveries are gone."""
    await outbox.add_endpoint(f"{server.url}/hook")
    server.script("POST", "/hook", lambda: status(200))
    await outbox.enqueue("a", {"n": 1})
    w = worker(outbox, attempt_retention=3600.0, message_retention=7200.0)
    await w.run_once()
    assert await w.purge_expired() == 0
    clock.advance(3601)
    assert await w.purge_expired() == 1
    assert await outbox.attempts() == []
    assert len(await outbox.deliveries()) == 1
    clock.advance(3600)
    assert await w.purge_expired() == 2  # the delivery and its message
    assert await outbox.deliveries() == []
    await w.aclose()


async def test_a_rate_limiter_factory_holds_several_workers_to_one_quota(
    outbox: webhooks.Outbox, server: LoopbackServer
) -> None:
    """Workers given the same limiter per endpoint share its quota instead of each having one."""
    from tether import RateLimiter

    await outbox.add_endpoint(f"{server.url}/hook", rate_limit="2/min")
    server.script("POST", "/hook", lambda: status(200))
    for n in range(6):
        await outbox.enqueue("a", {"n": n})
    shared: dict[str, RateLimiter] = {}

    def limiter(endpoint: webhooks.Endpoint) -> RateLimiter | None:
        if endpoint.rate_limit is None:
            return None
        if endpoint.id not in shared:
            shared[endpoint.id] = RateLimiter(endpoint.rate_limit, max_wait=1.0)
        return shared[endpoint.id]

    # Three each, so both workers have deliveries to attempt at once.
    policy = webhooks.OutboxPolicy(concurrency=3)
    one, two = (
        outbox.worker(policy=policy, rand=lambda: 0.5, rate_limiter=limiter) for _ in range(2)
    )
    assert list(await asyncio.gather(one.run_once(), two.run_once())) == [3, 3]
    await one.aclose()
    await two.aclose()
    # "2/min" with burst 1: one request now, the next 30 s later, whichever worker asks.
    assert server.count("/hook") == 1
    assert one.attempted["released"] + two.attempted["released"] == 5


async def test_operators_hear_of_disabled_endpoints_and_dead_deliveries(
    outbox: webhooks.Outbox, server: LoopbackServer
) -> None:
    """on_event reports a dead delivery and a 410-disabled endpoint; a failing hook is logged."""
    await outbox.add_endpoint(f"{server.url}/dead", event_types=["d"], schedule=[])
    gone = await outbox.add_endpoint(f"{server.url}/gone", event_types=["g"])
    server.script("POST", "/dead", lambda: status(500))
    server.script("POST", "/gone", lambda: status(410))
    dead_msg = await outbox.enqueue("d", {"n": 1})
    await outbox.enqueue("g", {"n": 2})
    events: list[webhooks.OutboxEvent] = []

    async def hook(event: webhooks.OutboxEvent) -> None:
        events.append(event)
        raise RuntimeError("the pager is down")

    w = outbox.worker(rand=lambda: 0.5, on_event=hook)
    await w.run_once()
    await w.aclose()
    by_kind = {e.kind: e for e in events}
    assert set(by_kind) == {"delivery.dead", "endpoint.disabled"}
    assert by_kind["delivery.dead"].msg_id == dead_msg
    assert by_kind["endpoint.disabled"].endpoint_id == gone.id
    assert by_kind["endpoint.disabled"].reason == "the endpoint answered 410 Gone"


async def test_ed25519_endpoints_sign_v1a_and_receivers_need_only_the_public_key(
    outbox: webhooks.Outbox, server: LoopbackServer, clock: FakeClock
) -> None:
    """A whsk_ key signs v1a, verified with its whpk_ half; rotating an HMAC endpoint to
    Ed25519 sends both kinds during the overlap; Ed25519 rotations stay Ed25519."""
    pair = webhooks.generate_keypair()
    signed = await outbox.add_endpoint(f"{server.url}/ed", secret=pair.secret_key)
    assert await outbox.verification_key(signed.id) == pair.public_key
    moving = await outbox.add_endpoint(f"{server.url}/moving")
    hmac_secret = await outbox.secret(moving.id)
    assert await outbox.verification_key(moving.id) == hmac_secret
    new_pair = webhooks.generate_keypair()
    await outbox.rotate_secret(moving.id, secret=new_pair.secret_key, overlap=600)
    server.script("POST", "/ed", lambda: status(200))
    server.script("POST", "/moving", lambda: status(200))
    await outbox.enqueue("a", {"n": 1})
    w = worker(outbox)
    await w.run_once()
    await w.aclose()
    seen = {s.path: s for s in server.seen}
    ed = seen["/ed"]
    assert ed.headers["webhook-signature"].startswith("v1a,")
    webhooks.verify("standard", secret=pair.public_key, headers=ed.headers, body=ed.body, now=T0)
    both = seen["/moving"]
    assert sorted(e.split(",")[0] for e in both.headers["webhook-signature"].split()) == [
        "v1",
        "v1a",
    ]
    for key in (hmac_secret, new_pair.public_key):
        webhooks.verify("standard", secret=key, headers=both.headers, body=both.body, now=T0)
    rotated = await outbox.rotate_secret(signed.id)
    assert rotated.startswith("whsk_")
    assert (await outbox.verification_key(signed.id)).startswith("whpk_")
    assert pair.secret_key not in repr(await outbox.endpoint(signed.id))
