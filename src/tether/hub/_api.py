"""The hub's HTTP API: JSON routes, live events over SSE, Prometheus metrics, the dashboard,
and the webhook inbox's routes, in one Starlette app.

When a token is set, every route except `/health` and the inbox's (which verify signatures
instead) needs `Authorization: Bearer <token>` or the `tether_hub` cookie, which
`GET /?token=<token>` sets. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tether.hub._runtime import Hub
from tether.hub._store import MAX_EVENTS, HubEvent
from tether.stores import EventStatus, StoreError
from tether.webhooks import DeliveryStatus
from tether.webhooks._outbox_model import DeliveryFilter

__all__ = ["COOKIE", "build_app"]

logger = logging.getLogger("tether.hub.api")

#: The dashboard's session cookie: the token itself, HttpOnly and SameSite=Strict.
COOKIE = "tether_hub"
#: Seconds between SSE comment lines that keep proxies from closing an idle stream.
HEARTBEAT = 15.0
#: How often an SSE stream looks at the store for events other hubs wrote.
TAIL_INTERVAL = 1.0
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tether hub</title></head>
<body><h1>tether hub</h1>
<p>The dashboard is not installed. The API answers at
<a href="/integrations">/integrations</a>, <a href="/data">/data</a>,
<a href="/events">/events</a>, <a href="/inbox">/inbox</a>, <a href="/outbox">/outbox</a>,
<a href="/dead">/dead</a> and <a href="/metrics">/metrics</a>.</p></body></html>
"""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _BadQuery(Exception):
    """A query parameter that does not parse: 400 with the reason."""


def _int(request: Request, name: str, default: int | None, *, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadQuery(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise _BadQuery(f"{name} must be between {low} and {high}")
    return value


def _safe_url(url: str) -> str:
    # An endpoint URL may carry a credential in its query string; show where it goes only.
    parts = urlsplit(url)
    query = "[REDACTED]" if parts.query else ""
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _sse(event: HubEvent) -> bytes:
    data = json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


# -- auth and the inbox's routes -------------------------------------------------------------------


class _Gate:
    """Sends inbox paths to the inbox and checks the token on everything but /health."""

    def __init__(self, app: ASGIApp, hub: Hub, token: str | None) -> None:
        self.app = app
        self.hub = hub
        self.token = token.encode() if token else None

    def _valid(self, given: str | None) -> bool:
        if given is None or self.token is None:
            return False
        return hmac.compare_digest(given.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        inbox = self.hub.inbox
        if inbox is not None:
            for route in inbox.routes:
                if route.path == path:
                    await route.app(scope, receive, send)
                    return
        if self.token is None or path == "/health":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if path == "/" and "token" in request.query_params:
            if not self._valid(request.query_params["token"]):
                await _error(401, "wrong token")(scope, receive, send)
                return
            # The token leaves the address bar (and the history) for a cookie scripts cannot read.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(
                COOKIE, request.query_params["token"], httponly=True, samesite="strict", path="/"
            )
            await response(scope, receive, send)
            return
        headers = Headers(scope=scope)
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        given = value.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE)
        if not self._valid(given):
            await _error(401, "a valid token is required (Authorization: Bearer ...)")(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


# -- metrics ------------------------------------------------------------------------------------


class _HubCollector:
    """Prometheus metrics read from the hub at scrape time (gathered just before)."""

    def __init__(self) -> None:
        self.integrations: list[dict[str, Any]] = []
        self.outcomes: dict[str, dict[str, int]] = {}
        self.pollers: list[dict[str, Any]] = []
        self.events: dict[str, int] = {}
        self.inbox: dict[str, int] = {}
        self.outbox: dict[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "tether_hub_requests",
            "Attempts of each integration's client, by outcome.",
            labels=["integration", "outcome"],
        )
        for name, outcomes in self.outcomes.items():
            for outcome, count in outcomes.items():
                requests.add_metric([name, outcome], count)
        breaker = GaugeMetricFamily(
            "tether_hub_breaker_state",
            "Circuit breaker state: 0 closed, 1 half open, 2 open.",
            labels=["integration"],
        )
        available = GaugeMetricFamily(
            "tether_hub_rate_limit_available",
            "Requests the rate limiter would let through now.",
            labels=["integration"],
        )
        for row in self.integrations:
            if row["breaker"] is not None:
                breaker.add_metric([row["name"]], _BREAKER_VALUE.get(row["breaker"], 0.0))
            if row["rate_limit"] is not None:
                available.add_metric([row["name"]], row["rate_limit"]["available"])
        age = GaugeMetricFamily(
            "tether_hub_poll_age_seconds",
            "Seconds since the poller's last successful poll.",
            labels=["poller"],
        )
        for poller in self.pollers:
            if poller["age"] is not None:
                age.add_metric([poller["name"]], poller["age"])
        events = CounterMetricFamily(
            "tether_hub_events",
            "Hub events this process published, by the first part of their type.",
            labels=["type_prefix"],
        )
        for prefix, count in self.events.items():
            events.add_metric([prefix], count)
        inbox = GaugeMetricFamily(
            "tether_hub_inbox_events", "Inbox events by status.", labels=["status"]
        )
        for status, count in self.inbox.items():
            inbox.add_metric([status], count)
        outbox = GaugeMetricFamily(
            "tether_hub_outbox_deliveries", "Outbox deliveries by status.", labels=["status"]
        )
        for status, count in self.outbox.items():
            outbox.add_metric([status], count)
        return [requests, breaker, available, age, events, inbox, outbox]


# -- the app ------------------------------------------------------------------------------------


def _dashboard() -> str:
    resource = importlib.resources.files("tether.hub") / "_dashboard.html"
    try:
        return resource.read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return _PLACEHOLDER


class _Api:
    """The route handlers, over one hub."""

    def __init__(self, hub: Hub, heartbeat: float) -> None:
        self.hub = hub
        self.heartbeat = heartbeat
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = _HubCollector()
        self.registry.register(self.collector)
        self.page = _dashboard()

    async def health(self, request: Request) -> Response:
        del request
        if self.hub.stopping:
            return JSONResponse({"status": "unavailable", "reason": "stopping"}, status_code=503)
        try:
            await asyncio.wait_for(self.hub.store.ping(), timeout=5.0)
        except (StoreError, TimeoutError) as exc:
            return JSONResponse(
                {"status": "unavailable", "reason": f"store: {exc}"}, status_code=503
            )
        return JSONResponse(
            {
                "status": "ok",
                "hub_id": self.hub.hub_id,
                "version": self.hub.version,
                "uptime": time.time() - (self.hub.started_at or time.time()),
                "store": self.hub.store_kind,
                "redis": self.hub.redis_url is not None,
            }
        )

    async def integrations(self, request: Request) -> Response:
        del request
        return JSONResponse({"integrations": await self.hub.integration_rows()})

    async def data(self, request: Request) -> Response:
        del request
        return JSONResponse({"pollers": await self.hub.poller_rows()})

    async def data_one(self, request: Request) -> Response:
        name = request.path_params["poller"]
        for row in await self.hub.poller_rows(with_data=True):
            if row["name"] == name:
                return JSONResponse(row)
        return _error(404, f"unknown poller {name!r}")

    async def events(self, request: Request) -> Response:
        try:
            since = _int(request, "since", None, low=0, high=2**62)
            limit = _int(request, "limit", 100, low=1, high=MAX_EVENTS)
        except _BadQuery as exc:
            return _error(400, str(exc))
        prefix = request.query_params.get("type") or None
        if "text/event-stream" in request.headers.get("accept", ""):
            last = request.headers.get("last-event-id", "").strip()
            if last.isdigit():
                since = int(last)
            return StreamingResponse(
                self._stream(since, prefix),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )
        found = await self.hub.store.events(since=since, type_prefix=prefix, limit=limit or 100)
        return JSONResponse({"events": [e.to_json() for e in found]})

    async def _stream(self, since: int | None, prefix: str | None) -> AsyncIterator[bytes]:
        # Cluster-wide: the store is the source; this hub's own events only wake us sooner.
        cursor = since if since is not None else await self.hub.store.last_id()
        yield b": connected\n\n"
        next_beat = time.monotonic() + self.heartbeat
        while not self.hub.stopping:
            try:
                found = await self.hub.store.events(
                    since=cursor, type_prefix=prefix, limit=MAX_EVENTS
                )
            except StoreError as exc:
                logger.warning("SSE: cannot read events: %s", exc)
                found = []
            for event in found:
                cursor = event.id
                yield _sse(event)
            if found and len(found) == MAX_EVENTS:
                continue
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.heartbeat
                yield b": heartbeat\n\n"
            await self.hub.wait_for_events(min(TAIL_INTERVAL, max(0.0, next_beat - now)))

    async def inbox(self, request: Request) -> Response:
        try:
            limit = _int(request, "limit", 50, low=1, high=1000)
            raw_status = request.query_params.get("status") or None
            status = EventStatus(raw_status) if raw_status else None
        except (_BadQuery, ValueError) as exc:
            message = str(exc) if isinstance(exc, _BadQuery) else "unknown status"
            return _error(400, message)
        found = await self.hub.inbox_store.list(
            source=request.query_params.get("source") or None, status=status, limit=limit or 50
        )
        return JSONResponse(
            {
                "events": [
                    {
                        "id": e.id,
                        "source": e.source,
                        "event_id": e.event_id,
                        "event_type": e.event_type,
                        "status": str(e.status),
                        "received_at": e.received_at,
                        "attempts": e.attempts,
                        "last_error": e.last_error,
                    }
                    for e in found
                ]
            }
        )

    async def outbox(self, request: Request) -> Response:
        try:
            limit = _int(request, "limit", 50, low=1, high=1000)
            raw_status = request.query_params.get("status") or None
            status = DeliveryStatus(raw_status) if raw_status else None
        except (_BadQuery, ValueError) as exc:
            message = str(exc) if isinstance(exc, _BadQuery) else "unknown status"
            return _error(400, message)
        endpoints = await self.hub.outbox.endpoints()
        deliveries = await self.hub.outbox.deliveries(
            status=status, endpoint_id=request.query_params.get("endpoint") or None,
            limit=limit or 50,
        )  # fmt: skip
        return JSONResponse(
            {
                "endpoints": [
                    {
                        "id": e.id,
                        "url": _safe_url(e.url),
                        "event_types": list(e.event_types),
                        "disabled": not e.enabled,
                        "disabled_reason": e.disabled_reason,
                    }
                    for e in endpoints
                ],
                "deliveries": [
                    {
                        "id": d.id,
                        "msg_id": d.msg_id,
                        "endpoint_id": d.endpoint_id,
                        "event_type": d.event_type,
                        "status": str(d.status),
                        "attempts": d.attempts,
                        "next_attempt_at": d.next_attempt_at,
                        "last_status": d.last_status,
                    }
                    for d in deliveries
                ],
            }
        )

    async def dead(self, request: Request) -> Response:
        del request
        rows: list[dict[str, Any]] = [
            {
                "kind": "inbox",
                "id": e.id,
                "name": e.source,
                "event_type": e.event_type,
                "attempts": e.attempts,
                "last_error": e.last_error,
                "at": e.completed_at if e.completed_at is not None else e.received_at,
            }
            for e in await self.hub.inbox_store.list(status=EventStatus.DEAD, limit=500)
        ]
        rows.extend(
            {
                "kind": "outbox",
                "id": d.id,
                "name": d.endpoint_id,
                "event_type": d.event_type,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "at": d.completed_at if d.completed_at is not None else d.created_at,
            }
            for d in await self.hub.outbox.dead(limit=500)
        )
        rows.sort(key=lambda row: row["at"] or 0.0, reverse=True)
        return JSONResponse({"dead": rows})

    async def replay(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        raw_id = request.path_params["id"]
        if not raw_id.isdigit():
            return _error(404, f"no {kind} event {raw_id!r}")
        item_id = int(raw_id)
        if kind == "inbox":
            event = await self.hub.inbox_store.get(item_id)
            if event is None:
                return _error(404, f"no inbox event {item_id}")
            if event.status != EventStatus.DEAD:
                return _error(409, f"inbox event {item_id} is {event.status}, not dead")
            await self.hub.inbox_store.replay(ids=[item_id], now=time.time())
            if self.hub.inbox is not None and self.hub.inbox.dispatcher is not None:
                self.hub.inbox.dispatcher.wake()
            return JSONResponse({"replayed": True}, status_code=202)
        if kind == "outbox":
            found = await self.hub.outbox_store.deliveries(DeliveryFilter(ids=(item_id,)), limit=1)
            if not found:
                return _error(404, f"no outbox delivery {item_id}")
            if found[0].status != DeliveryStatus.DEAD:
                return _error(409, f"outbox delivery {item_id} is {found[0].status}, not dead")
            if not await self.hub.outbox.retry(item_id):
                return _error(409, f"outbox delivery {item_id} cannot be replayed now")
            if self.hub.worker is not None:
                self.hub.worker.wake()
            return JSONResponse({"replayed": True}, status_code=202)
        return _error(404, f"unknown kind {kind!r}: inbox or outbox")

    async def metrics(self, request: Request) -> Response:
        del request
        self.collector.integrations = await self.hub.integration_rows()
        self.collector.outcomes = {
            name: dict(runtime.health.outcomes) for name, runtime in self.hub.integrations.items()
        }
        self.collector.pollers = await self.hub.poller_rows()
        self.collector.events = dict(self.hub.events_total)
        self.collector.inbox = {str(k): v for k, v in (await self.hub.inbox_store.counts()).items()}
        self.collector.outbox = {str(k): v for k, v in (await self.hub.outbox.counts()).items()}
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def dashboard(self, request: Request) -> Response:
        del request
        return HTMLResponse(self.page, headers={"Cache-Control": "no-store"})


def build_app(hub: Hub, *, token: str | None = None, heartbeat: float = HEARTBEAT) -> Starlette:
    """The hub's HTTP API as a Starlette app; the caller starts and stops `hub`.

    Args:
        hub: a started `Hub`.
        token: required on every route but /health and the inbox's; None for none (loopback).
        heartbeat: seconds between SSE heartbeat comments.
    """
    api = _Api(hub, heartbeat)
    handlers: list[tuple[str, Callable[[Request], Any], list[str]]] = [
        ("/", api.dashboard, ["GET"]),
        ("/health", api.health, ["GET"]),
        ("/integrations", api.integrations, ["GET"]),
        ("/data", api.data, ["GET"]),
        ("/data/{poller}", api.data_one, ["GET"]),
        ("/events", api.events, ["GET"]),
        ("/inbox", api.inbox, ["GET"]),
        ("/outbox", api.outbox, ["GET"]),
        ("/dead", api.dead, ["GET"]),
        ("/dead/{kind}/{id}/replay", api.replay, ["POST"]),
        ("/metrics", api.metrics, ["GET"]),
    ]
    app = Starlette(routes=[Route(path, fn, methods=methods) for path, fn, methods in handlers])
    app.add_middleware(_Gate, hub=hub, token=token)
    app.state.hub = hub
    return app
