"""`tether serve` as a process: config errors, graceful SIGTERM, SIGHUP reloads, JSON logs."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether import webhooks
from tether.testing import MockAPI, Reply

from .helpers import free_port, until, weather_toml
from .processes import ServeProcess, run_serve

SECRET = webhooks.generate_secret()
WEBHOOK = """
[integrations.weather.webhooks.alerts]
scheme = "standard"
secret = { env = "ALERTS_SECRET" }
"""


@pytest.fixture
async def provider() -> AsyncIterator[tuple[MockAPI, str]]:
    api = MockAPI()
    api.stub("GET", "/current", Reply(json={"t": 1}))
    async with api.serve() as server:
        yield api, server.url


def _signed(event_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": "alert.created", "data": {"id": event_id}}).encode()
    headers = webhooks.sign(
        "standard", secret=SECRET, body=body, msg_id=event_id, timestamp=int(time.time())
    )
    return body, {**headers, "content-type": "application/json"}


def test_a_bad_config_exits_2_with_its_problems_before_binding(tmp_path: Path) -> None:
    """A poller naming a missing integration: exit 2, the key and reason on stderr, no listen."""
    port = free_port()
    (tmp_path / "tether.toml").write_text(
        f'[hub]\nlisten = "127.0.0.1:{port}"\n'
        '[pollers.oslo]\nintegration = "nothing"\nendpoint = "x"\ninterval = 5\n',
        encoding="utf-8",
    )
    result = run_serve("--config", "tether.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "pollers.oslo.integration: no integration named 'nothing'" in result.stderr
    assert "tether.toml:4" in result.stderr
    assert "listening" not in result.stdout
    assert not (tmp_path / "tether-hub.db").exists()


def test_no_config_says_where_it_looked_and_the_spec_option_is_honoured(tmp_path: Path) -> None:
    """Without a tether.toml, exit 2 naming the path and pointing at --demo; the root --spec
    (as for every other command) chooses the config when --config is not given."""
    missing = run_serve(cwd=tmp_path)
    assert missing.returncode == 2
    assert "no config at tether.toml" in missing.stderr
    assert "tether serve --demo" in missing.stderr
    (tmp_path / "hub.toml").write_text(
        '[pollers.oslo]\nintegration = "nothing"\nendpoint = "x"\ninterval = 5\n',
        encoding="utf-8",
    )
    chosen = run_serve(cwd=tmp_path, root=("--spec", "hub.toml"))
    assert chosen.returncode == 2
    assert "no integration named 'nothing'" in chosen.stderr


def test_a_missing_secret_and_an_open_listen_are_config_errors(tmp_path: Path) -> None:
    """A webhook secret from an unset variable, or a public listen address without a token,
    stops `tether serve` with exit 2 and the reason."""
    (tmp_path / "tether.toml").write_text(
        weather_toml("http://127.0.0.1:9") + WEBHOOK, encoding="utf-8"
    )
    result = run_serve("--config", "tether.toml", "--listen", "127.0.0.1:0", cwd=tmp_path)
    assert result.returncode == 2
    assert "ALERTS_SECRET is not set" in result.stderr
    assert "listening" not in result.stdout
    assert not (tmp_path / "tether-hub.db").exists()
    public = run_serve(
        "--config", "tether.toml", "--listen", "0.0.0.0:0", cwd=tmp_path,
        env={"ALERTS_SECRET": SECRET},
    )  # fmt: skip
    assert public.returncode == 2
    assert "needs a token" in public.stderr


async def test_sigterm_stops_gracefully_and_acknowledged_webhooks_survive_a_restart(
    tmp_path: Path, provider: tuple[MockAPI, str]
) -> None:
    """Webhooks acknowledged just before SIGTERM: the process exits 0, and after a restart
    each of them is exactly one webhook hub event."""
    (tmp_path / "tether.toml").write_text(weather_toml(provider[1]) + WEBHOOK, encoding="utf-8")
    args = ("--config", "tether.toml", "--listen", "127.0.0.1:0")
    env = {"ALERTS_SECRET": SECRET}
    first = ServeProcess(*args, env=env, cwd=tmp_path)
    base = await first.start()
    acknowledged: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def post(n: int) -> None:
                body, headers = _signed(f"evt-{n}")
                try:
                    answer = await client.post(
                        "/webhooks/weather/alerts", content=body, headers=headers
                    )
                except httpx.HTTPError:
                    return
                if answer.status_code == 200:
                    acknowledged.append(f"evt-{n}")

            # Four senders keep requests in flight; the signal comes after the fifth
            # acknowledgement, while others are still being answered.
            sends: list[asyncio.Task[None]] = []
            signalled = False
            for n in range(200):
                sends.append(asyncio.create_task(post(n)))
                if len(sends) % 4 == 0:
                    await asyncio.wait(sends[-4:], return_when=asyncio.FIRST_COMPLETED)
                if len(acknowledged) >= 5 and not signalled:
                    signalled = True
                    first.signal(signal.SIGTERM)
                if first.proc is not None and first.proc.poll() is not None:
                    break
            await asyncio.gather(*sends)
        assert await first.wait() == 0
    finally:
        await first.stop()
    assert "stopped" in first.stderr()
    assert acknowledged
    second = ServeProcess(*args, env=env, cwd=tmp_path)
    base = await second.start()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def all_dispatched() -> list[dict[str, Any]] | None:
                answer = await client.get("/events", params={"type": "webhook.", "since": 0})
                events: list[dict[str, Any]] = answer.json()["events"]
                ids = {e["data"]["event_id"] for e in events}
                return events if ids >= set(acknowledged) else None

            events = await until(all_dispatched, timeout=30)
            ids = [e["data"]["event_id"] for e in events]
            assert len(ids) == len(set(ids))  # exactly one hub event per delivery
            inbox = (await client.get("/inbox", params={"limit": 100})).json()["events"]
            assert {e["event_id"] for e in inbox} == set(ids)
    finally:
        await second.stop()


async def test_sighup_adds_a_poller_and_a_bad_reload_keeps_the_old_config(
    tmp_path: Path, provider: tuple[MockAPI, str]
) -> None:
    """After SIGHUP with a new poller in the file, it polls; a broken file on the next SIGHUP
    is logged and the hub keeps running what it had."""
    api, url = provider
    bergen = api.stub("GET", "/current", Reply(json={"t": 9}), query={"city": "Bergen"})
    config = tmp_path / "tether.toml"
    config.write_text(weather_toml(url), encoding="utf-8")
    process = ServeProcess(
        "--config", str(config), "--listen", "127.0.0.1:0", "--log-format", "json", cwd=tmp_path
    )
    base = await process.start()
    try:
        added = """
[pollers.bergen]
integration = "weather"
endpoint = "current"
args = { city = "Bergen" }
interval = 0.5
"""
        config.write_text(weather_toml(url) + added, encoding="utf-8")
        process.signal(signal.SIGHUP)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def bergen_data() -> dict[str, Any] | None:
                answer = await client.get("/data/bergen")
                return answer.json() if answer.status_code == 200 and bergen.calls else None

            await until(bergen_data, timeout=30)
            config.write_text(weather_toml(url) + added + "[pollers.bad]\n", encoding="utf-8")
            process.signal(signal.SIGHUP)

            async def refused() -> bool:
                return "was not applied" in process.stderr()

            await until(refused, timeout=30)
            names = [p["name"] for p in (await client.get("/data")).json()["pollers"]]
            assert names == ["oslo", "bergen"]
    finally:
        await process.stop()
    records = [json.loads(line) for line in process.stderr().splitlines() if line.startswith("{")]
    assert records
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("pollers.bad" in r["message"] for r in records)


async def test_the_demo_runs_every_feature_and_stops_on_sigterm(tmp_path: Path) -> None:
    """README's main job, `tether serve --demo`: with no config and no network beyond loopback,
    the pollers get data, device readings and signed alerts arrive as events, the outbox
    delivers to the sandbox's receiver, the dashboard is served, and SIGTERM exits 0."""
    process = ServeProcess("--demo", "--listen", "127.0.0.1:0", cwd=tmp_path)
    base = await process.start()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            missing: list[str] = []

            async def everything() -> bool:
                pollers = (await client.get("/data")).json()["pollers"]
                events = (await client.get("/events?limit=1000")).json()["events"]
                types = {e["type"] for e in events}
                delivered = (await client.get("/outbox?status=delivered")).json()["deliveries"]
                missing[:] = [
                    what
                    for what, seen in (
                        ("poll", all(p["last_success"] for p in pollers)),
                        ("reading", "device.reading" in types),
                        ("alert", any(t.startswith("webhook.weather.alerts.") for t in types)),
                        ("delivery", bool(delivered)),
                    )
                    if not seen
                ]
                return not missing

            try:
                await until(everything, timeout=90, every=0.5)
            except AssertionError:
                raise AssertionError(f"not seen: {missing}\n{process.stderr()}") from None
            integrations = (await client.get("/integrations")).json()["integrations"]
            assert [i["name"] for i in integrations] == ["weather"]
            page = await client.get("/")
            assert page.status_code == 200
            assert "text/html" in page.headers["content-type"]
        process.signal(signal.SIGTERM)
        assert await process.wait() == 0
    finally:
        await process.stop()
    assert "Traceback" not in process.stderr()
