"""The demo sandbox behind `tether serve --demo`: a weather-like provider on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import tether
import tether.spec
from tether import webhooks
from tether.hub._demo import (
    DEMO_ALERTS_SECRET,
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_RECEIVER_SECRET,
    DemoSandbox,
)
from tether.streams import WebSocket
from tether.testing import FakeClock, MockAPI, MockRequest, Reply

HUB_URL = "http://127.0.0.1:8765"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sandbox(clock: FakeClock) -> AsyncIterator[DemoSandbox]:
    async with DemoSandbox(seed=0, clock=clock) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def _token(session: aiohttp.ClientSession, sandbox: DemoSandbox) -> str:
    async with session.post(
        f"{sandbox.base_url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
        },
    ) as response:
        assert response.status == 200
        return str((await response.json())["access_token"])


async def _get_current(
    session: aiohttp.ClientSession, sandbox: DemoSandbox, token: str, city: str = "Oslo"
) -> tuple[int, Mapping[str, str], Any]:
    async with session.get(
        f"{sandbox.base_url}/v1/current",
        params={"city": city},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        return response.status, response.headers, await response.json()


async def _statuses(sandbox: DemoSandbox, clock: FakeClock, count: int) -> list[int]:
    """`count` weather requests, spaced within the quota on the sandbox's clock."""
    async with aiohttp.ClientSession() as session:
        token = await _token(session, sandbox)
        statuses = []
        for _ in range(count):
            status, _headers, _body = await _get_current(session, sandbox, token)
            statuses.append(status)
            clock.advance(0.25)
    return statuses


async def _get_answered(
    session: aiohttp.ClientSession, sandbox: DemoSandbox, token: str, city: str = "Oslo"
) -> tuple[int, Mapping[str, str], Any]:
    """Like `_get_current`, past the seeded 503s."""
    while True:
        status, headers, body = await _get_current(session, sandbox, token, city)
        if status != 503:
            return status, headers, body


def _write_config(tmp_path: Path, sandbox: DemoSandbox) -> Path:
    path = tmp_path / "tether.toml"
    path.write_text(sandbox.config(HUB_URL), encoding="utf-8")
    return path


async def _until(condition: Any, *, attempts: int = 500) -> None:
    """A bounded poll for a condition that real I/O makes true."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never became true")


async def test_client_credentials_token_opens_the_weather_api(
    sandbox: DemoSandbox, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """The token endpoint issues 60-second Bearer tokens to the demo client; the API takes
    only live ones."""
    async with session.post(
        f"{sandbox.base_url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEMO_CLIENT_ID,
            "client_secret": "wrong",
        },
    ) as refused:
        assert refused.status == 401
        assert (await refused.json())["error"] == "invalid_client"
    token = await _token(session, sandbox)
    status, _, body = await _get_answered(session, sandbox, "not-a-token")
    assert status == 401
    status, _, body = await _get_answered(session, sandbox, token)
    assert status == 200
    assert body["city"] == "Oslo"
    assert {"temperature", "humidity", "wind_speed", "condition", "observed_at"} <= set(body)
    clock.advance(61)
    status, headers, body = await _get_answered(session, sandbox, token)
    assert status == 401
    assert "expired" in headers["WWW-Authenticate"]
    assert sandbox.stats()["tokens_issued"] == 1


async def test_past_the_quota_answers_429_with_retry_after(
    sandbox: DemoSandbox, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Five requests a second pass; the sixth in the same second gets 429 with Retry-After,
    and the quota refills with time."""
    token = await _token(session, sandbox)
    answered: list[int] = []
    retry_after: list[str] = []
    while len(answered) < 7:
        status, headers, _ = await _get_current(session, sandbox, token)
        if status == 503:  # the seeded flakiness answers before the quota is counted
            continue
        answered.append(status)
        if status == 429:
            retry_after.append(headers["Retry-After"])
    assert answered == [200] * 5 + [429] * 2
    assert retry_after == ["1", "1"]
    clock.advance(1.0)
    assert (await _get_answered(session, sandbox, token))[0] == 200
    assert sandbox.stats()["rate_limited"] == 2


async def test_flaky_503s_are_seeded(clock: FakeClock) -> None:
    """About one weather request in ten fails with 503, and the same seed fails the same ones."""
    async with DemoSandbox(seed=7, clock=clock) as first:
        statuses = await _statuses(first, clock, 40)
        assert first.stats()["server_errors"] == statuses.count(503)
    other_clock = FakeClock()
    async with DemoSandbox(seed=7, clock=other_clock) as again:
        assert await _statuses(again, other_clock, 40) == statuses
    assert set(statuses) == {200, 503}
    assert 1 <= statuses.count(503) <= 10


async def test_weather_changes_between_polls(
    sandbox: DemoSandbox, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """The same moment gives the same weather; ten seconds later (a poll interval) it moved."""
    token = await _token(session, sandbox)

    async def current() -> Any:
        status, _, body = await _get_answered(session, sandbox, token, "Lisbon")
        assert status == 200
        return body

    first = await current()
    clock.advance(0.5)
    assert await current() == first
    clock.advance(10)
    later = await current()
    assert later["observed_at"] > first["observed_at"]
    assert later != first


async def test_device_websocket_sends_readings_after_subscribe(
    sandbox: DemoSandbox, session: aiohttp.ClientSession
) -> None:
    """Nothing is sent before a subscribe; then a reading {device, temperature, at} every
    second of the sandbox's clock, rotating over the devices."""
    url = sandbox.base_url.replace("http", "ws", 1) + "/ws/devices"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(url)
    assert refused.value.status == 401
    token = await _token(session, sandbox)
    async with session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send_json({"op": "subscribe", "channel": "nope"})
        # The first frame is the answer to that: no reading was sent before a subscribe.
        assert (await ws.receive_json())["type"] == "error"
        await ws.send_json({"op": "subscribe", "channel": "readings"})
        readings = [await ws.receive_json() for _ in range(4)]
    assert all(set(r) == {"device", "temperature", "at"} for r in readings)
    assert [r["device"] for r in readings[:3]] == ["greenhouse-1", "greenhouse-2", "cellar"]
    assert [b["at"] - a["at"] for a, b in itertools.pairwise(readings)] == [1.0] * 3


async def test_device_websocket_works_with_tether_streams_and_oauth2(
    sandbox: DemoSandbox,
) -> None:
    """tether.streams.WebSocket with the demo's OAuth2 credential subscribes and reads, as the
    hub's `devices` stream does."""
    credential = tether.auth.OAuth2.client_credentials(
        f"{sandbox.base_url}/oauth/token", DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
    )
    url = sandbox.base_url.replace("http", "ws", 1) + "/ws/devices"
    async with WebSocket(url, auth=credential, heartbeat=None) as ws:
        await ws.subscribe({"op": "subscribe", "channel": "readings"})
        async for message in ws:
            assert message["device"] == "greenhouse-1"
            break
    assert sandbox.stats()["readings_sent"] >= 1


async def test_receiver_verifies_standard_webhooks_signatures(
    sandbox: DemoSandbox, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """/receiver accepts deliveries signed with the demo's outbox secret and refuses others."""
    body = json.dumps({"type": "webhook.weather.alerts.alert.created", "data": {}}).encode()
    now = int(clock.time())
    good = webhooks.sign(
        "standard", secret=DEMO_RECEIVER_SECRET, body=body, msg_id="msg_1", timestamp=now
    )
    forged = webhooks.sign(
        "standard", secret=webhooks.generate_secret(), body=body, msg_id="msg_2", timestamp=now
    )
    stale = webhooks.sign(
        "standard", secret=DEMO_RECEIVER_SECRET, body=body, msg_id="msg_3", timestamp=now - 3600
    )
    statuses = []
    for headers in (good, forged, stale):
        async with session.post(f"{sandbox.base_url}/receiver", data=body, headers=headers) as r:
            statuses.append(r.status)
    assert statuses == [204, 401, 401]
    assert list(sandbox.received) == [
        {"msg_id": "msg_1", "type": "webhook.weather.alerts.alert.created"}
    ]
    stats = sandbox.stats()
    assert (stats["webhooks_received"], stats["webhooks_rejected"]) == (1, 2)


async def test_alerts_are_signed_and_a_refused_one_is_sent_again(
    sandbox: DemoSandbox, clock: FakeClock
) -> None:
    """The sender posts alerts that webhooks.verify("standard", ...) accepts with the demo's
    inbox secret; one the receiver refused comes again with the same id."""
    inbox = MockAPI(clock=clock)
    verified: list[webhooks.VerifiedWebhook] = []
    types: list[str] = []

    def receive(request: MockRequest, _: Mapping[str, str]) -> Reply:
        result = webhooks.verify(
            "standard",
            secret=DEMO_ALERTS_SECRET,
            headers=dict(request.headers),
            body=request.body,
            now=clock.time(),
        )
        verified.append(result)
        types.append(request.json()["type"])
        # The first delivery is refused, as a hub that is still starting would.
        return Reply(503) if len(verified) == 1 else Reply(200)

    inbox.stub("POST", "/webhooks/weather/alerts", handler=receive)
    async with inbox.serve() as server:
        await sandbox.send_webhooks(f"{server.url}/webhooks/weather/alerts", every=5.0)
        await _until(lambda: len(verified) >= 5)
        await sandbox.aclose()
    assert verified[0].msg_id == verified[1].msg_id
    assert len({v.msg_id for v in verified[1:5]}) == 4
    assert types[1:5] == ["alert.created", "alert.created", "alert.resolved", "alert.created"]
    stamps = [v.timestamp or 0 for v in verified[:4]]
    assert [later - earlier for earlier, later in itertools.pairwise(stamps)] == [5, 5, 5]
    stats = sandbox.stats()
    assert stats["webhooks_failed"] == 1
    assert stats["webhooks_sent"] >= 5


async def test_send_webhooks_refuses_bad_arguments(sandbox: DemoSandbox) -> None:
    """A non-positive period or a relative URL is a ConfigError, before any task starts."""
    with pytest.raises(tether.ConfigError, match="every"):
        await sandbox.send_webhooks("http://127.0.0.1:9/hook", every=0)
    with pytest.raises(tether.ConfigError, match="target_url"):
        await sandbox.send_webhooks("/webhooks/weather/alerts")


async def test_demo_config_loads_with_every_section(tmp_path: Path, sandbox: DemoSandbox) -> None:
    """The demo tether.toml passes tether.spec.load: the weather integration, two pollers, the
    device stream and an outbox endpoint back to the sandbox, for the hub's address."""
    spec = tether.spec.load(_write_config(tmp_path, sandbox), environ={})
    model = spec.document.model
    assert spec.names == ("weather",)
    assert model.hub.listen == "127.0.0.1:8765"
    assert set(model.pollers) == {"oslo", "lisbon"}
    assert model.pollers["oslo"].interval == 10
    assert model.streams["devices"].url == sandbox.base_url.replace("http", "ws", 1) + "/ws/devices"
    assert model.outbox.allow_private == ["127.0.0.0/8"]
    endpoint = model.outbox.endpoints["sandbox"]
    assert endpoint.url == f"{sandbox.base_url}/receiver"
    assert endpoint.event_types == ["webhook.*", "poller.*"]
    sources = spec.integration("weather").webhook_sources()
    assert [(s.scheme, s.path) for s in sources] == [("standard", "/webhooks/weather/alerts")]
    assert DEMO_CLIENT_SECRET not in repr(spec.integration("weather").settings())


async def test_config_needs_a_running_sandbox_and_a_hub_address(sandbox: DemoSandbox) -> None:
    """config() says what is wrong with a hub URL, and needs the sandbox's port."""
    with pytest.raises(tether.ConfigError, match="hub_url"):
        sandbox.config("127.0.0.1:8765")
    with pytest.raises(tether.ConfigError, match="not running"):
        DemoSandbox().config(HUB_URL)


async def test_client_with_demo_settings_sees_no_429(
    tmp_path: Path, sandbox: DemoSandbox, clock: FakeClock
) -> None:
    """A tether.Client built from the demo's `weather` integration (OAuth2, 5/s, retries)
    gets current weather twenty times: its limiter keeps within the quota and its retries
    absorb the flaky 503s, so the caller sees neither."""
    spec = tether.spec.load(_write_config(tmp_path, sandbox), environ={})
    weather = spec.integration("weather")
    async with weather.client(clock=clock) as client:
        results = [await weather.call(client, "current", city="Oslo") for _ in range(20)]
    assert all(result["city"] == "Oslo" for result in results)
    stats = sandbox.stats()
    assert stats["rate_limited"] == 0
    assert stats["server_errors"] >= 1
    assert stats["tokens_issued"] == 1


async def test_retries_absorb_429s_when_nothing_paces_the_client(
    tmp_path: Path, sandbox: DemoSandbox, clock: FakeClock
) -> None:
    """Without its rate limiter the same client runs into the quota, and Retry-After carries
    it through: the server answered 429s, the caller saw none."""
    spec = tether.spec.load(_write_config(tmp_path, sandbox), environ={})
    weather = spec.integration("weather")
    async with weather.client(clock=clock, rate_limit=None) as client:
        results = await asyncio.gather(
            *(weather.call(client, "current", city="Oslo") for _ in range(12))
        )
    assert len(results) == 12
    assert sandbox.stats()["rate_limited"] >= 1


async def test_demo_config_runs_on_a_hub(tmp_path: Path) -> None:
    """On a real hub the demo shows every feature: polled data, device readings from the
    stream, alerts through the inbox, and outbox deliveries /receiver verifies."""
    from tests.hub.helpers import serve_api, until
    from tether.hub import Hub

    async with DemoSandbox(seed=0) as sandbox:
        spec = tether.spec.load(_write_config(tmp_path, sandbox), environ={})
        hub = Hub(spec, store=str(tmp_path / "hub.db"), environ={})
        async with hub, serve_api(hub) as url, aiohttp.ClientSession() as http:
            await sandbox.send_webhooks(f"{url}/webhooks/weather/alerts", every=0.5)

            async def seen_everything() -> bool:
                async with http.get(f"{url}/events?limit=1000&since=0") as response:
                    types = {event["type"] for event in (await response.json())["events"]}
                wanted = {"data.oslo", "data.lisbon", "device.reading"}
                delivered = {r["type"] for r in sandbox.received}
                return (
                    wanted <= types
                    and "webhook.weather.alerts.alert.created" in types
                    and "webhook.weather.alerts.alert.created" in delivered
                )

            await until(seen_everything, timeout=60)
            async with http.get(f"{url}/integrations") as response:
                (weather,) = (await response.json())["integrations"]
    assert weather["name"] == "weather"
    assert weather["rate_limit"]["limit"] == "5/s"
    assert weather["breaker"] in {"closed", "half_open", "open"}
    stats = sandbox.stats()
    assert stats["webhooks_rejected"] == 0
    assert stats["tokens_issued"] >= 1
    received = {r["type"] for r in sandbox.received}
    assert "webhook.weather.alerts.alert.created" in received
    assert all(str(t).startswith(("webhook.", "poller.")) for t in received)
