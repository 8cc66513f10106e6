"""The sandbox behind `tether serve --demo`: a weather-like provider on loopback.

One port serves an OAuth2 token endpoint, a weather API that is rate limited and (seeded) flaky,
a device WebSocket and a receiver for the hub's outbox; a sender posts signed alerts to the hub's
inbox. It is built from `tether.testing` (MockAPI, its loopback server, its OAuth2 server and
its webhook sender), so a newcomer sees every feature of the hub working with no internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import logging
import math
import random
import re
import zlib
from collections import Counter, deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from tether._clock import Clock, SystemClock
from tether._errors import ConfigError
from tether.testing import (
    Delivery,
    Latency,
    MockAPI,
    MockRequest,
    MockServer,
    OAuth2Server,
    Outcome,
    Reply,
    Schedule,
    ServerError,
    WebhookSender,
)
from tether.webhooks import WebhookVerificationError, verify

__all__ = [
    "DEMO_ALERTS_SECRET",
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_RECEIVER_SECRET",
    "DemoSandbox",
]

logger = logging.getLogger("tether.hub.demo")

# Published in tether's source on purpose: they protect nothing and must never be reused.
DEMO_CLIENT_ID: Final = "tether-demo"
DEMO_CLIENT_SECRET: Final = "demo-only-client-secret"  # noqa: S105
#: Signs the alerts the sandbox posts to the hub's inbox (Standard Webhooks, v1).
DEMO_ALERTS_SECRET: Final = "whsec_ZGVtby1vbmx5LW5vdC1hLXNlY3JldC1pbmJveC1rZXk="  # noqa: S105
#: What the hub's outbox signs its deliveries to the sandbox's /receiver with.
DEMO_RECEIVER_SECRET: Final = "whsec_ZGVtby1vbmx5LW5vdC1hLXNlY3JldC1vdXRib3gta3k="  # noqa: S105

#: The weather API's quota: a token bucket of this many requests, refilled at this rate.
RATE_PER_SECOND: Final = 5.0
RATE_BURST: Final = 5
#: Share of weather requests answered 503, drawn from the seed.
FLAKY_503: Final = 0.1
ACCESS_TOKEN_TTL: Final = 60.0
#: Readings change this often, so a poller running every few seconds sees new data.
OBSERVATION_PERIOD: Final = 5.0
READING_INTERVAL: Final = 1.0

_TOKEN_PATH: Final = "/oauth/token"  # noqa: S105 - a URL path
_API_PREFIX: Final = "/v1/"
# The mock keeps a journal of every request; a demo that runs for days keeps only the tail.
_JOURNAL_KEEP: Final = 200
_RECEIVED_KEEP: Final = 100

_CITIES: Final[Mapping[str, float]] = {
    "oslo": 6.0,
    "lisbon": 17.5,
    "reykjavik": 4.5,
    "cairo": 23.0,
    "singapore": 27.5,
    "montreal": 7.0,
    "nairobi": 19.0,
    "sydney": 18.0,
}
_CONDITIONS: Final = ("clear", "partly cloudy", "cloudy", "light rain", "rain", "windy", "fog")
_DEVICES: Final = ("greenhouse-1", "greenhouse-2", "cellar")
_ALERTS: Final = (
    ("wind", "moderate", "Gusts up to 20 m/s expected this afternoon"),
    ("heat", "severe", "Temperatures above 35 °C for the next two days"),
    ("rain", "minor", "Heavy showers may flood low-lying roads"),
    ("frost", "moderate", "Ground frost overnight"),
)


def _base_temperature(city: str) -> float:
    known = _CITIES.get(city.lower())
    if known is not None:
        return known
    # Any city works: unknown ones get a stable climate from their name.
    return -5.0 + (zlib.crc32(city.lower().encode()) % 300) / 10


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _bearer(headers: Mapping[str, str]) -> str | None:
    header = headers.get("Authorization", "")
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


class _TokenBucket:
    """The weather API's quota, as a mock guard: 429 with Retry-After once it is spent."""

    def __init__(self, clock: Clock, *, rate: float, burst: int, prefix: str) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._prefix = prefix
        self._tokens = float(burst)
        self._updated = clock.monotonic()

    def check(self, request: MockRequest) -> Reply | None:
        if not request.path.startswith(self._prefix):
            return None
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        wait = (1 - self._tokens) / self._rate
        return Reply(
            429,
            json={
                "error": "rate_limited",
                "message": f"at most {self._rate:g} requests per second",
            },
            # Whole seconds, rounded up, as most providers send it (RFC 9110 section 10.2.3).
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


class _SandboxAPI(MockAPI):
    """The mock, counting what it answered and keeping only the tail of its journals."""

    def __init__(self, *, seed: int | str, clock: Clock) -> None:
        super().__init__(seed=seed, clock=clock, strict=False)
        self.counts: Counter[str] = Counter()

    async def handle(self, request: MockRequest) -> Outcome:
        outcome = await super().handle(request)
        counts = self.counts
        counts["requests"] += 1
        if outcome.status == 429:
            counts["rate_limited"] += 1
        elif outcome.status >= 500:
            counts["server_errors"] += 1
        elif request.path == _TOKEN_PATH and outcome.status == 200:
            counts["tokens_issued"] += 1
        if len(self.requests) > 2 * _JOURNAL_KEEP:
            del self.requests[:-_JOURNAL_KEEP]
            del self.fault_log[:-_JOURNAL_KEEP]
            del self.unmatched[:-_JOURNAL_KEEP]
            for stub in self.stubs:
                del stub.calls[:-_JOURNAL_KEEP]
        return outcome


class DemoSandbox:
    """A weather-like provider on 127.0.0.1 for `tether serve --demo`, reproducible by seed.

    Serves `POST /oauth/token` (client credentials, 60 s tokens), `GET /v1/current?city=` and
    `GET /v1/forecast?city=` (Bearer required, 5 requests/s with 429 and Retry-After past it,
    about 10 % seeded 503s, some latency), `GET /ws/devices` (a WebSocket sending a reading
    every second after `{"op": "subscribe", "channel": "readings"}`) and `POST /receiver` (the
    hub's outbox deliveries, Standard Webhooks signatures verified). `send_webhooks()` posts
    signed `alert.created` / `alert.resolved` events to the hub's inbox.

    Args:
        seed: Seeds the faults, the weather, the readings, the tokens and the alerts: the same
            seed and the same requests give the same answers.
        clock: Time for the quota, token expiry, the weather and the cadence of readings and
            alerts (tests pass a `tether.testing.FakeClock`).
        port: The loopback port; 0 picks a free one.
    """

    def __init__(self, seed: int = 0, *, clock: Clock | None = None, port: int = 0) -> None:
        self.seed = seed
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.api = _SandboxAPI(seed=seed, clock=self.clock)
        self.oauth: OAuth2Server = self.api.oauth2(
            token_path=_TOKEN_PATH,
            clients={DEMO_CLIENT_ID: DEMO_CLIENT_SECRET},
            access_ttl=ACCESS_TOKEN_TTL,
        )
        self.oauth.protect(_API_PREFIX)
        self.api.add_guard(
            _TokenBucket(self.clock, rate=RATE_PER_SECOND, burst=RATE_BURST, prefix=_API_PREFIX)
        )
        api_paths = re.compile(r"/v1/.+")
        self.api.inject(
            ServerError(503),
            method="GET",
            path=api_paths,
            schedule=Schedule(probability=FLAKY_503),
            name="flaky 503",
        )
        self.api.inject(
            Latency(0.02, jitter=0.25),
            method="GET",
            path=api_paths,
            schedule=Schedule(probability=0.3),
            name="slow answer",
        )
        self.api.stub("GET", "/", handler=self._index, name="index")
        self.api.stub("GET", "/v1/current", handler=self._current, name="current weather")
        self.api.stub("GET", "/v1/forecast", handler=self._forecast, name="forecast")
        self.api.stub("POST", "/receiver", handler=self._receive, name="outbox receiver")
        self._server = MockServer(
            self.api, port=port, routes=[web.get("/ws/devices", self._devices)]
        )
        self._running = False
        self._sockets: set[web.WebSocketResponse] = set()
        self._alert_tasks: list[tuple[asyncio.Task[None], WebhookSender]] = []
        self._counts = self.api.counts
        #: The latest outbox deliveries /receiver accepted: {"msg_id", "type"}.
        self.received: deque[dict[str, str | None]] = deque(maxlen=_RECEIVED_KEEP)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> DemoSandbox:
        """Bind 127.0.0.1 and start serving."""
        await self._server.start()
        self._running = True
        return self

    async def aclose(self) -> None:
        """Stop the alert senders, close the WebSockets and the server."""
        tasks, self._alert_tasks = self._alert_tasks, []
        for task, _ in tasks:
            task.cancel()
        for task, sender in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sender.aclose()
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"the sandbox is stopping")
        self._running = False
        await self._server.stop()

    async def __aenter__(self) -> DemoSandbox:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`; a `ConfigError` before `start()`."""
        if not self._running:
            raise ConfigError("the demo sandbox is not running; call start() first")
        return self._server.url

    def stats(self) -> dict[str, int]:
        """What happened so far: requests, 429s, 5xx, tokens, webhooks both ways, readings."""
        keys = (
            "requests",
            "rate_limited",
            "server_errors",
            "tokens_issued",
            "webhooks_sent",
            "webhooks_failed",
            "webhooks_received",
            "webhooks_rejected",
            "readings_sent",
        )
        return {key: self._counts[key] for key in keys}

    # -- the demo config ----------------------------------------------------------------------

    def config(self, hub_url: str) -> str:
        """The demo's tether.toml: the `weather` integration on this sandbox, two pollers, the
        device stream and an outbox endpoint back to /receiver, for a hub at `hub_url`."""
        return _hub_toml(hub_url) + self._integration_toml() + self._serve_toml()

    def _integration_toml(self) -> str:
        base = self.base_url
        return f"""
# The bundled sandbox: a weather-like API on loopback. Every secret in this file is a
# demo-only constant published in tether's source: never reuse one.
[integrations.weather]
description = "tether's demo sandbox: rate limited (5 requests/s) and flaky (about 10 % 503)"
base_url = {_toml(base)}
timeout = {{ total = 30, attempt = 5 }}
retry = {{ attempts = 4, max_retry_after = 30 }}
rate_limit = "5/s"
breaker = true

[integrations.weather.auth]
type = "oauth2"
grant = "client_credentials"
token_url = {_toml(base + _TOKEN_PATH)}
client_id = {_toml(DEMO_CLIENT_ID)}
client_secret = {_toml(DEMO_CLIENT_SECRET)}

[integrations.weather.endpoints.current]
path = "/v1/current"

[integrations.weather.endpoints.forecast]
path = "/v1/forecast"

[integrations.weather.webhooks.alerts]
scheme = "standard"
secret = {_toml(DEMO_ALERTS_SECRET)}
"""

    def _serve_toml(self) -> str:
        ws_url = "ws" + self.base_url.removeprefix("http") + "/ws/devices"
        return f"""
[pollers.oslo]
integration = "weather"
endpoint = "current"
args = {{ city = "Oslo" }}
interval = 10

[pollers.lisbon]
integration = "weather"
endpoint = "current"
args = {{ city = "Lisbon" }}
interval = 10

[streams.devices]
integration = "weather"
url = {_toml(ws_url)}
kind = "websocket"
subscribe = [{{ op = "subscribe", channel = "readings" }}]
event_type = "device.reading"

[outbox]
allow_private = ["127.0.0.0/8"]

[outbox.endpoints.sandbox]
url = {_toml(self.base_url + "/receiver")}
event_types = ["webhook.*", "poller.*"]
secret = {_toml(DEMO_RECEIVER_SECRET)}
"""

    # -- webhooks to the hub ------------------------------------------------------------------

    async def send_webhooks(self, target_url: str, *, every: float = 5.0) -> None:
        """Start posting signed `alert.created` / `alert.resolved` events to `target_url`
        (the hub's inbox) every `every` seconds; a delivery that fails is sent again, with the
        same id, before the next event, as providers retry."""
        number: object = every
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not math.isfinite(number)
            or number <= 0
        ):
            raise ConfigError(f"every must be a positive number of seconds, got {every!r}")
        parts = urlsplit(target_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"target_url must be an absolute http(s) URL, not {target_url!r}")
        sender = WebhookSender(
            target_url,
            scheme="standard",
            secret=DEMO_ALERTS_SECRET,
            clock=self.clock,
            seed=f"{self.seed}/alerts/{len(self._alert_tasks)}",
        )
        task = asyncio.create_task(self._post_alerts(sender, float(every)), name="demo alerts")
        self._alert_tasks.append((task, sender))

    async def _post_alerts(self, sender: WebhookSender, every: float) -> None:
        chooser = random.Random(f"{self.seed}/alerts")
        retry: Delivery | None = None
        number = 0
        try:
            while True:
                if retry is not None:
                    delivery = await sender.duplicate(retry)
                else:
                    delivery = await sender.send(self._alert(number, chooser))
                    number += 1
                self._counts["webhooks_sent"] += 1
                if delivery.accepted:
                    retry = None
                else:
                    self._counts["webhooks_failed"] += 1
                    retry = delivery
                    logger.info(
                        "demo alert %s not accepted (%s); sending it again",
                        delivery.msg_id,
                        delivery.status or delivery.error,
                    )
                del sender.deliveries[:-_RECEIVED_KEEP]
                await self.clock.sleep(every)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the demo's alert sender stopped")

    def _alert(self, number: int, chooser: random.Random) -> dict[str, Any]:
        # Alerts overlap: 1 created, 2 created, 1 resolved, 3 created, 2 resolved, ... so the
        # inbox sees both types interleaved.
        resolved = number > 0 and number % 2 == 0
        alert_number = number // 2 if resolved else (number + 1) // 2 + 1
        kind, severity, message = _ALERTS[alert_number % len(_ALERTS)]
        cities = sorted(_CITIES)
        city = cities[(alert_number * 3) % len(cities)].title()
        data: dict[str, Any] = {
            "alert_id": f"alert_{alert_number:04d}",
            "city": city,
            "kind": kind,
            "severity": severity,
        }
        if resolved:
            event_type = "alert.resolved"
        else:
            event_type = "alert.created"
            data["message"] = message
            data["confidence"] = round(chooser.uniform(0.6, 0.99), 2)
        return {"type": event_type, "timestamp": _iso(self.clock.time()), "data": data}

    # -- HTTP handlers ------------------------------------------------------------------------

    def _index(self, _: MockRequest, __: Mapping[str, str]) -> Reply:
        return Reply(
            json={
                "name": "tether demo sandbox",
                "endpoints": {
                    "POST /oauth/token": "OAuth2 client credentials; tokens live 60 s",
                    "GET /v1/current?city=": "current weather (Bearer, 5 requests/s)",
                    "GET /v1/forecast?city=&days=": "daily forecast (Bearer, 5 requests/s)",
                    "GET /ws/devices": "WebSocket; send {op: subscribe, channel: readings}",
                    "POST /receiver": "signed Standard Webhooks deliveries",
                },
            }
        )

    def _city(self, request: MockRequest) -> str | Reply:
        city = request.query.get("city", "").strip()
        if not city or len(city) > 80:
            return Reply(
                400, json={"error": "invalid_request", "message": "city is required (1-80 chars)"}
            )
        return city

    def _current(self, request: MockRequest, _: Mapping[str, str]) -> Reply:
        city = self._city(request)
        if isinstance(city, Reply):
            return city
        now = self.clock.time()
        tick = int(now // OBSERVATION_PERIOD)
        observed = tick * OBSERVATION_PERIOD
        draw = random.Random(f"{self.seed}/weather/{city.lower()}/{tick}")
        # A slow swing over the hour plus noise per observation: values move between polls
        # and stay put within one observation.
        swing = math.sin(2 * math.pi * (observed % 3600) / 3600)
        temperature = _base_temperature(city) + 3 * swing + draw.uniform(-0.6, 0.6)
        return Reply(
            json={
                "city": city.title(),
                "observed_at": _iso(observed),
                "temperature": round(temperature, 1),
                "feels_like": round(temperature - draw.uniform(0, 3), 1),
                "humidity": int(60 + 20 * swing + draw.uniform(-8, 8)),
                "wind_speed": round(draw.uniform(0.5, 12), 1),
                "condition": draw.choice(_CONDITIONS),
                "units": "metric",
            }
        )

    def _forecast(self, request: MockRequest, _: Mapping[str, str]) -> Reply:
        city = self._city(request)
        if isinstance(city, Reply):
            return city
        raw_days = request.query.get("days", "5")
        if not raw_days.isdigit() or not 1 <= int(raw_days) <= 7:
            return Reply(400, json={"error": "invalid_request", "message": "days must be 1-7"})
        today = datetime.fromtimestamp(self.clock.time(), UTC).date()
        base = _base_temperature(city)
        days = []
        for offset in range(int(raw_days)):
            date = today + timedelta(days=offset)
            draw = random.Random(f"{self.seed}/forecast/{city.lower()}/{date.isoformat()}")
            low = base + draw.uniform(-6, 0)
            days.append(
                {
                    "date": date.isoformat(),
                    "min": round(low, 1),
                    "max": round(low + draw.uniform(3, 9), 1),
                    "condition": draw.choice(_CONDITIONS),
                    "precipitation_chance": round(draw.uniform(0, 1), 2),
                }
            )
        return Reply(json={"city": city.title(), "units": "metric", "days": days})

    def _receive(self, request: MockRequest, _: Mapping[str, str]) -> Reply:
        try:
            result = verify(
                "standard",
                secret=DEMO_RECEIVER_SECRET,
                headers=dict(request.headers),
                body=request.body,
                now=self.clock.time(),
            )
        except WebhookVerificationError as exc:
            self._counts["webhooks_rejected"] += 1
            return Reply(401, json={"error": "invalid signature", "reason": exc.reason.value})
        self._counts["webhooks_received"] += 1
        event_type: str | None = None
        with contextlib.suppress(ValueError):
            body = jsonlib.loads(request.body)
            if isinstance(body, dict) and isinstance(body.get("type"), str):
                event_type = body["type"]
        self.received.append({"msg_id": result.msg_id, "type": event_type})
        return Reply(204)

    # -- the device WebSocket -----------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        token = _bearer(request.headers)
        if token is None:
            return False
        record = self.oauth.token(token)
        return (
            record is not None and record.kind == "access" and record.active(self.clock.monotonic())
        )

    async def _devices(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response(
                {"error": "invalid_token", "error_description": "a live access token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="sandbox", error="invalid_token"'},
            )
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        readings: asyncio.Task[None] | None = None
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                try:
                    command = jsonlib.loads(message.data)
                except ValueError:
                    continue
                if not isinstance(command, dict):
                    continue
                op, channel = command.get("op"), command.get("channel")
                if channel != "readings":
                    await ws.send_json({"type": "error", "error": f"unknown channel {channel!r}"})
                elif op == "subscribe" and readings is None:
                    readings = asyncio.create_task(self._send_readings(ws))
                elif op == "unsubscribe" and readings is not None:
                    readings.cancel()
                    readings = None
        finally:
            self._sockets.discard(ws)
            if readings is not None:
                readings.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await readings
        return ws

    async def _send_readings(self, ws: web.WebSocketResponse) -> None:
        count = 0
        while not ws.closed:
            device = _DEVICES[count % len(_DEVICES)]
            now = self.clock.time()
            reading = {
                "device": device,
                "temperature": self._device_temperature(device, now),
                "at": round(now, 3),
            }
            try:
                await ws.send_json(reading)
            except (ConnectionError, RuntimeError):
                return
            self._counts["readings_sent"] += 1
            count += 1
            await self.clock.sleep(READING_INTERVAL)

    def _device_temperature(self, device: str, now: float) -> float:
        draw = random.Random(f"{self.seed}/device/{device}/{int(now)}")
        base = 14.0 if device == "cellar" else 22.0
        return round(
            base + 2 * math.sin(2 * math.pi * (now % 600) / 600) + draw.uniform(-0.3, 0.3), 2
        )

    def __repr__(self) -> str:
        where = self._server.url if self._running else "stopped"
        return f"<DemoSandbox seed={self.seed} {where}>"


def _toml(value: str) -> str:
    # A JSON string is a valid TOML basic string for everything written here.
    return jsonlib.dumps(value)


def _hub_toml(hub_url: str) -> str:
    parts = urlsplit(hub_url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ConfigError(f"hub_url must be like http://127.0.0.1:8765, not {hub_url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"""\
# tether serve --demo: the hub and everything it talks to run on this machine.

[hub]
listen = {_toml(f"{host}:{port}")}
"""
