"""A hub with Redis: OAuth2 tokens and rate limits live in Redis; streams follow their feed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.distributed import BreakerGossip, RedisAdviceStore, RedisRateLimiter, RedisTokenStore
from tether.hub import DemoSandbox, Hub
from tether.hub._runtime import stream_event_type
from tether.hub._trace import Tracer
from tether.testing import MockAPI, Reply

from .helpers import until, write_spec


async def test_redis_shares_tokens_and_limits_and_the_stream_feeds_events(
    tmp_path: Path, redis_url: str
) -> None:
    """On the demo sandbox (OAuth2, a rate limit, a WebSocket), a hub given Redis keeps the
    token in a RedisTokenStore and paces with a RedisRateLimiter, polls successfully, and
    turns the device feed into device.reading events."""
    sandbox = DemoSandbox(seed=1)
    await sandbox.start()
    try:
        spec = write_spec(tmp_path, sandbox.config("http://127.0.0.1:9"))
        async with Hub(spec, redis=redis_url, hub_id="r") as hub:
            runtime = hub.integrations["weather"]
            assert runtime.client is not None
            assert any(isinstance(x, RedisRateLimiter) for x in runtime.client.rate_limiters)
            oauth2 = runtime.integration.oauth2
            assert oauth2 is not None
            assert isinstance(oauth2.store, RedisTokenStore)

            async def polled() -> list[dict[str, Any]] | None:
                rows = await hub.poller_rows()
                return rows if all(r["last_success"] for r in rows) else None

            await until(polled, timeout=30)

            async def readings() -> list[Any]:
                return await hub.store.events(since=0, type_prefix="device.")

            found = await until(readings, timeout=30)
            assert found[0].source == "devices"
            assert "temperature" in found[0].data
            assert hub.streams["devices"].lease is not None
    finally:
        await sandbox.aclose()


def test_stream_event_types_fill_fields_safely() -> None:
    """{field} references take the message's values, sanitised; missing ones are empty."""
    assert stream_event_type("device.{kind}", {"kind": "temp"}) == "device.temp"
    assert stream_event_type("d.{a.b}", {"a": {"b": "x y/z"}}) == "d.x_y_z"
    assert stream_event_type("d.{missing}", {"kind": 1}) == "d."


def test_tracing_is_a_no_op_without_opentelemetry() -> None:
    """traces = true without opentelemetry installed makes no spans and raises nothing."""
    tracer = Tracer(enabled=True)
    with tracer.span("tether.hub.poll", poller="p"):
        pass
    assert not Tracer(enabled=False).enabled


async def test_redis_shares_server_advice_and_breaker_reports(
    tmp_path: Path, redis_url: str
) -> None:
    """With Redis, a Retry-After the hub's poll received pauses that host for every process
    (it is in the shared advice store), and the circuit it opened is reported to the gossip
    that other hubs' breakers consult."""
    api = MockAPI()
    api.stub("GET", "/current", Reply(status=429, headers={"Retry-After": "30"}))
    api.stub("GET", "/fail", Reply(status=500))
    async with api.serve() as server:
        toml = f"""
[integrations.weather]
base_url = "{server.url}"
retry = {{ attempts = 1, max_retry_after = 1 }}
breaker = {{ minimum_calls = 1, failure_rate = 0.5 }}
[integrations.weather.endpoints.current]
path = "/current"
[integrations.weather.endpoints.fail]
path = "/fail"

[pollers.oslo]
integration = "weather"
endpoint = "current"
interval = 60
[pollers.broken]
integration = "weather"
endpoint = "fail"
interval = 60
"""
        spec = write_spec(tmp_path, toml)
        advice = RedisAdviceStore(redis=redis_url)
        gossip = BreakerGossip(redis=redis_url, name="hub:weather")
        try:
            async with Hub(spec, redis=redis_url, hub_id="advised"):
                origin = server.url.rstrip("/")

                async def paused() -> float:
                    return await advice.paused_for(origin)

                assert 20 < await until(paused, timeout=30) <= 30

                async def reported_open() -> int:
                    view = await gossip.view(origin)
                    return view.open

                assert await until(reported_open, timeout=30) == 1
        finally:
            await advice.clear(server.url.rstrip("/"))
            await advice.aclose()
            await gossip.aclose()
