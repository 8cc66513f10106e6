"""The dispatcher: leases stored events and runs their handlers, at least once, with retries.

Each event's matching handlers run in registration order. A handler that succeeded is recorded
before the next one starts, so a retry (or a crash) re-runs only the handlers that have not
succeeded yet. A failure schedules the event again with exponential backoff and jitter; after
`max_attempts` it is dead-lettered until someone replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tether._clock import Clock, SystemClock
from tether._core._backoff import full_jitter
from tether._errors import ConfigError
from tether.stores import EventStatus, InboxEvent, InboxStore, Lease, StoreError

__all__ = ["DispatchPolicy", "Dispatcher", "Handler", "HandlerFunc", "Handlers"]

logger = logging.getLogger("tether.webhooks.dispatch")

HandlerFunc = Callable[[InboxEvent], Awaitable[None] | None]
F = TypeVar("F", bound=HandlerFunc)

#: Matches every event type of a source.
ANY_TYPE = "*"
_DAY = 86_400.0
_MAX_ERROR = 1000


def _positive(name: str, given: float, *, allow_zero: bool = False) -> None:
    value: object = given  # checked at run time too: configuration files carry any type
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}")


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchPolicy:
    """How the dispatcher retries, leases, and how long it keeps finished events.

    The default retries for about half an hour: delays of 5 s doubling to at most an hour,
    each drawn between half and all of its step, then dead-letters the event.
    """

    #: Attempts before an event is dead-lettered; a crash during an attempt counts too.
    max_attempts: int = 10
    #: The first retry's delay ceiling, in seconds; it doubles with each attempt.
    backoff_base: float = 5.0
    #: The largest delay ceiling between attempts, in seconds.
    backoff_cap: float = 3600.0
    #: Seconds one handler may run before its attempt counts as failed.
    handler_timeout: float = 30.0
    #: Seconds a claimed event stays invisible to other dispatchers; None means the handler
    #: timeout plus 30 s. It must outlast the handler timeout, or a slow handler's event would
    #: be handed to a second dispatcher while the first still runs it.
    lease: float | None = None
    #: Events handled at once.
    concurrency: int = 8
    #: Seconds between looks at the store when nothing woke the dispatcher (events written by
    #: another process, retries coming due).
    poll_interval: float = 1.0
    #: Delivered and ignored events, and so their ids, are kept this long: a duplicate that
    #: arrives within it is acknowledged and not dispatched again.
    dedupe_horizon: float = 7 * _DAY
    #: Dead events are purged this long after they were received; None keeps them until they
    #: are replayed or purged by hand.
    dead_retention: float | None = None
    #: Seconds between automatic purges.
    purge_interval: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("max_attempts", "concurrency"):
            if not _positive_int(getattr(self, name)):
                raise ConfigError(f"{name} must be an int of at least 1")
        for name in ("backoff_base", "backoff_cap", "handler_timeout", "poll_interval"):
            _positive(name, getattr(self, name))
        for name in ("dedupe_horizon", "purge_interval"):
            _positive(name, getattr(self, name))
        if self.dead_retention is not None:
            _positive("dead_retention", self.dead_retention)
        if self.lease is not None:
            _positive("lease", self.lease)
            if self.lease <= self.handler_timeout:
                raise ConfigError("lease must be longer than handler_timeout")

    @property
    def lease_seconds(self) -> float:
        return self.lease if self.lease is not None else self.handler_timeout + 30.0

    def retry_delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first)."""
        # Attempts are budgeted by count, so no retry comes sooner than half its step: plain
        # full jitter could spend the budget in a burst of near-zero delays.
        return full_jitter(
            attempt, base=self.backoff_base, cap=self.backoff_cap, rand=0.5 + 0.5 * rand
        )


@dataclass(frozen=True, slots=True)
class Handler:
    """A function registered for one source and event type ("*" for every type)."""

    source: str
    event_type: str
    #: Recorded in the store when it succeeds; unique within its source.
    name: str
    func: HandlerFunc = field(repr=False)
    is_async: bool = field(repr=False)

    async def __call__(self, event: InboxEvent) -> None:
        if self.is_async:
            result = self.func(event)
            if inspect.isawaitable(result):
                await result
            return
        # Blocking code runs on a worker thread so the receiver keeps answering meanwhile.
        await asyncio.to_thread(self.func, event)


def _default_name(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{qualname}"


def _is_async(func: Callable[..., Any]) -> bool:
    call = getattr(func, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


class Handlers:
    """The handler registry: which functions run for which source and event type."""

    __slots__ = ("_by_source", "_sources")

    def __init__(self, sources: Iterable[str] | None = None) -> None:
        self._sources = None if sources is None else frozenset(sources)
        self._by_source: dict[str, list[Handler]] = {}

    def add(
        self,
        source: str,
        event_type: str,
        func: HandlerFunc,
        *,
        name: str | None = None,
    ) -> Handler:
        """Register `func` for events of `event_type` ("*" for all) from `source`.

        Raises:
            ConfigError: an unknown source, a non-callable, or a name already used in the
                source (pass name= to tell two registrations of one function apart).
        """
        if self._sources is not None and source not in self._sources:
            known = ", ".join(sorted(self._sources)) or "none"
            raise ConfigError(f"no webhook source named {source!r} (known: {known})")
        given_type: object = event_type
        if not isinstance(given_type, str) or not given_type:
            raise ConfigError("event_type must be a non-empty str; use '*' for every type")
        if not callable(func):
            raise ConfigError("a webhook handler must be callable")
        handler_name = name or _default_name(func)
        existing = self._by_source.setdefault(source, [])
        if any(h.name == handler_name for h in existing):
            raise ConfigError(
                f"a handler named {handler_name!r} is already registered for {source!r}; "
                "pass name= to register the same function again"
            )
        handler = Handler(source, event_type, handler_name, func, _is_async(func))
        existing.append(handler)
        return handler

    def on(
        self, source: str, event_type: str = ANY_TYPE, *, name: str | None = None
    ) -> Callable[[F], F]:
        """Decorator form of `add`."""

        def register(func: F) -> F:
            self.add(source, event_type, func, name=name)
            return func

        return register

    def match(self, source: str, event_type: str | None) -> list[Handler]:
        """The handlers for an event, in registration order."""
        return [
            h for h in self._by_source.get(source, ()) if h.event_type in (ANY_TYPE, event_type)
        ]

    def __len__(self) -> int:
        return sum(len(handlers) for handlers in self._by_source.values())

    def __repr__(self) -> str:
        return f"Handlers({len(self)} registered)"


def _describe(handler: Handler, exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    described = f"{handler.name}: {type(exc).__name__}" + (f": {text}" if text else "")
    return described[:_MAX_ERROR]


class Dispatcher:
    """Runs the handlers of stored events, retrying failures and dead-lettering the hopeless.

    Run one inside the receiver (`Inbox(dispatch=True)`, the default) or in worker processes
    of their own; any number of dispatchers can share a store. Use `async with dispatcher:` to
    run it in the background, or `await dispatcher.run_once()` to handle what is due now.
    """

    def __init__(
        self,
        store: InboxStore,
        handlers: Handlers,
        *,
        policy: DispatchPolicy | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.policy = policy or DispatchPolicy()
        self.clock: Clock = clock or SystemClock()
        self._rand = rand
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_purge: float | None = None

    def __repr__(self) -> str:
        return f"Dispatcher(store={self.store!r}, handlers={len(self.handlers)})"

    def wake(self) -> None:
        """Look at the store now rather than at the next poll (a new event was stored)."""
        self._wake.set()

    # -- one event -----------------------------------------------------------------------------

    async def _process(self, lease: Lease) -> None:
        try:
            await self._handle(lease)
        except StoreError as exc:
            # The lease runs out and the event is claimed again: at least once, never lost.
            logger.warning("inbox store failed while dispatching event %s: %s", lease.event.id, exc)
        except Exception:
            # Not a handler's failure (those are recorded): a bug. The lease runs out and the
            # event is claimed again, so it is logged rather than allowed to end the dispatcher.
            logger.exception("unexpected error dispatching webhook event %s", lease.event.id)

    async def _handle(self, lease: Lease) -> None:
        event = lease.event
        matched = self.handlers.match(event.source, event.event_type)
        if not matched:
            await self.store.complete(
                lease, status=EventStatus.IGNORED, handled=[], now=self.clock.time()
            )
            return
        done = list(event.handled)
        todo = [h for h in matched if h.name not in done]
        for position, handler in enumerate(todo):
            try:
                async with asyncio.timeout(self.policy.handler_timeout):
                    await handler(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # handler code may raise anything: that is a failed attempt
                await self._failed(lease, handler, exc, done)
                return
            done.append(handler.name)
            if position < len(todo) - 1:
                # Recorded before the next handler starts, so a retry skips this one.
                renewed = await self.store.renew(
                    lease, handled=done, until=self.clock.time() + self.policy.lease_seconds
                )
                if renewed is None:
                    logger.warning(
                        "lost the lease on event %s; another dispatcher has it", event.id
                    )
                    return
                lease = renewed
        if not await self.store.complete(
            lease, status=EventStatus.DELIVERED, handled=done, now=self.clock.time()
        ):
            logger.warning("lost the lease on event %s before recording success", event.id)

    async def _failed(
        self, lease: Lease, handler: Handler, exc: Exception, done: list[str]
    ) -> None:
        event = lease.event
        now = self.clock.time()
        error = _describe(handler, exc)
        if event.attempts >= self.policy.max_attempts:
            retry_at = None
            logger.error(
                "webhook event %s (%s %s) dead-lettered after %d attempts: %s",
                event.id,
                event.source,
                event.event_type,
                event.attempts,
                error,
                exc_info=exc,
            )
        else:
            retry_at = now + self.policy.retry_delay(event.attempts, self._rand())
            logger.warning(
                "webhook handler failed on event %s (attempt %d of %d, retry in %.1fs): %s",
                event.id,
                event.attempts,
                self.policy.max_attempts,
                retry_at - now,
                error,
                exc_info=exc,
            )
        await self.store.fail(lease, error=error, handled=done, retry_at=retry_at, now=now)

    # -- the loop --------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due now (up to `concurrency` events), handle it; how many were claimed."""
        leases = await self.store.claim(
            now=self.clock.time(),
            limit=self.policy.concurrency,
            lease=self.policy.lease_seconds,
        )
        await asyncio.gather(*(self._process(lease) for lease in leases))
        return len(leases)

    async def purge_expired(self) -> int:
        """Delete finished events past their retention; how many were deleted."""
        now = self.clock.time()
        self._last_purge = now
        purged = await self.store.purge(
            before=now - self.policy.dedupe_horizon,
            statuses=(EventStatus.DELIVERED, EventStatus.IGNORED),
        )
        if self.policy.dead_retention is not None:
            purged += await self.store.purge(
                before=now - self.policy.dead_retention, statuses=(EventStatus.DEAD,)
            )
        if purged:
            logger.info("purged %d finished webhook events past retention", purged)
        return purged

    async def run(self) -> None:
        """Dispatch until `stop()`: up to `concurrency` events at once, as they come due."""
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not self._stopping:
                claimed = 0
                free = self.policy.concurrency - len(inflight)
                try:
                    if self._purge_due():
                        await self.purge_expired()
                    if free > 0:
                        self._wake.clear()
                        leases = await self.store.claim(
                            now=self.clock.time(), limit=free, lease=self.policy.lease_seconds
                        )
                        claimed = len(leases)
                        for lease in leases:
                            inflight.add(asyncio.create_task(self._process(lease)))
                    timeout = await self._idle_wait() if claimed < free else None
                except StoreError as exc:
                    logger.warning("webhook dispatcher cannot read the inbox store: %s", exc)
                    timeout = self.policy.poll_interval
                except Exception:
                    logger.exception("webhook dispatcher failed; trying again shortly")
                    timeout = self.policy.poll_interval
                if claimed and claimed == free:
                    # Everything claimed was due; more may be: look again once a slot frees up.
                    timeout = None
                waiters: set[asyncio.Future[Any]] = set(inflight)
                wake = asyncio.ensure_future(self._wake.wait())
                waiters.add(wake)
                if timeout is not None or not inflight:
                    done, _ = await asyncio.wait(
                        waiters,
                        timeout=self.policy.poll_interval if timeout is None else timeout,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                else:
                    done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                inflight -= {t for t in done if t is not wake}
        finally:
            if inflight:
                # Stopping: let running handlers finish within their timeout, then the leases
                # of anything cut short expire and the events are claimed again.
                await asyncio.wait(inflight, timeout=self.policy.handler_timeout)
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
            self._task = asyncio.create_task(self.run(), name="tether-webhook-dispatcher")

    async def stop(self) -> None:
        """Stop claiming; wait for running handlers (up to their timeout)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> Dispatcher:
        await self.store.open()
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
