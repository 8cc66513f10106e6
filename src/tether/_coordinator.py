"""`Coordinator`: polls endpoints on their own schedules and keeps their last good data.

Home Assistant's DataUpdateCoordinator, with its users' most common complaints fixed: one
coordinator holds many endpoints with their own intervals; one failed poll does not make data
unavailable (only N failures in a row or T of staleness do); failures back off exponentially
and a rate limit's `Retry-After` is honoured; `request_refresh()` is debounced and coalesced;
listeners hear only about changes; an authentication failure stops polling and says so.

The rules are pure functions in `tether._core._polling`; this module waits and calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from tether._clock import Clock, SystemClock
from tether._core._polling import is_available, poll_delay, refresh_at
from tether._errors import (
    AuthenticationError,
    AuthError,
    ConfigError,
    HTTPStatusError,
    RateLimitWaitTooLong,
)

__all__ = ["Coordinator", "Endpoint", "Snapshot"]

logger = logging.getLogger("tether.coordinator")

T = TypeVar("T")

#: The default cap on the wait between failed polls: long enough to spare a failing API,
#: short enough that an outage's end is noticed within a quarter of an hour.
DEFAULT_MAX_FAILURE_INTERVAL = 900.0

Listener = Callable[["Snapshot[Any]"], Awaitable[None] | None]
AuthFailureHook = Callable[[str, BaseException], Awaitable[None] | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot(Generic[T]):
    """An endpoint's state at one moment.

    `data` is the last good data (kept through failures); `available` says whether it may
    still be shown under the endpoint's availability rule. `last_success` is wall-clock epoch
    seconds; `age` is seconds since then, on the monotonic clock.
    """

    name: str
    data: T | None
    available: bool
    last_success: float | None
    age: float | None
    consecutive_failures: int
    last_error: BaseException | None
    #: False once polling stopped: after an authentication failure, or `stop()`.
    polling: bool


def _retry_after(error: BaseException) -> float | None:
    if isinstance(error, HTTPStatusError):
        return error.retry_after
    if isinstance(error, RateLimitWaitTooLong):
        return error.wait
    return None


def _is_auth_failure(error: BaseException) -> bool:
    # A 401, or a token endpoint saying the grant or client is no longer valid: polling again
    # with the same credentials cannot succeed, and would only add failed logins.
    return isinstance(error, AuthenticationError | AuthError)


async def _call(hook: Callable[..., Awaitable[None] | None], *args: Any, what: str) -> None:
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("%s raised", what)


class Endpoint(Generic[T]):
    """One polled source inside a `Coordinator`; made by `Coordinator.endpoint()`."""

    def __init__(
        self,
        coordinator: Coordinator,
        name: str,
        fetch: Callable[[], Awaitable[T]],
        *,
        interval: float,
        jitter: float,
        failure_interval: float,
        max_failure_interval: float,
        unavailable_after_failures: int,
        unavailable_after: float | None,
        always_update: bool,
        cooldown: float,
    ) -> None:
        self.name = name
        self._coordinator = coordinator
        self._fetch = fetch
        self.interval = interval
        self.jitter = jitter
        self.failure_interval = failure_interval
        self.max_failure_interval = max_failure_interval
        self.unavailable_after_failures = unavailable_after_failures
        self.unavailable_after = unavailable_after
        self.always_update = always_update
        self.cooldown = cooldown
        self._clock = coordinator._clock
        self._data: T | None = None
        self._has_data = False
        self._last_success_wall: float | None = None
        self._last_success: float | None = None
        self._failures = 0
        self._last_error: BaseException | None = None
        self._retry_after: float | None = None
        self._polling = True
        self._notified_available: bool | None = None
        self._listeners: list[Listener] = []
        self._inflight: asyncio.Task[Snapshot[T]] | None = None
        self._last_started: float | None = None
        self._again = False
        self._refresh_at: float | None = None
        self._next_poll_at = 0.0
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()

    # -- state ----------------------------------------------------------------------------

    @property
    def data(self) -> T | None:
        """The last good data, kept through failures."""
        return self._data

    @property
    def available(self) -> bool:
        return self._available(self._age())

    @property
    def polling(self) -> bool:
        return self._polling and self._loop_task is not None and not self._loop_task.done()

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def last_error(self) -> BaseException | None:
        return self._last_error

    @property
    def last_success(self) -> float | None:
        """Wall-clock epoch seconds of the last successful poll."""
        return self._last_success_wall

    @property
    def age(self) -> float | None:
        """Seconds since the last successful poll (monotonic)."""
        return self._age()

    def _age(self) -> float | None:
        if self._last_success is None:
            return None
        return max(0.0, self._clock.monotonic() - self._last_success)

    def _available(self, age: float | None) -> bool:
        return is_available(
            has_data=self._has_data,
            consecutive_failures=self._failures,
            age=age,
            max_failures=self.unavailable_after_failures,
            max_age=self.unavailable_after,
        )

    def snapshot(self) -> Snapshot[T]:
        age = self._age()
        return Snapshot(
            name=self.name,
            data=self._data,
            available=self._available(age),
            last_success=self._last_success_wall,
            age=age,
            consecutive_failures=self._failures,
            last_error=self._last_error,
            polling=self._polling,
        )

    # -- listeners ------------------------------------------------------------------------

    def add_listener(
        self, listener: Callable[[Snapshot[T]], Awaitable[None] | None]
    ) -> Callable[[], None]:
        """Call `listener(snapshot)` when the data or its availability changes; returns a
        function that removes it again."""
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    async def _notify(self, snapshot: Snapshot[T]) -> None:
        self._notified_available = snapshot.available
        for listener in list(self._listeners):
            await _call(listener, snapshot, what=f"listener of {self.name!r}")

    # -- refreshing -----------------------------------------------------------------------

    async def refresh(self) -> Snapshot[T]:
        """Poll now, bypassing the debounce; joins a poll already in flight instead of
        starting a second one. Never raises a fetch error: it is in the snapshot."""
        task = self._inflight
        if task is None or task.done():
            task = self._inflight = asyncio.create_task(
                self._poll(), name=f"tether-coordinator {self.name}"
            )
        return await asyncio.shield(task)

    def request_refresh(self) -> None:
        """Ask for a poll soon: at once if none started within `cooldown` seconds, otherwise
        when the cooldown ends. Any number of requests meanwhile become one poll; a request
        during a poll in flight schedules one more after it."""
        if not self._polling:
            return
        if self._inflight is not None and not self._inflight.done():
            self._again = True
            return
        at = refresh_at(
            now=self._clock.monotonic(), last_started=self._last_started, cooldown=self.cooldown
        )
        if self._refresh_at is None or at < self._refresh_at:
            self._refresh_at = at
        if self._wake is not None:
            self._wake.set()

    def resume(self) -> None:
        """Start polling again after an authentication failure was fixed."""
        self._polling = True
        if self._coordinator._started and (self._loop_task is None or self._loop_task.done()):
            self._start()

    async def _poll(self) -> Snapshot[T]:
        clock = self._clock
        self._last_started = clock.monotonic()
        self._again = False
        previous, had_data = self._data, self._has_data
        try:
            data = await self._fetch()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # every failure is recorded, none is lost
            return await self._failed(error)
        finally:
            self._first.set()
        recovered = self._failures > 0
        self._data = data
        self._has_data = True
        self._last_success = clock.monotonic()
        self._last_success_wall = clock.time()
        self._failures = 0
        self._last_error = None
        self._retry_after = None
        if recovered:
            logger.info("%s recovered", self.name)
        snapshot = self.snapshot()
        changed = not had_data or data != previous
        if self.always_update or changed or snapshot.available != self._notified_available:
            await self._notify(snapshot)
        return snapshot

    async def _failed(self, error: BaseException) -> Snapshot[T]:
        self._failures += 1
        self._last_error = error
        self._retry_after = _retry_after(error)
        if self._failures == 1:
            # Once per outage, like Home Assistant: the next lines would say the same.
            logger.warning("%s failed: %s: %s", self.name, type(error).__name__, error)
        else:
            logger.debug("%s failed again (%d): %s", self.name, self._failures, error)
        if _is_auth_failure(error):
            self._polling = False
            logger.error("%s: authentication failed; polling stopped until resume()", self.name)
        snapshot = self.snapshot()
        if self.always_update or snapshot.available != self._notified_available:
            await self._notify(snapshot)
        if not self._polling:
            hook = self._coordinator._on_auth_failure
            if hook is not None:
                await _call(hook, self.name, error, what="on_auth_failure")
        return snapshot

    def _delay(self) -> float:
        return poll_delay(
            interval=self.interval,
            jitter=self.jitter,
            rand=self._coordinator._random.random(),
            consecutive_failures=self._failures,
            failure_interval=self.failure_interval,
            max_failure_interval=self.max_failure_interval,
            retry_after=self._retry_after,
        )

    def _start(self) -> None:
        self._wake = asyncio.Event()
        self._loop_task = asyncio.create_task(
            self._run(), name=f"tether-coordinator-loop {self.name}"
        )

    async def _run(self) -> None:
        clock = self._clock
        while self._polling:
            await self.refresh()
            if not self._polling:
                return
            now = clock.monotonic()
            self._next_poll_at = now + self._delay()
            if self._again:
                self._again = False
                self._refresh_at = refresh_at(
                    now=now, last_started=self._last_started, cooldown=self.cooldown
                )
            await self._wait_until_due()

    async def _wait_until_due(self) -> None:
        clock = self._clock
        wake = self._wake
        assert wake is not None  # noqa: S101 - set by _start()
        while self._polling:
            now = clock.monotonic()
            due = self._next_poll_at
            requested = self._refresh_at
            if requested is not None and requested < due:
                due = requested
            if now >= due:
                if requested is not None and requested <= now:
                    self._refresh_at = None
                return
            stale_at = self._stale_at()
            if stale_at is not None and now >= stale_at:
                # The data aged past `unavailable_after` between polls: say so now, not at
                # the next poll, which may be a long backoff away.
                await self._notify(self.snapshot())
                continue
            wake_at = due if stale_at is None else min(due, stale_at)
            wake.clear()
            sleeper = asyncio.ensure_future(clock.sleep(wake_at - now))
            waker = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task

    def _stale_at(self) -> float | None:
        """When listeners told "available" must hear that the data went stale, if ever."""
        if (
            self.unavailable_after is None
            or self._last_success is None
            or self._notified_available is not True
        ):
            return None
        # Just past the limit: at exactly `unavailable_after` the data still counts as fresh.
        return self._last_success + self.unavailable_after + 1e-6

    async def _stop(self) -> None:
        tasks = [t for t in (self._loop_task, self._inflight) if t is not None and not t.done()]
        self._loop_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait_first(self) -> None:
        """Wait until the first poll has finished, successfully or not."""
        await self._first.wait()

    def __repr__(self) -> str:
        return (
            f"<Endpoint {self.name!r} interval={self.interval:g}s "
            f"available={self.available} failures={self._failures}>"
        )


def _positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    candidate: object = value
    if isinstance(candidate, bool) or not isinstance(candidate, int | float) or candidate <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")


class Coordinator:
    """Polls named endpoints, each on its own schedule, and keeps their last good data.

    ::

        coordinator = tether.Coordinator(on_auth_failure=start_reauth)
        weather = coordinator.endpoint("weather", lambda: client.get_json("/weather"), interval=600)
        weather.add_listener(update_entities)
        async with coordinator:
            ...

    Args:
        clock: The time source for every wait; tests pass a fake clock.
        rand: Randomness for jitter (tests pass a seeded `random.Random`).
        cooldown: Default debounce for `request_refresh()`, in seconds.
        on_auth_failure: Called with (endpoint name, error) when an authentication failure
            stops an endpoint's polling.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        rand: random.Random | None = None,
        cooldown: float = 10.0,
        on_auth_failure: AuthFailureHook | None = None,
    ) -> None:
        _positive("cooldown", cooldown)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._random = rand if rand is not None else random.Random()
        self._cooldown = cooldown
        self._on_auth_failure = on_auth_failure
        self._endpoints: dict[str, Endpoint[Any]] = {}
        self._started = False

    def endpoint(
        self,
        name: str,
        fetch: Callable[[], Awaitable[T]],
        *,
        interval: float,
        jitter: float = 0.1,
        failure_interval: float | None = None,
        max_failure_interval: float | None = None,
        unavailable_after_failures: int = 3,
        unavailable_after: float | None = None,
        always_update: bool = False,
        cooldown: float | None = None,
    ) -> Endpoint[T]:
        """Add an endpoint polled every `interval` seconds.

        Args:
            fetch: A coroutine function returning the data (a `tether.Client` call, say).
            jitter: Up to this fraction of the interval is added at random to each wait.
            failure_interval: First wait after a failure (default: `interval`); it doubles per
                consecutive failure up to `max_failure_interval` (default: the larger of
                `interval` and 15 minutes). A server's `Retry-After` is always waited out.
            unavailable_after_failures: Consecutive failures that make the data unavailable.
            unavailable_after: Seconds since the last success that make it unavailable too.
            always_update: Call listeners after every poll, not only on change.
            cooldown: Debounce for `request_refresh()` (default: the coordinator's).
        """
        if not name or not isinstance(name, str):
            raise ConfigError("an endpoint needs a name")
        if name in self._endpoints:
            raise ConfigError(f"an endpoint named {name!r} already exists")
        if not callable(fetch):
            raise ConfigError("fetch must be a coroutine function taking no arguments")
        _positive("interval", interval)
        _positive("failure_interval", failure_interval, allow_none=True)
        _positive("max_failure_interval", max_failure_interval, allow_none=True)
        _positive("unavailable_after", unavailable_after, allow_none=True)
        _positive("cooldown", cooldown, allow_none=True)
        if not 0 <= jitter <= 1:
            raise ConfigError(f"jitter is a fraction of the interval in 0..1, got {jitter!r}")
        if unavailable_after_failures < 1:
            raise ConfigError("unavailable_after_failures must be at least 1")
        endpoint: Endpoint[T] = Endpoint(
            self,
            name,
            fetch,
            interval=interval,
            jitter=jitter,
            failure_interval=failure_interval if failure_interval is not None else interval,
            max_failure_interval=(
                max_failure_interval
                if max_failure_interval is not None
                else max(interval, DEFAULT_MAX_FAILURE_INTERVAL)
            ),
            unavailable_after_failures=unavailable_after_failures,
            unavailable_after=unavailable_after,
            always_update=always_update,
            cooldown=cooldown if cooldown is not None else self._cooldown,
        )
        self._endpoints[name] = endpoint
        if self._started:
            endpoint._start()
        return endpoint

    def __getitem__(self, name: str) -> Endpoint[Any]:
        return self._endpoints[name]

    def __iter__(self) -> Iterator[Endpoint[Any]]:
        return iter(list(self._endpoints.values()))

    def __len__(self) -> int:
        return len(self._endpoints)

    def snapshot(self) -> dict[str, Snapshot[Any]]:
        """Every endpoint's state, by name."""
        return {name: endpoint.snapshot() for name, endpoint in self._endpoints.items()}

    async def start(self) -> None:
        """Start polling every endpoint; each polls once at once. Idempotent."""
        if self._started:
            return
        self._started = True
        for endpoint in self._endpoints.values():
            if endpoint._polling:
                endpoint._start()

    async def stop(self) -> None:
        """Stop polling and cancel every task the coordinator started; data is kept."""
        self._started = False
        for endpoint in self._endpoints.values():
            await endpoint._stop()

    async def __aenter__(self) -> Coordinator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<Coordinator endpoints={list(self._endpoints)} started={self._started}>"
