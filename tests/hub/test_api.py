"""The hub's HTTP API over a real loopback server: shapes, auth, SSE, inbox, outbox, metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tether import webhooks
from tether.hub import Hub
from tether.stores import EventStatus, NewEvent
from tether.testing import MockAPI, Reply

from .helpers import serve_api, until, weather_toml, write_spec

ALERTS_SECRET = webhooks.generate_secret()

INBOX_AND_OUTBOX = """
[integrations.weather.webhooks.alerts]
scheme = "standard"
secret = "{secret}"

[outbox]
allow_private = ["127.0.0.0/8"]
[outbox.endpoints.receiver]
url = "{receiver}"
event_types = ["webhook.*"]
"""


class Receiver:
    """A loopback webhook receiver that records what the outbox delivers."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        return web.Response(status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    target = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield target, f"http://127.0.0.1:{port}/hooks"
    await runner.cleanup()


@pytest.fixture
async def provider() -> AsyncIterator[tuple[MockAPI, str]]:
    api = MockAPI()
    api.stub("GET", "/current", Reply(json={"t": 1}))
    async with api.serve() as server:
        yield api, server.url


@pytest.fixture
async def hub(
    tmp_path: Path,
    provider: tuple[MockAPI, str],
    receiver: tuple[Receiver, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Hub]:
    monkeypatch.setenv("ALERTS", ALERTS_SECRET)
    extra = INBOX_AND_OUTBOX.format(secret="${ALERTS}", receiver=receiver[1])
    spec = write_spec(tmp_path, weather_toml(provider[1], extra=extra))
    async with Hub(spec, hub_id="hub-a") as running:

        async def polled() -> bool:
            return (await running.poller_rows())[0]["last_success"] is not None

        await until(polled)
        yield running


@pytest.fixture
async def base(hub: Hub) -> AsyncIterator[str]:
    async with serve_api(hub, heartbeat=0.2) as url:
        yield url


def _signed(event_id: str, kind: str = "alert.created") -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": kind, "data": {"id": event_id}}).encode()
    headers = webhooks.sign(
        "standard", secret=ALERTS_SECRET, body=body, msg_id=event_id, timestamp=int(time.time())
    )
    return body, {**headers, "content-type": "application/json"}


async def test_health_integrations_and_data_shapes(base: str) -> None:
    """/health, /integrations, /data and /data/{poller} answer the documented JSON shapes."""
    async with httpx.AsyncClient(base_url=base) as client:
        health = (await client.get("/health")).json()
        assert health["status"] == "ok"
        assert health["hub_id"] == "hub-a"
        assert health["store"] == "sqlite"
        assert health["redis"] is False
        assert set(health) == {"status", "hub_id", "version", "uptime", "store", "redis"}
        rows = (await client.get("/integrations")).json()["integrations"]
        assert set(rows[0]) == {
            "name", "status", "breaker", "rate_limit", "last_success", "staleness",
            "last_error", "requests", "failures", "pollers",
        }  # fmt: skip
        assert rows[0]["name"] == "weather"
        assert rows[0]["status"] == "ok"
        assert rows[0]["pollers"] == ["oslo"]
        pollers = (await client.get("/data")).json()["pollers"]
        assert set(pollers[0]) == {
            "name", "integration", "available", "last_success", "age",
            "consecutive_failures", "last_error", "interval",
        }  # fmt: skip
        one = (await client.get("/data/oslo")).json()
        assert one["data"] == {"t": 1}
        assert one["interval"] == 0.5
        missing = await client.get("/data/nope")
        assert missing.status_code == 404
        assert "unknown poller" in missing.json()["error"]


async def test_events_list_filters_and_rejects_bad_queries(hub: Hub, base: str) -> None:
    """/events lists oldest first after `since`, filtered by type prefix; bad numbers are 400."""
    first = await hub.publish("test.one", "t", {"n": 1})
    await hub.publish("other.two", "t", {"n": 2})
    assert first is not None
    async with httpx.AsyncClient(base_url=base) as client:
        listed = (await client.get("/events", params={"since": first.id - 1})).json()["events"]
        assert [e["type"] for e in listed][:2] == ["test.one", "other.two"]
        assert set(listed[0]) == {"id", "at", "type", "source", "data"}
        only = (await client.get("/events", params={"type": "test."})).json()["events"]
        assert [e["data"] for e in only] == [{"n": 1}]
        assert (await client.get("/events", params={"limit": 5000})).status_code == 400
        assert (await client.get("/events", params={"since": "x"})).status_code == 400


async def _read_sse(response: httpx.Response, count: int) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in current:
                events.append(current)
                if len(events) >= count:
                    return events
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = value
    return events


async def test_sse_delivers_new_events_and_resumes_after_last_event_id(hub: Hub, base: str) -> None:
    """An SSE client gets an event published after it connected, and a reconnect with
    Last-Event-ID gets exactly the events after that id."""
    headers = {"Accept": "text/event-stream"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        async with client.stream(
            "GET", "/events", headers=headers, params={"type": "sse."}
        ) as live:
            assert live.headers["content-type"].startswith("text/event-stream")
            await hub.publish("sse.first", "t", {"n": 1})
            (got,) = await asyncio.wait_for(_read_sse(live, 1), 10)
        assert got["event"] == "sse.first"
        assert json.loads(got["data"])["data"] == {"n": 1}
        await hub.publish("sse.second", "t", {"n": 2})
        await hub.publish("sse.third", "t", {"n": 3})
        resumed = {**headers, "Last-Event-ID": got["id"]}
        async with client.stream(
            "GET", "/events", headers=resumed, params={"type": "sse."}
        ) as again:
            events = await asyncio.wait_for(_read_sse(again, 2), 10)
        assert [e["event"] for e in events] == ["sse.second", "sse.third"]
        assert int(events[0]["id"]) > int(got["id"])


async def test_sse_sends_heartbeats(base: str) -> None:
    """An idle SSE stream carries comment heartbeats."""
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("GET", "/events", headers={"Accept": "text/event-stream"}) as live,
    ):
        seen: list[str] = []

        async def beat() -> None:
            async for line in live.aiter_lines():
                seen.append(line)
                if line == ": heartbeat":
                    return

        await asyncio.wait_for(beat(), 10)
        assert ": heartbeat" in seen


async def test_a_webhook_becomes_one_hub_event_and_reaches_the_outbox(
    hub: Hub, base: str, receiver: tuple[Receiver, str]
) -> None:
    """A signed delivery is acknowledged, dispatched into one webhook.* hub event, listed in
    /inbox, and delivered by the outbox to the endpoint subscribed to webhook.*."""
    body, headers = _signed("evt-1")
    async with httpx.AsyncClient(base_url=base) as client:
        answer = await client.post("/webhooks/weather/alerts", content=body, headers=headers)
        assert answer.status_code == 200
        again = await client.post("/webhooks/weather/alerts", content=body, headers=headers)
        assert again.json() == {"status": "duplicate"}

        async def dispatched() -> list[dict[str, Any]]:
            answer = await client.get("/events", params={"type": "webhook."})
            events: list[dict[str, Any]] = answer.json()["events"]
            return events

        (event,) = await until(dispatched)
        assert event["type"] == "webhook.weather.alerts.alert.created"
        assert event["data"]["payload"]["data"] == {"id": "evt-1"}

        async def recorded() -> list[dict[str, Any]] | None:
            events: list[dict[str, Any]] = (await client.get("/inbox")).json()["events"]
            return events if events[0]["status"] == "delivered" else None

        inbox = await until(recorded)
        assert inbox[0]["event_id"] == "evt-1"
        assert set(inbox[0]) == {
            "id", "source", "event_id", "event_type", "status", "received_at", "attempts",
            "last_error",
        }  # fmt: skip
        target, _ = receiver

        async def delivered() -> bool:
            return bool(target.bodies)

        await until(delivered)
        assert target.bodies[0]["type"] == "webhook.weather.alerts.alert.created"
        outbox = (await client.get("/outbox")).json()
        assert outbox["endpoints"][0]["id"] == "receiver"
        assert outbox["endpoints"][0]["event_types"] == ["webhook.*"]
        assert outbox["endpoints"][0]["disabled"] is False
        assert set(outbox["deliveries"][0]) == {
            "id", "msg_id", "endpoint_id", "event_type", "status", "attempts",
            "next_attempt_at", "last_status",
        }  # fmt: skip
        # Poller events match no endpoint: the outbox holds only the webhook's delivery.
        assert len(outbox["deliveries"]) == 1


async def _dead_inbox_event(hub: Hub) -> int:
    store = hub.inbox_store
    row_id = await store.add(
        NewEvent(
            source="weather.alerts",
            event_id="dead-1",
            event_type="alert.created",
            received_at=time.time() - 10,
            headers=(),
            body=b"{}",
            scheme="standard",
        )
    )
    assert row_id is not None
    # Claimed before the dispatcher sees it, then failed for good.
    for _ in range(50):
        leases = await store.claim(now=time.time() + 3600, limit=10, lease=60)
        mine = [lease for lease in leases if lease.event.id == row_id]
        if mine:
            await store.fail(mine[0], error="boom", handled=[], retry_at=None, now=time.time())
            return row_id
        await asyncio.sleep(0.05)
    raise AssertionError("could not claim the event")


async def test_dead_letters_are_listed_and_replayed(hub: Hub, base: str) -> None:
    """/dead lists a dead inbox event; replaying it answers 202, then 409 while it is no longer
    dead; an unknown id or kind is 404."""
    dead_id = await _dead_inbox_event(hub)
    async with httpx.AsyncClient(base_url=base) as client:
        rows = (await client.get("/dead")).json()["dead"]
        (row,) = [r for r in rows if r["kind"] == "inbox"]
        assert row["id"] == dead_id
        assert row["name"] == "weather.alerts"
        assert row["last_error"] == "boom"
        assert set(row) == {"kind", "id", "name", "event_type", "attempts", "last_error", "at"}
        replayed = await client.post(f"/dead/inbox/{dead_id}/replay")
        assert replayed.status_code == 202
        assert replayed.json() == {"replayed": True}
        assert (await client.post(f"/dead/inbox/{dead_id}/replay")).status_code == 409
        assert (await client.post("/dead/inbox/999999/replay")).status_code == 404
        assert (await client.post("/dead/outbox/999999/replay")).status_code == 404
        assert (await client.post("/dead/other/1/replay")).status_code == 404
        event = await hub.inbox_store.get(dead_id)
        assert event is not None
        assert event.status != EventStatus.DEAD


async def test_a_dead_outbox_delivery_is_replayed(hub: Hub, base: str) -> None:
    """A delivery whose schedule is spent shows in /dead as outbox and can be replayed."""
    endpoint = await hub.outbox.add_endpoint(
        "http://127.0.0.1:9/nothing", endpoint_id="gone", event_types=["gone.*"], schedule=[]
    )
    await hub.outbox.enqueue("gone.x", {"n": 1})
    assert hub.worker is not None
    hub.worker.wake()
    async with httpx.AsyncClient(base_url=base) as client:

        async def dead_rows() -> list[dict[str, Any]]:
            rows = (await client.get("/dead")).json()["dead"]
            return [r for r in rows if r["kind"] == "outbox"]

        (row,) = await until(dead_rows)
        assert row["name"] == endpoint.id
        answer = await client.post(f"/dead/outbox/{row['id']}/replay")
        assert answer.status_code == 202
        assert (await client.post(f"/dead/outbox/{row['id']}/replay")).status_code == 409

        async def alert() -> list[Any]:
            found = (await client.get("/events", params={"type": "outbox."})).json()
            return found["events"]

        events = await until(alert)
        assert events[0]["type"] == "outbox.delivery.dead"


async def test_metrics_and_dashboard(base: str) -> None:
    """/metrics is Prometheus text with the hub's metric names; / serves an HTML page."""
    async with httpx.AsyncClient(base_url=base) as client:
        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        for name in (
            'tether_hub_requests_total{integration="weather",outcome="success"}',
            'tether_hub_poll_age_seconds{poller="oslo"}',
            'tether_hub_events_total{type_prefix="data"}',
            "tether_hub_inbox_events",
            "tether_hub_outbox_deliveries",
        ):
            assert name in text
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")


async def test_a_token_guards_everything_but_health_and_the_inbox(hub: Hub) -> None:
    """With a token: 401 without it or with a wrong one; Bearer works; /health and the inbox
    routes stay open; GET /?token= sets an HttpOnly, SameSite=Strict cookie that works."""
    async with serve_api(hub, token="s3cret-token") as base:
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/health")).status_code == 200
            denied = await client.get("/integrations")
            assert denied.status_code == 401
            assert "error" in denied.json()
            assert "s3cret-token" not in denied.text
            wrong = await client.get("/integrations", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            ok = await client.get("/integrations", headers={"Authorization": "Bearer s3cret-token"})
            assert ok.status_code == 200
            body, headers = _signed("evt-token")
            posted = await client.post("/webhooks/weather/alerts", content=body, headers=headers)
            assert posted.status_code == 200
            assert (await client.get("/", params={"token": "nope"})).status_code == 401
            login = await client.get("/", params={"token": "s3cret-token"})
            assert login.status_code == 303
            assert login.headers["location"] == "/"
            cookie = login.headers["set-cookie"].lower()
            assert "httponly" in cookie
            assert "samesite=strict" in cookie
        async with httpx.AsyncClient(base_url=base, cookies=login.cookies) as browser:
            assert (await browser.get("/data")).status_code == 200
            assert (await browser.get("/")).status_code == 200


async def test_health_is_503_when_the_store_is_gone(hub: Hub, base: str) -> None:
    """/health says unavailable, with a reason, once the hub's store cannot be reached."""
    await hub.store.close()
    async with httpx.AsyncClient(base_url=base) as client:
        answer = await client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
    assert "store" in answer.json()["reason"]
