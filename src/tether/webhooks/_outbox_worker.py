"""The outbox worker: leases due deliveries, signs and posts them, records every attempt.

Each endpoint gets its own `tether.Client` on one shared, SSRF-guarded aiohttp session: the
client's deadline, rate limit and circuit breaker apply; its retry is off, because the outbox
schedule is the retry, and it never follows a redirect (a 3xx is a failed attempt).

At least once: a delivery is claimed under a lease sized from the longest request timeout and
renewed by a heartbeat while in flight. A worker killed mid-request leaves the lease to run out,
and another worker sends the message again with the same `webhook-id`, so receivers dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp

from tether._client import Client
from tether._clock import Clock, SystemClock
from tether._config import Retry, Timeout
from tether._core._advice import parse_retry_after
from tether._errors import (
    BulkheadFull,
    CircuitOpenError,
    HTTPStatusError,
    RateLimitWaitTooLong,
    TetherError,
)
from tether._flow import Breaker, RateLimiter
from tether._models import Response
from tether.stores._inbox import StoreError
from tether.webhooks._api import sign
from tether.webhooks._outbox_egress import EgressPolicy, EgressRefused, guarded_session
from tether.webhooks._outbox_model import (
    AttemptResult,
    DeliveryStatus,
    Endpoint,
    OutboxEvent,
    OutboxLease,
    OutboxStore,
)
from tether.webhooks._outbox_policy import OutboxPolicy

__all__ = ["OutboxWorker"]

logger = logging.getLogger("tether.webhooks.outbox")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MAX_ERROR = 1000
# One attempt, and no status is the client's to judge: the outbox schedule decides what comes
# next (the client would otherwise log "not retried" for a delivery that will be). A pause a
# server asks for through `x-should-retry` is reported at once instead of waited out inside
# the client, so the worker's slot stays free.
_ONE_ATTEMPT = Retry(attempts=1, max_retry_after=0.0, statuses=frozenset(), budget=None)
_RESERVED = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"})


@dataclass(slots=True)
class _Cached:
    endpoint: Endpoint | None
    read_at: float
    client: Client | None = None


class OutboxWorker:
    """Delivers what the outbox holds, as it comes due; any number may share a store.

    `rate_limiter`, when given, makes each endpoint's limiter (None for none) instead of a
    private `RateLimiter(endpoint.rate_limit)` per worker process: return one shared object
    (per endpoint) to hold several workers in a process to one quota, or a limiter whose state
    is shared between processes. Keep its `max_wait` short, as `policy.rate_limit_wait` is:
    a delivery that would wait longer is put back rather than hold a worker's slot.

    `on_event` is called (and awaited, if it returns an awaitable) when an endpoint is
    disabled or a delivery goes dead, to alert someone; an exception in it is logged.

    Use `async with worker:` to run it in the background, or `await worker.run_once()` to
    attempt what is due now (tests, cron-style runs; then `await worker.aclose()` to release
    its connections).
    """

    def __init__(
        self,
        store: OutboxStore,
        *,
        policy: OutboxPolicy | None = None,
        egress: EgressPolicy | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
        session: aiohttp.ClientSession | None = None,
        rate_limiter: Callable[[Endpoint], RateLimiter | None] | None = None,
        on_event: Callable[[OutboxEvent], object] | None = None,
    ) -> None:
        self.store = store
        self._on_event = on_event
        self._rate_limiter = rate_limiter
        self.policy = policy or OutboxPolicy()
        self.egress = egress or EgressPolicy()
        self.clock: Clock = clock or SystemClock()
        self._rand = rand
        self._session = session
        self._owns_session = session is None
        self._endpoints: dict[str, _Cached] = {}
        self._loading: dict[str, asyncio.Future[_Cached]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._tokens: dict[str, int] = {}
        self._last_purge: float | None = None
        self._watching = False
        #: Attempts made, by outcome, since the worker started.
        self.attempted: dict[str, int] = {"delivered": 0, "failed": 0, "gone": 0, "released": 0}

    def __repr__(self) -> str:
        return f"OutboxWorker(store={self.store!r}, concurrency={self.policy.concurrency})"

    def wake(self) -> None:
        """Look at the store now rather than at the next poll."""
        self._wake.set()

    # -- endpoints and their clients ---------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = guarded_session(self.egress)
            self._owns_session = True
        return self._session

    async def _endpoint(self, endpoint_id: str) -> _Cached:
        cached = self._endpoints.get(endpoint_id)
        if (
            cached is not None
            and self.clock.monotonic() - cached.read_at < self.policy.endpoint_ttl
        ):
            return cached
        # One read per endpoint at a time: deliveries claimed together would otherwise each
        # build a client, and each its own rate limiter and breaker.
        loading = self._loading.get(endpoint_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load_endpoint(endpoint_id))
            self._loading[endpoint_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(endpoint_id, None))
        return await asyncio.shield(loading)

    async def _load_endpoint(self, endpoint_id: str) -> _Cached:
        endpoint = await self.store.get_endpoint(endpoint_id)
        now = self.clock.monotonic()
        cached = self._endpoints.get(endpoint_id)
        if (
            cached is not None
            and cached.endpoint is not None
            and endpoint is not None
            and cached.endpoint.updated_at == endpoint.updated_at
        ):
            # Unchanged configuration: keep the client, and with it the breaker's and rate
            # limiter's memory of this endpoint.
            cached.endpoint = endpoint
            cached.read_at = now
            return cached
        fresh = _Cached(endpoint, now)
        if endpoint is not None:
            fresh.client = self._client(endpoint)
        self._endpoints[endpoint_id] = fresh
        # The replaced client shares the worker's session, so attempts still using it finish.
        return fresh

    def _client(self, endpoint: Endpoint) -> Client:
        timeout = min(endpoint.timeout, self.policy.max_timeout)
        if self._rate_limiter is not None:
            rate_limit = self._rate_limiter(endpoint)
        elif endpoint.rate_limit is None:
            rate_limit = None
        else:
            rate_limit = RateLimiter(endpoint.rate_limit, max_wait=self.policy.rate_limit_wait)
        breaker = self.policy.breaker
        if breaker is not None and breaker.scope != "client":
            # One circuit per endpoint, whatever host it shares with others.
            breaker = Breaker(**{**_breaker_fields(breaker), "scope": "client"})
        return Client(
            session=self._http(),
            timeout=Timeout(total=timeout, connect=min(10.0, timeout), attempt=timeout),
            retry=_ONE_ATTEMPT,
            rate_limit=rate_limit,
            breaker=breaker,
            follow_redirects=False,
            raise_for_status=False,
            secrets=[*(s.value for s in endpoint.secrets), *_url_secrets(endpoint.url)],
            # Receivers often take a token in the URL (Azure Functions' ?code=, ?token=): the
            # attempt log and the log records show the URL, never those values.
            redact_params=_query_names(endpoint.url),
            clock=self.clock,
        )

    # -- one delivery ------------------------------------------------------------------------

    async def _process(self, lease: OutboxLease) -> None:
        try:
            await self._deliver(lease)
        except StoreError as exc:
            # The lease runs out and the delivery is claimed again: at least once, never lost.
            logger.warning("outbox store failed while delivering %s: %s", lease.delivery.id, exc)
        except Exception:
            # A bug must not end the worker; the lease runs out and the delivery comes back.
            logger.exception("outbox: delivery %s failed unexpectedly", lease.delivery.id)
        finally:
            left = self._tokens.get(lease.token, 0) - 1
            if left <= 0:
                self._tokens.pop(lease.token, None)
            else:
                self._tokens[lease.token] = left

    async def _deliver(self, lease: OutboxLease) -> None:
        delivery = lease.delivery
        cached = await self._endpoint(delivery.endpoint_id)
        endpoint, client = cached.endpoint, cached.client
        now = self.clock.time()
        if endpoint is None or client is None or not endpoint.enabled:
            # Deleted or disabled since the claim: the store already settled the delivery.
            await self.store.release(lease, retry_at=now + self.policy.poll_interval)
            return
        secrets = endpoint.signing_secrets(now)
        if not secrets:
            await self._record(
                lease,
                endpoint,
                self._failure(
                    delivery.attempts,
                    endpoint,
                    now,
                    0.0,
                    error="the endpoint has no current signing secret",
                ),
            )
            return
        headers = {name: value for name, value in endpoint.headers if name.lower() not in _RESERVED}
        headers.update(
            sign(
                "standard",
                secret=secrets,
                body=delivery.payload,
                msg_id=delivery.msg_id,
                timestamp=int(now),
            )
        )
        headers["content-type"] = "application/json"
        started_wall = now
        started = self.clock.monotonic()
        try:
            self.egress.check_url(endpoint.url)
            request = client.build_request(
                "POST", endpoint.url, content=delivery.payload, headers=headers
            )
            response = await client.send(request)
        except (CircuitOpenError, RateLimitWaitTooLong, BulkheadFull) as exc:
            # Refused before sending: not an attempt. Back when the endpoint can take it.
            await self._release(lease, _local_wait(exc, self.clock))
            return
        except HTTPStatusError as exc:
            if exc.response.request is not request:
                # The server's earlier Retry-After still holds: nothing was sent this time.
                await self._release(lease, exc.retry_after or self.policy.poll_interval)
                return
            response = exc.response
        except EgressRefused as exc:
            await self._record(
                lease,
                endpoint,
                self._failure(delivery.attempts, endpoint, started_wall, 0.0, error=str(exc)),
            )
            return
        except TetherError as exc:
            latency = self.clock.monotonic() - started
            error = _describe(exc, client)
            await self._record(
                lease,
                endpoint,
                self._failure(delivery.attempts, endpoint, started_wall, latency, error=error),
            )
            return
        latency = self.clock.monotonic() - started
        await self._record(
            lease,
            endpoint,
            self._judge(
                delivery.attempts,
                endpoint=endpoint,
                started=started_wall,
                latency=latency,
                response=response,
                client=client,
            ),
        )

    def _judge(
        self,
        attempt: int,
        *,
        endpoint: Endpoint,
        started: float,
        latency: float,
        response: Response,
        client: Client,
    ) -> AttemptResult:
        status = response.status
        excerpt = self._excerpt(response, client)
        if 200 <= status < 300:
            return AttemptResult(
                status=DeliveryStatus.DELIVERED,
                retry_at=None,
                started_at=started,
                latency=latency,
                status_code=status,
                outcome="delivered",
                error=None,
                response=excerpt,
                endpoint_ok=True,
            )
        if status == 410:
            # Standard Webhooks: 410 Gone means the receiver wants no more; stop at once.
            return AttemptResult(
                status=DeliveryStatus.SKIPPED,
                retry_at=None,
                started_at=started,
                latency=latency,
                status_code=status,
                outcome="gone",
                error="410 Gone: the endpoint asked to receive no more webhooks",
                response=excerpt,
                endpoint_ok=False,
                disable="the endpoint answered 410 Gone",
            )
        now = self.clock.time()
        retry_after = parse_retry_after(response.headers, now_wall=now)
        pause = None
        if retry_after is not None and status in (429, 503):
            # Back-pressure concerns the endpoint, not this one message: hold them all.
            pause = now + min(retry_after, self.policy.max_retry_after)
        error = f"{status} {response.reason}" + (
            " (redirects are not followed)" if 300 <= status < 400 else ""
        )
        return self._failure(
            attempt,
            endpoint,
            started,
            latency,
            error=error,
            status_code=status,
            response=excerpt,
            retry_after=retry_after,
            pause_until=pause,
        )

    def _failure(
        self,
        attempt: int,
        endpoint: Endpoint,
        started: float,
        latency: float,
        *,
        error: str,
        status_code: int | None = None,
        response: str | None = None,
        retry_after: float | None = None,
        pause_until: float | None = None,
    ) -> AttemptResult:
        delay = self.policy.retry_delay(attempt, schedule=endpoint.schedule, rand=self._rand())
        if delay is not None:
            delay = self.policy.honour_retry_after(delay, retry_after)
        now = self.clock.time()
        return AttemptResult(
            status=DeliveryStatus.PENDING if delay is not None else DeliveryStatus.DEAD,
            retry_at=None if delay is None else now + delay,
            started_at=started,
            latency=latency,
            status_code=status_code,
            outcome="failed",
            error=error[:_MAX_ERROR],
            response=response,
            endpoint_ok=False,
            pause_until=pause_until,
            disable_after=self.policy.disable_after,
        )

    def _excerpt(self, response: Response, client: Client) -> str | None:
        if not response.content:
            return None
        limit = self.policy.response_excerpt
        text = response.content[: limit * 4].decode("utf-8", "replace")[:limit]
        # A receiver that echoes what it got must not put the signing secret in the log.
        return client._redactor.text(_CONTROL.sub("", text))

    async def _record(self, lease: OutboxLease, endpoint: Endpoint, result: AttemptResult) -> None:
        outcome = await self.store.record(lease, result, now=self.clock.time())
        self.attempted[result.outcome] = self.attempted.get(result.outcome, 0) + 1
        delivery = lease.delivery
        if not outcome.held:
            logger.warning(
                "outbox: lost the lease on delivery %s before recording its attempt", delivery.id
            )
        if outcome.disabled is not None:
            logger.warning("outbox: endpoint %s disabled: %s", endpoint.id, outcome.disabled)
            self._endpoints.pop(endpoint.id, None)
            await self._report(
                OutboxEvent(
                    kind="endpoint.disabled",
                    endpoint_id=endpoint.id,
                    at=self.clock.time(),
                    reason=outcome.disabled,
                )
            )
        if result.status is DeliveryStatus.DEAD and outcome.held:
            logger.error(
                "outbox: delivery %s of %s to endpoint %s dead after %d attempts: %s",
                delivery.id,
                delivery.msg_id,
                endpoint.id,
                delivery.attempts,
                result.error,
            )
            await self._report(
                OutboxEvent(
                    kind="delivery.dead",
                    endpoint_id=endpoint.id,
                    at=self.clock.time(),
                    reason=result.error,
                    msg_id=delivery.msg_id,
                    delivery_id=delivery.id,
                )
            )
        elif result.status is DeliveryStatus.PENDING and logger.isEnabledFor(logging.INFO):
            logger.info(
                "outbox: attempt %d of %s to endpoint %s failed (%s); next in %.0f s",
                delivery.attempts,
                delivery.msg_id,
                endpoint.id,
                result.error,
                (result.retry_at or 0.0) - self.clock.time(),
            )

    async def _report(self, event: OutboxEvent) -> None:
        hook = self._on_event
        if hook is None:
            return
        try:
            result = hook(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # An alerting hook that fails must not fail the delivery bookkeeping.
            logger.exception("outbox: the on_event hook failed on %s", event.kind)

    async def _release(self, lease: OutboxLease, wait: float) -> None:
        self.attempted["released"] += 1
        await self.store.release(lease, retry_at=self.clock.time() + max(0.0, wait))

    # -- the loop ----------------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[OutboxLease]:
        leases = await self.store.claim(
            now=self.clock.time(), limit=limit, lease=self.policy.lease_seconds
        )
        for lease in leases:
            self._tokens[lease.token] = self._tokens.get(lease.token, 0) + 1
        return leases

    async def run_once(self) -> int:
        """Attempt what is due now (up to `concurrency` deliveries); how many were claimed."""
        leases = await self._claim(self.policy.concurrency)
        await asyncio.gather(*(self._process(lease) for lease in leases))
        return len(leases)

    async def purge_expired(self) -> int:
        """Delete attempt log entries and finished deliveries past their retention."""
        now = self.clock.time()
        self._last_purge = now
        retention = self.policy.message_retention
        purged = await self.store.purge(
            attempts_before=now - self.policy.attempt_retention,
            finished_before=None if retention is None else now - retention,
        )
        if purged:
            logger.info("outbox: purged %d records past retention", purged)
        return purged

    async def _heartbeat(self) -> None:
        every = self.policy.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            until = self.clock.time() + self.policy.lease_seconds
            for token in list(self._tokens):
                try:
                    await self.store.renew(token, until=until)
                except StoreError as exc:
                    logger.warning("outbox: cannot renew leases: %s", exc)

    async def run(self) -> None:
        """Deliver until `stop()`: up to `concurrency` at once, as deliveries come due."""
        if not self._watching:
            self._watching = True
            await self.store.watch(self.wake)
        concurrency = self.policy.concurrency
        # Under load, claim in batches rather than one row per freed slot: each claim is a
        # write transaction.
        threshold = max(1, concurrency // 4)
        inflight: set[asyncio.Task[None]] = set()
        heartbeat = asyncio.create_task(self._heartbeat(), name="tether-outbox-heartbeat")
        try:
            while not self._stopping:
                free = concurrency - len(inflight)
                timeout: float | None = self.policy.poll_interval
                watch_wake = False
                if free >= threshold or not inflight:
                    self._wake.clear()
                    watch_wake = True
                    try:
                        if self._purge_due():
                            await self.purge_expired()
                        leases = await self._claim(free)
                        for lease in leases:
                            inflight.add(asyncio.create_task(self._process(lease)))
                        if len(leases) == free:
                            timeout = None  # more may be due: claim again once slots free up
                        else:
                            timeout = await self._idle_wait()
                    except StoreError as exc:
                        logger.warning("outbox worker cannot read the store: %s", exc)
                else:
                    timeout = None
                waiters: set[asyncio.Future[Any]] = set(inflight)
                wake = asyncio.ensure_future(self._wake.wait()) if watch_wake else None
                if wake is not None:
                    waiters.add(wake)
                if not waiters:
                    await asyncio.sleep(self.policy.poll_interval)
                    continue
                done, _ = await asyncio.wait(
                    waiters,
                    timeout=timeout if timeout is not None or not inflight else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if wake is not None:
                    wake.cancel()
                inflight -= {t for t in done if t is not wake}
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            if inflight:
                # Let attempts in flight finish within their time limit; leases of anything cut
                # short run out and the deliveries are claimed again.
                await asyncio.wait(inflight, timeout=self.policy.max_timeout)
                for task in inflight:
                    task.cancel()
                await asyncio.gather(*inflight, return_exceptions=True)

    def _purge_due(self) -> bool:
        if self._last_purge is None:
            return True
        return self.clock.time() - self._last_purge >= self.policy.purge_interval

    async def _idle_wait(self) -> float:
        due = await self.store.next_due()
        if due is None:
            return self.policy.poll_interval
        return min(self.policy.poll_interval, max(0.0, due - self.clock.time()))

    async def start(self) -> None:
        """Run `run()` in a background task."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="tether-outbox-worker")

    async def stop(self) -> None:
        """Stop claiming; wait for attempts in flight (up to their time limit)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.aclose()

    async def aclose(self) -> None:
        """Close the endpoint clients and the HTTP session the worker made."""
        for cached in self._endpoints.values():
            if cached.client is not None:
                await cached.client.aclose()
        self._endpoints.clear()
        session = self._session
        if session is not None and self._owns_session:
            self._session = None
            await session.close()

    async def __aenter__(self) -> OutboxWorker:
        await self.store.open()
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _query_names(url: str) -> list[str]:
    return [name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)]


def _url_secrets(url: str) -> list[str]:
    """A password in the URL's userinfo is a credential wherever it shows up."""
    password = urlsplit(url).password
    return [password] if password else []


def _breaker_fields(breaker: Breaker) -> dict[str, Any]:
    return {name: getattr(breaker, name) for name in Breaker.__dataclass_fields__}


def _local_wait(exc: TetherError, clock: Clock) -> float:
    if isinstance(exc, CircuitOpenError):
        return max(0.0, exc.retry_at - clock.monotonic())
    if isinstance(exc, RateLimitWaitTooLong):
        return exc.wait
    return 1.0


def _describe(exc: TetherError, client: Client) -> str:
    text = str(exc).replace("\n", " ").strip()
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return client._redactor.text(described)[:_MAX_ERROR]
