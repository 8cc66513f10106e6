"""No secret leaves the hub: not in any API answer, the dashboard, the metrics or the logs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from tether import webhooks
from tether.hub import Hub
from tether.testing import MockAPI, Reply

from .helpers import serve_api, until, write_spec

API_KEY = "apikey-canary-7f3e9a"
HUB_TOKEN = "hubtoken-canary-2b8d41"
ALERTS_SECRET = webhooks.generate_secret()
ENDPOINT_SECRET = webhooks.generate_secret()
URL_TOKEN = "urltoken-canary-c0ffee"
CANARIES = (
    API_KEY,
    HUB_TOKEN,
    ALERTS_SECRET,
    ALERTS_SECRET.removeprefix("whsec_"),
    ENDPOINT_SECRET,
    ENDPOINT_SECRET.removeprefix("whsec_"),
    URL_TOKEN,
)


@pytest.fixture
async def failing_receiver() -> AsyncIterator[str]:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=500, text=f"echo {request.query_string}")

    app = web.Application()
    app.router.add_post("/hooks", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hooks"
    await runner.cleanup()


async def test_no_secret_in_api_answers_dashboard_metrics_or_logs(
    tmp_path: Path,
    failing_receiver: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With an API key the provider echoes in its errors, a webhook secret, an outbox endpoint
    secret and a token in the endpoint's URL, and a hub token: every GET route, the dashboard
    and /metrics answer without any of them, and so does every log record at DEBUG."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("API_KEY", API_KEY)
    monkeypatch.setenv("ALERTS", ALERTS_SECRET)
    monkeypatch.setenv("ENDPOINT_SECRET", ENDPOINT_SECRET)
    monkeypatch.setenv("HUB_TOKEN", HUB_TOKEN)
    api = MockAPI()
    api.stub("GET", "/current", Reply(status=500, json={"error": f"bad key {API_KEY}"}))
    async with api.serve() as server:
        toml = f"""
[hub]
token = {{ env = "HUB_TOKEN" }}

[integrations.weather]
base_url = "{server.url}"
retry = false
auth = {{ type = "api_key", name = "appid", location = "query", value = {{ env = "API_KEY" }} }}
[integrations.weather.endpoints.current]
path = "/current"
[integrations.weather.webhooks.alerts]
scheme = "standard"
secret = {{ env = "ALERTS" }}

[pollers.oslo]
integration = "weather"
endpoint = "current"
interval = 0.5

[outbox]
allow_private = ["127.0.0.0/8"]
[outbox.endpoints.receiver]
url = "{failing_receiver}?token={URL_TOKEN}"
event_types = ["webhook.*"]
secret = {{ env = "ENDPOINT_SECRET" }}
schedule = []
"""
        spec = write_spec(tmp_path, toml)
        async with Hub(spec, hub_id="canary") as hub, serve_api(hub, token=HUB_TOKEN) as base:
            auth = {"Authorization": f"Bearer {HUB_TOKEN}"}
            async with httpx.AsyncClient(base_url=base, timeout=10, headers=auth) as client:
                body = json.dumps({"type": "alert.created", "data": {"n": 1}}).encode()
                headers = webhooks.sign(
                    "standard", secret=ALERTS_SECRET, body=body, msg_id="m1",
                    timestamp=int(time.time()),
                )  # fmt: skip
                posted = await client.post(
                    "/webhooks/weather/alerts",
                    content=body,
                    headers={**headers, "content-type": "application/json"},
                )
                assert posted.status_code == 200

                async def dead_and_failed() -> bool:
                    dead = (await client.get("/dead")).json()["dead"]
                    rows = (await client.get("/integrations")).json()["integrations"]
                    return bool(dead) and rows[0]["last_error"] is not None

                await until(dead_and_failed, timeout=30)
                answers = []
                for path in (
                    "/health", "/integrations", "/data", "/data/oslo", "/events",
                    "/inbox", "/outbox", "/dead", "/metrics", "/",
                ):  # fmt: skip
                    answer = await client.get(path)
                    assert answer.status_code == 200, path
                    answers.append((path, answer.text))
    assert any("500" in text for path, text in answers if path == "/integrations")
    for path, text in answers:
        for canary in CANARIES:
            assert canary not in text, f"{path} shows a secret"
    # The hub's and tether's own records; the test's receiver and HTTP client log for themselves.
    logged = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("tether")
    )
    assert "500" in logged
    for canary in CANARIES:
        assert canary not in logged
