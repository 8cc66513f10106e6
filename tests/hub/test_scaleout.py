"""Two `tether serve` processes on one PostgreSQL and one Redis: each poll happens once in the
cluster, and no acknowledged webhook is lost or doubled when one hub is SIGKILLed."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tether import webhooks
from tether.testing import MockAPI, Reply

from .helpers import until
from .processes import ServeProcess

INTERVAL = 0.5
SECRET = webhooks.generate_secret()


def _config(base_url: str) -> str:
    return f"""
[integrations.weather]
base_url = "{base_url}"
retry = false
rate_limit = "40/s"
[integrations.weather.endpoints.current]
path = "/current"
[integrations.weather.webhooks.alerts]
scheme = "standard"
secret = {{ env = "ALERTS_SECRET" }}

[pollers.oslo]
integration = "weather"
endpoint = "current"
args = {{ city = "Oslo" }}
interval = {INTERVAL}

[pollers.bergen]
integration = "weather"
endpoint = "current"
args = {{ city = "Bergen" }}
interval = {INTERVAL}
"""


def _signed(event_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": "alert.created", "data": {"id": event_id}}).encode()
    headers = webhooks.sign(
        "standard", secret=SECRET, body=body, msg_id=event_id, timestamp=int(time.time())
    )
    return body, {**headers, "content-type": "application/json"}


async def test_two_hubs_poll_once_and_lose_no_webhook_when_one_is_killed(
    tmp_path: Path, pg_store_url: str, redis_url: str
) -> None:
    """Polls per poller stay at about one per interval with two hubs running (never double),
    and every webhook a hub acknowledged, sent alternately to both while one is SIGKILLed,
    becomes exactly one webhook hub event; the survivor takes the pollers over."""
    api = MockAPI()
    calls: Counter[str] = Counter()

    def answer(request: Any, params: dict[str, str]) -> Reply:
        del params
        calls[request.query.get("city", "?")] += 1
        return Reply(json={"city": request.query.get("city"), "n": calls[request.query["city"]]})

    api.stub("GET", "/current", handler=answer)
    async with api.serve() as server:
        (tmp_path / "tether.toml").write_text(_config(server.url), encoding="utf-8")
        args = ("--config", "tether.toml", "--listen", "127.0.0.1:0",
                "--store", pg_store_url, "--redis", redis_url)  # fmt: skip
        env = {"ALERTS_SECRET": SECRET}
        first = ServeProcess(*args, env=env, cwd=tmp_path)
        second = ServeProcess(*args, env=env, cwd=tmp_path)
        try:
            urls = await asyncio.gather(first.start(), second.start())

            async def polling() -> bool:
                return calls["Oslo"] >= 2 and calls["Bergen"] >= 2

            await until(polling, timeout=30)
            # Several intervals with both hubs up: one poll per interval per poller, in all.
            started, before = time.monotonic(), dict(calls)

            async def several_intervals() -> bool:
                return calls["Oslo"] - before["Oslo"] >= 8

            await until(several_intervals, timeout=30)
            elapsed = time.monotonic() - started
            for city in ("Oslo", "Bergen"):
                polled = calls[city] - before[city]
                assert polled <= elapsed / INTERVAL + 2, (city, polled, elapsed)
            async with httpx.AsyncClient(timeout=10) as client:
                health = [(await client.get(f"{url}/health")).json() for url in urls]
                assert [h["store"] for h in health] == ["postgresql", "postgresql"]
                assert all(h["redis"] for h in health)
                assert health[0]["hub_id"] != health[1]["hub_id"]
                acknowledged = await _send_while_killing(client, urls, first)
                assert len(acknowledged) >= 20
                survivor = urls[1]

                async def all_events() -> list[dict[str, Any]] | None:
                    answer = await client.get(
                        f"{survivor}/events", params={"type": "webhook.", "since": 0, "limit": 1000}
                    )
                    events: list[dict[str, Any]] = answer.json()["events"]
                    seen = {e["data"]["event_id"] for e in events}
                    return events if seen >= acknowledged else None

                events = await until(all_events, timeout=60)
                per_id = Counter(e["data"]["event_id"] for e in events)
                assert set(per_id) >= acknowledged
                assert max(per_id.values()) == 1  # each one became exactly one hub event
                inbox = (await client.get(f"{survivor}/inbox", params={"limit": 1000})).json()
                delivered = {e["event_id"] for e in inbox["events"] if e["status"] == "delivered"}
                assert delivered >= acknowledged
                # The killed hub's pollers are taken over once their leases run out.
                after_kill = dict(calls)

                async def taken_over() -> bool:
                    return all(calls[c] > after_kill[c] + 2 for c in ("Oslo", "Bergen"))

                await until(taken_over, timeout=40)
        finally:
            await asyncio.gather(first.stop(), second.stop())


async def _send_while_killing(
    client: httpx.AsyncClient, urls: list[str], victim: ServeProcess
) -> set[str]:
    """Post 40 webhooks alternately to both hubs, SIGKILLing the first after the 15th; the
    ids of those that got a 2xx."""
    acknowledged: set[str] = set()
    for n in range(40):
        if n == 15:
            victim.signal(signal.SIGKILL)
        body, headers = _signed(f"evt-{n}")
        target = urls[n % 2]
        try:
            answer = await client.post(
                f"{target}/webhooks/weather/alerts", content=body, headers=headers
            )
        except httpx.HTTPError:
            continue
        if 200 <= answer.status_code < 300:
            acknowledged.add(f"evt-{n}")
    return acknowledged
