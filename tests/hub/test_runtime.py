"""The hub runtime against a loopback provider: pollers, events, health, leases, reload."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tether.hub import Hub
from tether.testing import MockAPI, Reply

from .helpers import until, weather_toml, write_spec


async def _events(hub: Hub, prefix: str) -> list[dict[str, Any]]:
    return [e.to_json() for e in await hub.store.events(since=0, type_prefix=prefix)]


async def test_a_poller_polls_and_data_changes_become_events(tmp_path: Path) -> None:
    """The poller's data reaches /data rows, and each change (not each poll) is one event."""
    api = MockAPI()
    stub = api.stub("GET", "/current", Reply(json={"t": 1}))
    async with api.serve() as server:
        spec = write_spec(tmp_path, weather_toml(server.url))
        async with Hub(spec, hub_id="a") as hub:

            async def polled_twice() -> bool:
                return len(stub.calls) >= 3

            await until(polled_twice)
            rows = await hub.poller_rows(with_data=True)
            assert rows[0]["name"] == "oslo"
            assert rows[0]["data"] == {"t": 1}
            assert rows[0]["available"] is True
            assert stub.calls[0].query == {"city": "Oslo"}
            api.stub("GET", "/current", Reply(json={"t": 2}))

            async def two_changes() -> list[dict[str, Any]]:
                found = await _events(hub, "data.oslo")
                return found if len(found) == 2 else []

            changes = await until(two_changes)
            assert [e["data"] for e in changes] == [{"t": 1}, {"t": 2}]
            assert [e["type"] for e in await _events(hub, "poller.")] == ["poller.oslo.available"]


async def _row(hub: Hub, name: str) -> dict[str, Any]:
    rows = {row["name"]: row for row in await hub.integration_rows()}
    return rows[name]


async def test_failures_make_the_integration_degraded_then_down(tmp_path: Path) -> None:
    """One failed poll makes the integration degraded; enough to make the data unavailable
    make it down; the error class and redacted message are reported and events say so."""
    api = MockAPI()
    api.stub("GET", "/current", Reply(json={"t": 1}), Reply(503, json={"error": "busy"}))
    async with api.serve() as server:
        spec = write_spec(tmp_path, weather_toml(server.url, interval=0.2))
        async with Hub(spec, hub_id="a") as hub:

            async def degraded() -> dict[str, Any] | None:
                row = await _row(hub, "weather")
                return row if row["status"] == "degraded" else None

            row = await until(degraded)
            assert row["last_error"]["class"] == "ServerError"
            assert row["requests"] >= 2
            assert row["failures"] >= 1
            assert row["pollers"] == ["oslo"]
            assert row["breaker"] is None
            assert row["rate_limit"] is None

            async def down() -> dict[str, Any] | None:
                row = await _row(hub, "weather")
                return row if row["status"] == "down" else None

            await until(down)
            data = (await hub.poller_rows(with_data=True))[0]
            assert data["available"] is False
            assert data["data"] == {"t": 1}  # the last good data is kept
            assert data["consecutive_failures"] >= 2
            types = [e["type"] for e in await _events(hub, "")]
            assert "poller.oslo.unavailable" in types

            async def status_events() -> list[Any]:
                return [e["data"] for e in await _events(hub, "status.weather")]

            await until(status_events)
            changes = await status_events()
            assert changes[0] == {"from": "ok", "to": "degraded"}


async def test_an_open_breaker_shows_open_and_down(tmp_path: Path) -> None:
    """A circuit opened by failures is reported as breaker 'open' and status 'down'."""
    api = MockAPI()
    api.stub("GET", "/current", Reply(503))
    extra = """
[integrations.weather.breaker]
minimum_calls = 2
failure_rate = 0.5
open_for = 60
"""
    text = weather_toml("URL", interval=0.2).replace(
        "[integrations.weather.endpoints.current]",
        extra + "[integrations.weather.endpoints.current]",
    )
    async with api.serve() as server:
        spec = write_spec(tmp_path, text.replace("URL", server.url))
        async with Hub(spec, hub_id="a") as hub:

            async def opened() -> dict[str, Any] | None:
                row = await _row(hub, "weather")
                return row if row["breaker"] == "open" else None

            row = await until(opened)
            assert row["status"] == "down"


async def test_a_second_hub_on_the_same_store_does_not_poll(tmp_path: Path) -> None:
    """Two hubs on one SQLite store: one holds the poller's lease and polls, the other serves
    the stored snapshot; when the first stops, the second takes over."""
    api = MockAPI()
    stub = api.stub("GET", "/current", Reply(json={"t": 1}))
    async with api.serve() as server:
        spec = write_spec(tmp_path, weather_toml(server.url, interval=0.3))
        async with Hub(spec, hub_id="a") as first:

            async def held() -> bool:
                return first.pollers["oslo"].lease is not None

            await until(held)
            async with Hub(spec, hub_id="b") as second:
                started = time.monotonic()
                calls_before = len(stub.calls)

                async def seen() -> bool:
                    return len(stub.calls) >= calls_before + 5

                await until(seen)
                elapsed = time.monotonic() - started
                assert second.pollers["oslo"].lease is None
                assert first.pollers["oslo"].lease is not None
                # One hub polls: about one call per interval, never two.
                assert len(stub.calls) - calls_before <= elapsed / 0.3 + 2
                shared = (await second.poller_rows(with_data=True))[0]
                assert shared["data"] == {"t": 1}
                assert shared["available"] is True
                await first.stop()

                async def took_over() -> bool:
                    return second.pollers["oslo"].lease is not None

                await until(took_over)
                count = len(stub.calls)

                async def polls_again() -> bool:
                    return len(stub.calls) > count

                await until(polls_again)


async def test_reload_adds_and_removes_pollers(tmp_path: Path) -> None:
    """reload() starts a new poller and stops one that went; a bad spec changes nothing."""
    api = MockAPI()
    api.stub("GET", "/current", Reply(json={"t": 1}))
    bergen = api.stub("GET", "/current", Reply(json={"t": 9}), query={"city": "Bergen"})
    async with api.serve() as server:
        spec = write_spec(tmp_path, weather_toml(server.url))
        async with Hub(spec, hub_id="a") as hub:
            text = weather_toml(server.url).replace("[pollers.oslo]", "[pollers.bergen]")
            text = text.replace('"Oslo"', '"Bergen"')
            await hub.reload(write_spec(tmp_path, text, "second.toml"))
            assert list(hub.pollers) == ["bergen"]

            async def bergen_polled() -> bool:
                return bool(bergen.calls)

            await until(bergen_polled)
            rows = await hub.poller_rows()
            assert [row["name"] for row in rows] == ["bergen"]


async def test_outbox_endpoints_follow_the_config(tmp_path: Path) -> None:
    """Configured endpoints are created under their names at start, updated on reload, and
    disabled when they leave the file (enabled again when they come back)."""

    def outbox(name: str, types: str) -> str:
        return f"""
[outbox]
allow_private = ["127.0.0.0/8"]
[outbox.endpoints.{name}]
url = "http://127.0.0.1:9/{name}"
event_types = [{types}]
"""

    api = MockAPI()
    api.stub("GET", "/current", Reply(json={"t": 1}))
    async with api.serve() as server:
        base = weather_toml(server.url)
        spec = write_spec(tmp_path, base + outbox("alerts", '"data.*"'))
        async with Hub(spec, hub_id="a") as hub:
            (endpoint,) = await hub.outbox.endpoints()
            assert (endpoint.id, endpoint.event_types) == ("alerts", ("data.*",))
            assert endpoint.url == "http://127.0.0.1:9/alerts"
            await hub.reload(write_spec(tmp_path, base + outbox("alerts", '"poller.*"'), "2.toml"))
            assert (await hub.outbox.endpoint("alerts")).event_types == ("poller.*",)
            await hub.reload(write_spec(tmp_path, base + outbox("other", ""), "3.toml"))
            gone = await hub.outbox.endpoint("alerts")
            assert not gone.enabled
            assert gone.disabled_reason == "removed from the config"
            await hub.reload(write_spec(tmp_path, base + outbox("alerts", ""), "4.toml"))
            assert (await hub.outbox.endpoint("alerts")).enabled
