"""`Hub`: runs a tether.toml's pollers, webhook inbox, outbox and streams, and its event log.

One hub, or several sharing a PostgreSQL store (and Redis for rate limits and tokens):

- each poller runs inside a `tether.Coordinator` only while this hub holds the lease
  `poller:<name>`; the holder stores every poll's outcome as the poller's snapshot (fenced by
  the lease, so a holder that stalled and lost the lease cannot overwrite its successor), and
  every hub serves the stored snapshot;
- the inbox and its dispatcher share the store with every other hub: a delivery acknowledged by
  any hub is dispatched once, by whichever claims it, into one `webhook.*` hub event;
- events go to the store, then to this process's listeners (SSE), then, when an outbox
  endpoint's `event_types` match, to the outbox; only the process that produced an event
  enqueues it, so a cluster enqueues each once;
- streams run under the lease `stream:<name>`, so one hub follows each feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from pydantic_core import to_jsonable_python

from tether._client import Client
from tether._coordinator import Coordinator
from tether._core._pagination import MISSING, get_path
from tether._core._polling import is_available
from tether._errors import ConfigError
from tether._flow import Breaker, RateLimiter, rate_limiters
from tether._version import __version__
from tether.hub._config import EndpointSettings, HubSettings, hub_settings
from tether.hub._status import IntegrationHealth, PollerView, Status, error_info
from tether.hub._store import (
    HubEvent,
    HubStore,
    PollerSnapshot,
    PostgresHubStore,
    SQLiteHubStore,
    split_store_location,
)
from tether.hub._trace import Tracer
from tether.spec import Integration, Problem, Spec, SpecError
from tether.spec._model import PollerSpec, StreamSpec
from tether.stores import (
    HeldLease,
    InboxEvent,
    InboxStore,
    LeaseStore,
    StoreError,
    open_inbox_store,
    open_lease_store,
)
from tether.webhooks import (
    DispatchPolicy,
    EgressPolicy,
    Endpoint,
    Inbox,
    Outbox,
    OutboxEvent,
    OutboxPolicy,
    OutboxStore,
    OutboxWorker,
    Source,
    open_outbox_store,
)

__all__ = ["Hub"]

logger = logging.getLogger("tether.hub")

#: Streams hold their lease this long and renew it every third of it.
STREAM_LEASE_TTL = 15.0
#: How often the hub recomputes statuses (and emits status events) and looks for new events
#: other hubs wrote.
HOUSEKEEPING_INTERVAL = 1.0
PURGE_INTERVAL = 300.0
#: Why an outbox endpoint that left the config was disabled (and so may be enabled again).
REMOVED = "removed from the config"
_TYPE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_TYPE_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


#: Integrations (unchanged ones kept), those newly built, and the inbox, of a spec.
_Resolved = tuple[dict[str, "_IntegrationRuntime"], list["_IntegrationRuntime"], Inbox | None]


def poller_ttl(interval: float) -> float:
    """A poller's lease: long enough to ride out one slow poll, short enough to hand over."""
    return max(2 * interval + 5.0, 15.0)


def _matches(event_type: str, filters: tuple[str, ...]) -> bool:
    # The outbox's own rule: equal, or a prefix ending in '*'; '*' or no filters match all.
    if not filters:
        return True
    for item in filters:
        if item in ("*", event_type):
            return True
        if item.endswith("*") and event_type.startswith(item[:-1]):
            return True
    return False


def stream_event_type(template: str, message: Any) -> str:
    """`device.{kind}` filled from the message; a field that is missing becomes empty."""

    def fill(match: re.Match[str]) -> str:
        value = get_path(message, match.group(1))
        return "" if value is None or value is MISSING else _TYPE_UNSAFE.sub("_", str(value))[:100]

    return _TYPE_FIELD.sub(fill, template)


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(max(0.0, seconds))


# -- integrations -------------------------------------------------------------------------------


class _IntegrationRuntime:
    """One integration's resolved spec, its client and the health tracker on that client."""

    def __init__(self, hub: Hub, integration: Integration) -> None:
        self.name = integration.name
        self.integration = integration
        self.spec = integration.spec
        redactor = integration.redactor()
        self.health = IntegrationHealth(integration.name, redact=redactor.text)
        self.client: Client | None = None
        self.auth: Any = None
        self.problems = integration.problems
        self._closers: list[Callable[[], Awaitable[None]]] = []
        if self.problems:
            return
        options = integration.client_options(**self.health.hooks())
        self.auth = options.get("auth")
        if hub.redis_url is not None:
            self._share(hub.redis_url, options)
        self.health.has_breaker = options.get("breaker") is not None
        base_url = options.pop("base_url", integration.base_url)
        self.client = Client(base_url, **options)
        self.health.client = self.client

    def _share(self, redis_url: str, options: dict[str, Any]) -> None:
        """Rate limits, server advice, breaker reports and OAuth2 tokens kept in Redis, so every
        hub spends one quota, waits out one Retry-After, and sees the others' open circuits."""
        from tether.distributed import (  # noqa: PLC0415
            BreakerGossip,
            RedisAdviceStore,
            RedisRateLimiter,
            RedisTokenStore,
        )

        advice = RedisAdviceStore(redis=redis_url)
        self._closers.append(advice.aclose)
        options["shared_advice"] = advice
        breaker = options.get("breaker")
        if isinstance(breaker, Breaker) and breaker.gossip is None:
            # Advisory: this hub opens on the others' evidence only when a quorum of live hubs
            # report the circuit open, never because one of them does.
            gossip = BreakerGossip(redis=redis_url, name=f"hub:{self.name}")
            self._closers.append(gossip.aclose)
            options["breaker"] = replace(breaker, gossip=gossip)

        value = options.get("rate_limit")
        if value is not None:
            shared: list[RateLimiter] = []
            for index, limiter in enumerate(rate_limiters(value)):
                if limiter.adaptive or not limiter.limits:
                    shared.append(limiter)  # adaptive limits follow this process's responses
                    continue
                redis_limiter = RedisRateLimiter(
                    *limiter.limits,
                    redis=redis_url,
                    name=f"hub:{self.name}:{index}",
                    scope=limiter.scope,
                    paths=limiter.paths,
                    max_wait=limiter.max_wait,
                )
                self._closers.append(redis_limiter.aclose)
                shared.append(redis_limiter)
            options["rate_limit"] = shared
        oauth2 = self.integration.oauth2
        auth_spec = self.spec.auth
        if (
            oauth2 is not None
            and getattr(auth_spec, "token_store", None) is None
            and getattr(auth_spec, "grant", None) == "client_credentials"
        ):
            # Only the in-memory default is replaced: a token store the spec names, and the
            # user's token file of the sign-in grants, are kept.
            # TokenManager reads `store` on every use, so swapping it before the first request
            # gives every hub one token (and one refresh at a time).
            store = RedisTokenStore(redis=redis_url)
            oauth2.store = store
            close = getattr(store, "aclose", None)
            if close is not None:
                self._closers.append(close)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()


# -- pollers ------------------------------------------------------------------------------------


class _Poller:
    """A poller: follows the lease, and while holding it polls through a Coordinator."""

    def __init__(self, hub: Hub, name: str, spec: PollerSpec, runtime: _IntegrationRuntime) -> None:
        self.hub = hub
        self.name = name
        self.spec = spec
        self.runtime = runtime
        self.lease_name = f"poller:{name}"
        self.ttl = poller_ttl(spec.interval)
        self.lease: HeldLease | None = None
        self._valid_until = 0.0
        self.state: PollerSnapshot | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"tether-hub-poller {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def holding(self) -> bool:
        return self.lease is not None and time.monotonic() < self._valid_until

    def available(self, snapshot: PollerSnapshot | None, now: float) -> bool:
        if snapshot is None:
            return False
        age = None if snapshot.last_success is None else max(0.0, now - snapshot.last_success)
        return is_available(
            has_data=snapshot.has_data,
            consecutive_failures=snapshot.consecutive_failures,
            age=age,
            max_failures=self.spec.unavailable_after_failures,
            max_age=self.spec.unavailable_after,
        )

    async def _run(self) -> None:
        hub = self.hub
        # Followers look for a free lease often enough to take over soon after it runs out.
        follow = min(max(self.spec.interval, 1.0), self.ttl / 3)
        while True:
            try:
                lease = await hub.leases.acquire(self.lease_name, hub.hub_id, self.ttl)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: try again, never crash the hub
                logger.warning("poller %s: cannot reach the lease store: %s", self.name, exc)
                await _sleep(follow)
                continue
            if lease is None:
                await _sleep(follow)
                continue
            await self._lead(lease)

    def _took(self, lease: HeldLease) -> None:
        self.lease = lease
        # Our own clock decides when to stop trusting the lease: a margin under its ttl.
        self._valid_until = time.monotonic() + self.ttl * 0.9

    async def _lead(self, lease: HeldLease) -> None:
        hub = self.hub
        self._took(lease)
        logger.info("poller %s: this hub polls it now (fence %d)", self.name, lease.fence)
        coordinator: Coordinator | None = None
        lost = False
        try:
            self.state = await hub.store.snapshot(self.name)
            polled_at = self.state.polled_at if self.state is not None else None
            if polled_at is not None:
                # Taking over mid-interval: the previous holder's poll still counts.
                await _sleep(min(polled_at + self.spec.interval - time.time(), self.spec.interval))
            coordinator = Coordinator(on_auth_failure=self._auth_failed)
            coordinator.endpoint(
                self.name,
                self._fetch,
                interval=self.spec.interval,
                unavailable_after_failures=self.spec.unavailable_after_failures,
                unavailable_after=self.spec.unavailable_after,
            )
            await coordinator.start()
            while True:
                await _sleep(self.ttl / 3)
                try:
                    renewed = await hub.leases.acquire(self.lease_name, hub.hub_id, self.ttl)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("poller %s: cannot renew its lease: %s", self.name, exc)
                    if not self.holding:
                        lost = True
                        return
                    continue
                if renewed is None or renewed.fence != lease.fence:
                    logger.warning("poller %s: lost its lease to another hub", self.name)
                    lost = True
                    return
                lease = renewed
                self._took(lease)
        finally:
            self.lease = None
            if coordinator is not None:
                await coordinator.stop()
            if not lost:
                with contextlib.suppress(Exception):
                    await asyncio.shield(hub.leases.release(lease))

    async def _auth_failed(self, name: str, error: BaseException) -> None:
        logger.error(
            "poller %s: authentication failed (%s); polling stops until the config is reloaded",
            name,
            type(error).__name__,
        )

    async def _fetch(self) -> Any:
        runtime = self.runtime
        client = runtime.client
        if client is None or not self.holding:
            raise ConfigError(f"poller {self.name}: not polling here")
        with self.hub.tracer.span("tether.hub.poll", poller=self.name, integration=runtime.name):
            try:
                raw = await runtime.integration.call(client, self.spec.endpoint, **self.spec.args)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                runtime.health.call_failed(exc)
                await self._record(None, exc)
                raise
        runtime.health.call_succeeded()
        data = to_jsonable_python(raw)
        await self._record(data, None)
        return data

    async def _record(self, data: Any, error: BaseException | None) -> None:
        hub = self.hub
        lease = self.lease
        if lease is None:
            return
        now = time.time()
        previous = self.state
        if error is None:
            snapshot = PollerSnapshot(
                name=self.name,
                data=data,
                has_data=True,
                last_success=now,
                polled_at=now,
                consecutive_failures=0,
                last_error=None,
                holder=hub.hub_id,
                fence=lease.fence,
            )
        else:
            snapshot = PollerSnapshot(
                name=self.name,
                data=previous.data if previous is not None else None,
                has_data=previous.has_data if previous is not None else False,
                last_success=previous.last_success if previous is not None else None,
                polled_at=now,
                consecutive_failures=(previous.consecutive_failures if previous else 0) + 1,
                last_error=error_info(error, self.runtime.health.redact, now),
                holder=hub.hub_id,
                fence=lease.fence,
            )
        try:
            written = await hub.store.put_snapshot(snapshot)
        except StoreError as exc:
            logger.warning("poller %s: cannot store its snapshot: %s", self.name, exc)
            return
        if not written:
            logger.warning("poller %s: a newer lease holder wrote first; not recording", self.name)
            return
        was = self.available(previous, now)
        self.state = snapshot
        changed = error is None and (
            previous is None or not previous.has_data or previous.data != data
        )
        if changed:
            await hub.publish(f"data.{self.name}", self.name, data)
        now_available = self.available(snapshot, now)
        if was != now_available:
            kind = "available" if now_available else "unavailable"
            await hub.publish(
                f"poller.{self.name}.{kind}",
                self.name,
                {
                    "consecutive_failures": snapshot.consecutive_failures,
                    "last_error": snapshot.last_error,
                },
            )
        # Right after the poll, so no status a poll passes through goes unreported.
        try:
            await hub.check_statuses()
        except StoreError as exc:
            logger.warning("cannot read poller snapshots for status: %s", exc)


# -- streams ------------------------------------------------------------------------------------


class _Stream:
    """A WebSocket or SSE feed followed by whichever hub holds `stream:<name>`."""

    def __init__(
        self, hub: Hub, name: str, spec: StreamSpec, runtime: _IntegrationRuntime | None
    ) -> None:
        self.hub = hub
        self.name = name
        self.spec = spec
        self.runtime = runtime
        self.lease_name = f"stream:{name}"
        self.lease: HeldLease | None = None
        self.messages = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"tether-hub-stream {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def url(self) -> str:
        url = self.spec.url
        if url.startswith("/"):
            base = self.runtime.integration.base_url if self.runtime is not None else None
            if not base:
                raise ConfigError(f"stream {self.name}: its integration has no base_url")
            url = base.rstrip("/") + url
        if self.spec.kind == "websocket":
            if url.startswith("http://"):
                url = "ws://" + url[len("http://") :]
            elif url.startswith("https://"):
                url = "wss://" + url[len("https://") :]
        return url

    async def _run(self) -> None:
        hub = self.hub
        while True:
            try:
                lease = await hub.leases.acquire(self.lease_name, hub.hub_id, STREAM_LEASE_TTL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("stream %s: cannot reach the lease store: %s", self.name, exc)
                lease = None
            if lease is None:
                await _sleep(STREAM_LEASE_TTL / 3)
                continue
            self.lease = lease
            follower = asyncio.create_task(self._follow(), name=f"tether-hub-stream-io {self.name}")
            lost = False
            try:
                while not follower.done():
                    done, _ = await asyncio.wait({follower}, timeout=STREAM_LEASE_TTL / 3)
                    if done:
                        break
                    try:
                        renewed = await hub.leases.acquire(
                            self.lease_name, hub.hub_id, STREAM_LEASE_TTL
                        )
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        logger.warning("stream %s: cannot renew its lease: %s", self.name, exc)
                        continue
                    if renewed is None or renewed.fence != lease.fence:
                        logger.warning("stream %s: lost its lease to another hub", self.name)
                        lost = True
                        break
                    lease = renewed
            finally:
                self.lease = None
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await follower
                if not lost:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(hub.leases.release(lease))
            if not lost:
                # The feed ended or failed for good: let another hub (or a later try) have it.
                await _sleep(STREAM_LEASE_TTL / 3)

    async def _follow(self) -> None:
        from tether.streams import SSE, WebSocket  # noqa: PLC0415 - only with streams

        auth = self.runtime.auth if self.runtime is not None else None
        insecure = self.runtime.spec.allow_insecure_http if self.runtime is not None else False
        template = self.spec.event_type or f"stream.{self.name}"
        try:
            if self.spec.kind == "websocket":
                async with WebSocket(self.url(), auth=auth, allow_insecure_http=insecure) as ws:
                    for message in self.spec.subscribe:
                        await ws.subscribe(dict(message))
                    async for item in ws:
                        await self._publish(template, item)
            else:
                async with SSE(self.url(), auth=auth, allow_insecure_http=insecure) as events:
                    async for event in events:
                        try:
                            data: Any = event.json()
                        except ValueError:
                            data = event.data
                        await self._publish(template, data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("stream %s stopped: %s: %s", self.name, type(exc).__name__, exc)

    async def _publish(self, template: str, message: Any) -> None:
        self.messages += 1
        await self.hub.publish(stream_event_type(template, message), self.name, message)


# -- the hub ------------------------------------------------------------------------------------


class Hub:
    """Runs a spec's hub sections. `async with Hub(spec) as hub:`; `await hub.reload(spec)`.

    Args:
        spec: the loaded tether.toml.
        store: overrides `[hub] store` (a SQLite path or a postgresql:// URL, with an optional
            `?schema=` for PostgreSQL).
        redis: overrides `[hub] redis`.
        listen, token: override `[hub] listen` and its token (for the API).
        hub_id: overrides `[hub] hub_id`.
        environ: where `${NAME}` and `{ env = ... }` are read (default: os.environ).
        dispatch_policy, outbox_policy: the inbox dispatcher's and the outbox's policies.
    """

    def __init__(
        self,
        spec: Spec,
        *,
        store: str | None = None,
        redis: str | None = None,
        listen: str | None = None,
        token: str | None = None,
        hub_id: str | None = None,
        environ: Mapping[str, str] | None = None,
        dispatch_policy: DispatchPolicy | None = None,
        outbox_policy: OutboxPolicy | None = None,
    ) -> None:
        self._overrides: dict[str, Any] = {
            "store": store,
            "redis": redis,
            "listen": listen,
            "token": token,
            "environ": environ,
        }
        settings = hub_settings(spec, **self._overrides)
        if hub_id is not None:
            settings = replace(settings, hub_id=hub_id)
        self.spec = spec
        self.settings = settings
        self.hub_id = settings.hub_id
        self.redis_url = settings.redis
        self.version = __version__
        self.tracer = Tracer(enabled=settings.traces)
        # The handler is the hub's own quick write: a short lease lets another hub pick up an
        # event a killed hub had claimed within seconds rather than a minute.
        self.dispatch_policy = dispatch_policy or DispatchPolicy(
            poll_interval=0.5, handler_timeout=10.0, lease=15.0
        )
        self.outbox_policy = outbox_policy or OutboxPolicy(poll_interval=0.5)
        kind, location, schema = split_store_location(settings.store)
        self.store_kind = kind
        self.store: HubStore = (
            PostgresHubStore(location, schema=schema)
            if kind == "postgresql"
            else SQLiteHubStore(location)
        )
        self.inbox_store: InboxStore = open_inbox_store(location, schema=schema)
        self.outbox_store: OutboxStore = open_outbox_store(location, schema=schema)
        self.leases: LeaseStore = open_lease_store(location, schema=schema)
        self.outbox = Outbox(
            self.outbox_store,
            policy=self.outbox_policy,
            egress=EgressPolicy(allow=settings.allow_private),
        )
        self.integrations: dict[str, _IntegrationRuntime] = {}
        self.pollers: dict[str, _Poller] = {}
        self.streams: dict[str, _Stream] = {}
        self.inbox: Inbox | None = None
        self.worker: OutboxWorker | None = None
        self.started_at: float | None = None
        self.stopping = False
        self.events_total: dict[str, int] = {}
        self._statuses: dict[str, Status] = {}
        self._routes: dict[str, tuple[str, ...]] = {}
        self._changed = asyncio.Event()
        self._housekeeper: asyncio.Task[None] | None = None
        self._limiters: dict[str, RateLimiter] = {}
        self._reloading = asyncio.Lock()
        self._started = False

    def __repr__(self) -> str:
        return f"<Hub {self.hub_id!r} store={self.store_kind} pollers={list(self.pollers)}>"

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the stores and start everything the spec describes."""
        if self._started:
            return
        # Resolved before any store is opened: a config that cannot run creates no file.
        resolved = await self._resolve(self.spec, first=True)
        self._started = True
        self.started_at = time.time()
        try:
            await self.store.open()
            await self.inbox_store.open()
            await self.outbox_store.open()
            await self.leases.open()
            await self._apply(self.spec, self.settings, first=True, resolved=resolved)
            self.worker = self.outbox.worker(
                on_event=self._outbox_event,
                rate_limiter=self._shared_limiter if self.redis_url else None,
            )
            await self.worker.start()
        except BaseException:
            await self.stop()
            raise
        self._housekeeper = asyncio.create_task(self._housekeep(), name="tether-hub-housekeeping")
        logger.info(
            "hub %s started: %d integrations, %d pollers, %d streams, %d webhook sources",
            self.hub_id,
            len(self.integrations),
            len(self.pollers),
            len(self.streams),
            len(self.inbox.sources) if self.inbox is not None else 0,
        )

    async def stop(self) -> None:
        """Stop pollers and streams (releasing their leases), let the inbox dispatcher and the
        outbox worker finish what they started, and close the stores."""
        self.stopping = True
        housekeeper, self._housekeeper = self._housekeeper, None
        if housekeeper is not None:
            housekeeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeper
        await asyncio.gather(*(p.stop() for p in self.pollers.values()))
        await asyncio.gather(*(s.stop() for s in self.streams.values()))
        self.pollers.clear()
        self.streams.clear()
        if self.inbox is not None and self.inbox.dispatcher is not None:
            await self.inbox.dispatcher.stop()
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        for runtime in self.integrations.values():
            await runtime.aclose()
        self.integrations.clear()
        for limiter in self._limiters.values():
            close = getattr(limiter, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        for close in (self.inbox_store.close, self.outbox_store.close, self.leases.aclose,
                      self.store.close):  # fmt: skip
            with contextlib.suppress(Exception):
                await close()
        self._started = False

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def reload(self, spec: Spec) -> None:
        """Switch to a new spec: pollers, streams, integrations, outbox endpoints and inbox
        sources that changed are replaced; the rest keep running. The store, Redis, listen
        address and token stay those the hub started with.

        Raises:
            SpecError: the new spec's problems; the old one keeps running.
        """
        settings = hub_settings(spec, **self._overrides)
        settings = replace(settings, hub_id=self.hub_id, store=self.settings.store,
                           redis=self.settings.redis)  # fmt: skip
        async with self._reloading:
            await self._apply(spec, settings, first=False)
            self.spec = spec
            self.settings = settings
        logger.info("hub %s reloaded %s", self.hub_id, spec.file or "the spec")

    async def _apply(
        self, spec: Spec, settings: HubSettings, *, first: bool, resolved: _Resolved | None = None
    ) -> None:
        # Everything is resolved first, so a spec that cannot run changes nothing.
        integrations, built, inbox = resolved or await self._resolve(spec, first=first)
        model = spec.document.model
        try:
            await self._sync_endpoints(settings.endpoints)
        except BaseException:
            for runtime in built:
                await runtime.aclose()
            raise
        self._routes = {e.name: tuple(e.spec.event_types) for e in settings.endpoints}
        old_integrations, self.integrations = self.integrations, integrations
        await self._swap_pollers(model.pollers, integrations)
        await self._swap_streams(model.streams, integrations)
        for name, runtime in old_integrations.items():
            if integrations.get(name) is not runtime:
                await runtime.aclose()
        # The inbox last: the old dispatcher finishes what it holds before the new one runs.
        old_inbox = self.inbox
        if first or _sources_changed(old_inbox, inbox):
            if old_inbox is not None and old_inbox.dispatcher is not None:
                await old_inbox.dispatcher.stop()
            self.inbox = inbox
            if inbox is not None:
                await inbox.start()

    async def _resolve(self, spec: Spec, *, first: bool) -> _Resolved:
        """The integrations (unchanged ones kept), those newly built, and the inbox."""
        model = spec.document.model
        old_model = None if first else self.spec.document.model
        needed = {p.integration for p in model.pollers.values()} | {
            s.integration for s in model.streams.values() if s.integration is not None
        }
        integrations: dict[str, _IntegrationRuntime] = {}
        built: list[_IntegrationRuntime] = []
        problems: list[Problem] = []
        for name in model.integrations:
            current = self.integrations.get(name)
            if (
                current is not None
                and old_model is not None
                and old_model.integrations.get(name) == model.integrations[name]
            ):
                integrations[name] = current
                continue
            runtime = _IntegrationRuntime(self, spec.integration(name))
            built.append(runtime)
            if runtime.problems and name in needed:
                problems.extend(runtime.problems)
            elif runtime.problems:
                reasons = "; ".join(map(str, runtime.problems))
                logger.warning("integration %s cannot be used: %s", name, reasons)
            integrations[name] = runtime
        inbox: Inbox | None = None
        try:
            sources = [
                s for name in model.integrations for s in spec.integration(name).webhook_sources()
            ]
            if sources:
                inbox = Inbox(sources, store=self.inbox_store, policy=self.dispatch_policy)
                for source in inbox.sources:
                    inbox.handlers.add(source.name, "*", self._on_webhook, name="tether-hub")
        except SpecError as exc:
            problems.extend(exc.problems)
        except ConfigError as exc:
            problems.append(Problem(str(exc), key="webhooks"))
        if problems:
            for runtime in built:
                await runtime.aclose()
            raise SpecError(problems, file=spec.file)
        return integrations, built, inbox

    async def _swap_pollers(
        self, wanted: Mapping[str, PollerSpec], integrations: Mapping[str, _IntegrationRuntime]
    ) -> None:
        for name, poller in list(self.pollers.items()):
            spec = wanted.get(name)
            if (
                spec is None
                or spec != poller.spec
                or integrations.get(spec.integration) is not poller.runtime
            ):
                await poller.stop()
                del self.pollers[name]
        for name, spec in wanted.items():
            if name not in self.pollers:
                poller = _Poller(self, name, spec, integrations[spec.integration])
                self.pollers[name] = poller
                poller.start()

    async def _swap_streams(
        self, wanted: Mapping[str, StreamSpec], integrations: Mapping[str, _IntegrationRuntime]
    ) -> None:
        def runtime_of(spec: StreamSpec) -> _IntegrationRuntime | None:
            return integrations.get(spec.integration) if spec.integration is not None else None

        for name, stream in list(self.streams.items()):
            spec = wanted.get(name)
            if spec is None or spec != stream.spec or runtime_of(spec) is not stream.runtime:
                await stream.stop()
                del self.streams[name]
        for name, spec in wanted.items():
            if name not in self.streams:
                stream = _Stream(self, name, spec, runtime_of(spec))
                self.streams[name] = stream
                stream.start()

    async def _sync_endpoints(self, endpoints: tuple[EndpointSettings, ...]) -> None:
        """Create or update each configured outbox endpoint under its config name."""
        for item in endpoints:
            spec = item.spec
            options: dict[str, Any] = {
                "url": spec.url,
                "event_types": list(spec.event_types),
                "headers": dict(spec.headers),
            }
            if spec.description is not None:
                options["description"] = spec.description
            if spec.timeout is not None:
                options["timeout"] = spec.timeout
            # None on update puts the endpoint back on the outbox's schedule.
            options["schedule"] = spec.schedule
            current = await self.outbox_store.get_endpoint(item.name)
            if current is None:
                try:
                    await self.outbox.add_endpoint(
                        endpoint_id=item.name,
                        secret=item.secret,
                        rate_limit=spec.rate_limit,
                        **options,
                    )
                    continue
                except ConfigError:
                    # Another hub created it a moment ago: update it like an existing one.
                    if await self.outbox_store.get_endpoint(item.name) is None:
                        raise
            await self.outbox.update_endpoint(item.name, rate_limit=spec.rate_limit, **options)
            if item.secret is not None and await self.outbox.secret(item.name) != item.secret:
                await self.outbox.rotate_secret(item.name, overlap=0, secret=item.secret)
            if current is not None and not current.enabled and current.disabled_reason == REMOVED:
                await self.outbox.enable_endpoint(item.name)
        # Endpoints this hub created from the file and that left it stop receiving; others
        # (added with `tether outbox endpoints add`) are not the file's to touch.
        wanted = {item.name for item in endpoints}
        for name in set(self._routes) - wanted:
            with contextlib.suppress(ConfigError):
                await self.outbox.disable_endpoint(name, reason=REMOVED)

    def _shared_limiter(self, endpoint: Endpoint) -> RateLimiter | None:
        """One Redis-backed limiter per outbox endpoint, so hubs share its quota."""
        if endpoint.rate_limit is None or self.redis_url is None:
            return None
        key = f"{endpoint.id}|{endpoint.rate_limit}"
        limiter = self._limiters.get(key)
        if limiter is None:
            from tether.distributed import RedisRateLimiter  # noqa: PLC0415

            limiter = RedisRateLimiter(
                endpoint.rate_limit,
                redis=self.redis_url,
                name=f"hub-outbox:{endpoint.id}",
                max_wait=self.outbox_policy.rate_limit_wait,
            )
            self._limiters[key] = limiter
        return limiter

    # -- events ---------------------------------------------------------------------------------

    async def publish(
        self, type: str, source: str, data: Any, *, key: str | None = None
    ) -> HubEvent | None:
        """Store an event, wake live listeners, and enqueue it to the outbox when an endpoint
        subscribes to its type. With `key`, an event already stored under it is not stored
        again (it is still enqueued, idempotently). None if the store failed."""
        try:
            event = await self.store.append(type, source, data, at=time.time(), key=key)
        except StoreError as exc:
            logger.error("could not store hub event %s: %s", type, exc)  # noqa: TRY400
            if key is not None:
                raise
            return None
        if event is None:
            if key is None:
                return None
            found = await self.store.find(key)
            if found is None:
                return None
            event = found
        else:
            prefix = type.split(".", 1)[0]
            self.events_total[prefix] = self.events_total.get(prefix, 0) + 1
            self._wake_listeners()
        if not type.startswith("outbox.") and any(
            _matches(type, filters) for filters in self._routes.values()
        ):
            with self.tracer.span("tether.hub.enqueue", event_type=type):
                try:
                    await self.outbox.enqueue(
                        type, event.to_json(), idempotency_key=f"hub-event:{event.id}"
                    )
                except (StoreError, ConfigError) as exc:
                    logger.error(  # noqa: TRY400 - the message is complete
                        "could not enqueue hub event %s to the outbox: %s", event.id, exc
                    )
                    if key is not None:
                        raise
            if self.worker is not None:
                self.worker.wake()
        return event

    def _wake_listeners(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for_events(self, timeout: float) -> None:
        """Return when this hub published an event, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _on_webhook(self, event: InboxEvent) -> None:
        """The inbox handler: each dispatched delivery becomes one `webhook.*` hub event."""
        kind = f"webhook.{event.source}" + (f".{event.event_type}" if event.event_type else "")
        try:
            payload: Any = event.json()
        except ValueError:
            payload = event.body.decode("utf-8", "replace")
        with self.tracer.span("tether.hub.dispatch", source=event.source):
            await self.publish(
                kind,
                event.source,
                {"inbox_id": event.id, "event_id": event.event_id, "payload": payload},
                key=f"inbox:{event.source}:{event.event_id}",
            )

    async def _outbox_event(self, event: OutboxEvent) -> None:
        kind = (
            "outbox.endpoint.disabled"
            if event.kind == "endpoint.disabled"
            else "outbox.delivery.dead"
        )
        await self.publish(
            kind,
            event.endpoint_id,
            {"endpoint_id": event.endpoint_id, "reason": event.reason, "msg_id": event.msg_id},
        )

    # -- status ---------------------------------------------------------------------------------

    async def poller_rows(self, *, with_data: bool = False) -> list[dict[str, Any]]:
        """`GET /data`: each configured poller as the shared store has it."""
        stored = {s.name: s for s in await self.store.snapshots()}
        now = time.time()
        rows = []
        for name, poller in self.pollers.items():
            snapshot = stored.get(name)
            row: dict[str, Any] = {
                "name": name,
                "integration": poller.spec.integration,
                "available": poller.available(snapshot, now),
                "last_success": snapshot.last_success if snapshot else None,
                "age": (
                    max(0.0, now - snapshot.last_success)
                    if snapshot is not None and snapshot.last_success is not None
                    else None
                ),
                "consecutive_failures": snapshot.consecutive_failures if snapshot else 0,
                "last_error": snapshot.last_error if snapshot else None,
                "interval": poller.spec.interval,
            }
            if with_data:
                row["data"] = snapshot.data if snapshot else None
            rows.append(row)
        return rows

    async def integration_rows(self) -> list[dict[str, Any]]:
        """`GET /integrations`: each integration's health as this hub sees it."""
        pollers = await self.poller_rows()
        now = time.time()
        now_monotonic = time.monotonic()
        rows = []
        for name, runtime in self.integrations.items():
            mine = [p for p in pollers if p["integration"] == name]
            views = [
                PollerView(p["name"], p["available"], p["consecutive_failures"] > 0) for p in mine
            ]
            health = runtime.health
            last_success = health.last_success
            for p in mine:
                if p["last_success"] is not None and (
                    last_success is None or p["last_success"] > last_success
                ):
                    last_success = p["last_success"]
            rows.append(
                {
                    "name": name,
                    "status": health.status(views),
                    "breaker": health.breaker(),
                    "rate_limit": health.rate_limit(now_monotonic),
                    "last_success": last_success,
                    "staleness": None if last_success is None else max(0.0, now - last_success),
                    "last_error": health.last_error or _latest_error(mine),
                    "requests": health.requests,
                    "failures": health.failures,
                    "pollers": [p["name"] for p in mine],
                }
            )
        return rows

    def active_for(self, integration: str) -> bool:
        """Whether this hub works for the integration now (holds one of its leases)."""
        return any(
            p.spec.integration == integration and p.lease is not None for p in self.pollers.values()
        ) or any(
            s.spec.integration == integration and s.lease is not None for s in self.streams.values()
        )

    async def check_statuses(self) -> None:
        """Recompute each integration's status; a change is a `status.<name>` event."""
        for row in await self.integration_rows():
            name, status = row["name"], row["status"]
            before = self._statuses.get(name, "ok")
            self._statuses[name] = status
            # The hub doing the work reports it; the others would only echo it.
            if status != before and self.active_for(name):
                await self.publish(f"status.{name}", name, {"from": before, "to": status})

    async def _housekeep(self) -> None:
        last_purge = 0.0
        while True:
            await _sleep(HOUSEKEEPING_INTERVAL)
            try:
                await self.check_statuses()
                now = time.time()
                if now - last_purge >= PURGE_INTERVAL:
                    last_purge = now
                    purged = await self.store.purge(before=now - self.settings.event_retention)
                    if purged:
                        logger.info("purged %d hub events past retention", purged)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("hub housekeeping failed; trying again")


def _latest_error(pollers: list[dict[str, Any]]) -> dict[str, Any] | None:
    errors = [p["last_error"] for p in pollers if p["last_error"] is not None]
    return max(errors, key=lambda e: e.get("at") or 0.0) if errors else None


def _sources_changed(old: Inbox | None, new: Inbox | None) -> bool:
    if old is None or new is None:
        return old is not new
    return [_describe(s) for s in old.sources] != [_describe(s) for s in new.sources]


def _describe(source: Source) -> tuple[Any, ...]:
    return (
        source.name,
        source.path,
        source.scheme,
        source.secrets,
        source.tolerance,
        source.id_from,
        source.type_from,
        tuple(sorted(source.options.items())),
    )
