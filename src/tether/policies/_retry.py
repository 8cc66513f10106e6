"""The retry policy: attempts, deadlines, server advice, idempotency keys and the retry budget.

All decisions are made by `tether._core`; this module only measures time, sleeps and forwards.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import uuid
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tether._clock import Clock
from tether._config import Retry, Timeout
from tether._core._advice import parse_retry_after
from tether._core._budget import RetryBudgetState
from tether._core._retry import (
    Verdict,
    WaitKind,
    attempt_limits,
    classify_error,
    classify_status,
    plan_wait,
)
from tether._errors import (
    ConfigError,
    DeadlineExceeded,
    RequestError,
    RetryBudgetExhausted,
    TimeoutError,
)
from tether._models import Response
from tether._observe import Observer, RetryEvent, logger
from tether._status import status_error
from tether._types import Send

if TYPE_CHECKING:
    from tether._models import Request

__all__ = ["HostState", "RetryPolicy", "SharedAdvice"]

#: Keys under which a request may carry its own `Retry` and `Timeout` instead of the client's.
RETRY_EXTENSION = "tether.retry"
TIMEOUT_EXTENSION = "tether.timeout"


#: Longest a request waits for the shared store (a lookup or a publish) before going on with
#: what this process knows; the answer still lands when it comes.
SHARED_WAIT = 0.25
#: Pauses closer than this are the same pause seen twice (ours, read back from the store).
_SAME_PAUSE = 0.05
#: A failing shared store is reported at most this often.
_WARN_EVERY = 30.0


def _debug_log() -> bool:
    # Successful attempts log at DEBUG; checking first keeps the call off the hot path.
    return logger.isEnabledFor(logging.DEBUG)


@runtime_checkable
class SharedAdvice(Protocol):
    """Server pauses shared between processes; `tether.distributed.RedisAdviceStore` is one.

    Both calls are advisory: they answer 0 rather than raise when the store is unreachable.
    """

    #: Longest a client trusts its cached view of a host's shared pause, in seconds.
    refresh: float

    async def pause(self, key: str, seconds: float, *, status: int = 429) -> float:
        """Pause `key` everywhere for at least `seconds`; returns the pause in force."""
        ...

    async def lookup(self, key: str) -> tuple[float, int]:
        """Seconds left of `key`'s shared pause and the status that asked; (0.0, 0) if none."""
        ...


class HostState:
    """What one client knows about one host: its retry budget and any pause the server asked for."""

    __slots__ = (
        "budget",
        "host",
        "lookup",
        "pause_response",
        "pause_shared",
        "pause_until",
        "shared_until",
    )

    def __init__(self, retry: Retry, host: str = "") -> None:
        self.host = host
        budget = retry.budget
        self.budget = (
            RetryBudgetState(
                percent=budget.percent, min_per_second=budget.min_per_second, window=budget.window
            )
            if budget is not None
            else None
        )
        #: Monotonic time until which every request to this host waits (server advice).
        self.pause_until = 0.0
        self.pause_response: Response | None = None
        #: Whether the pause in force came from another process, through the shared store.
        self.pause_shared = False
        #: Until when the view of the shared pause is fresh enough (monotonic).
        self.shared_until = -math.inf
        #: The shared-store lookup in flight, awaited by every request that needs it.
        self.lookup: asyncio.Task[None] | None = None

    def pause(self, until: float, response: Response, *, shared: bool = False) -> None:
        if until > self.pause_until:
            self.pause_until = until
            self.pause_response = response
            self.pause_shared = shared


def _host_of(request: Request) -> str:
    url = request.url
    scheme_end = url.find("://")
    host_end = url.find("/", scheme_end + 3)
    return url if host_end < 0 else url[:host_end]


class RetryPolicy:
    """Runs attempts until one succeeds, a verdict says stop, or time or budget runs out.

    With `shared_advice`, every pause the policy records is published there under the host
    key (scheme, host and port), and pauses other processes published are honoured like the
    policy's own: read through a cached view that is at most `shared_advice.refresh` seconds
    old when an attempt starts, so no request pays a round trip of its own.
    """

    __slots__ = (
        "_by_url",
        "_clock",
        "_hosts",
        "_observer",
        "_random",
        "_retry",
        "_shared",
        "_timeout",
        "_warned_at",
    )

    def __init__(
        self,
        *,
        retry: Retry,
        timeout: Timeout,
        clock: Clock,
        observer: Observer,
        rand: random.Random | None = None,
        shared_advice: SharedAdvice | None = None,
    ) -> None:
        if shared_advice is not None and not isinstance(shared_advice, SharedAdvice):
            raise ConfigError(
                "shared_advice must be a tether.distributed.RedisAdviceStore (or have "
                f"refresh, pause() and lookup()), got {type(shared_advice).__name__}"
            )
        self._retry = retry
        self._timeout = timeout
        self._clock = clock
        self._observer = observer
        self._random = rand or random.Random()
        self._hosts: dict[str, HostState] = {}
        # The same state by full URL: most calls repeat a URL, and one lookup is all they pay.
        self._by_url: dict[str, HostState] = {}
        self._shared = shared_advice
        self._warned_at = -math.inf

    def host_state(self, host: str) -> HostState:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = HostState(self._retry, host)
        return state

    def _state_for(self, request: Request) -> HostState:
        state = self.host_state(_host_of(request))
        if len(self._by_url) >= 1024:
            self._by_url.clear()
        self._by_url[request.url] = state
        return state

    # One frame for the whole success path: every extra call here is paid by every request.
    async def send(self, request: Request, next_: Send) -> Response:  # noqa: PLR0915
        retry: Retry = request.extensions.get(RETRY_EXTENSION, self._retry)
        clock = self._clock
        observer = self._observer
        state = self._by_url.get(request.url) or self._state_for(request)
        if retry.idempotency_key and request.method not in retry.idempotent_methods:
            # One key per call, reused by every attempt: that is what makes the repeat safe.
            request.headers.setdefault(retry.idempotency_header, str(uuid.uuid4()))
        deadline = request.deadline
        limits: Timeout = request.extensions.get(TIMEOUT_EXTENSION, self._timeout)
        attempt_limit = limits.attempt
        connect_limit = limits.connect
        shared = self._shared
        started = now = clock.monotonic()
        if state.budget is not None:
            state.budget.deposit(started)
        last_failure: BaseException | None = None
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                now = clock.monotonic()
            if shared is not None and now >= state.shared_until:
                await self._consult(state, request)
                now = clock.monotonic()
            if state.pause_until > now:
                await self._wait_out_pause(state, request, retry, now)
                now = clock.monotonic()
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(
                    f"{request.method} {request.redacted_url()}: "
                    f"deadline passed before attempt {attempt}"
                ) from last_failure
            request.timeout, request.connect_timeout, capped = attempt_limits(
                remaining=remaining, attempt=attempt_limit, connect=connect_limit
            )
            if observer.on_request:
                await observer.request(request)
                now = clock.monotonic()
            attempt_start = now
            try:
                response = await next_(request)
            except RequestError as error:
                finished = clock.monotonic()
                delay, reason = self._after_error(
                    request, retry, state, error,
                    attempt=attempt, elapsed=finished - attempt_start, finished=finished,
                    capped=capped,
                )  # fmt: skip
                failure: BaseException = error
                answered: Response | None = None
            else:
                finished = clock.monotonic()
                response.attempts = attempt
                response.elapsed = finished - started
                if observer.on_response:
                    await observer.response(response)
                if response.status < 400:
                    if _debug_log():
                        observer.attempt(
                            request, attempt=attempt, elapsed=finished - attempt_start,
                            response=response,
                        )  # fmt: skip
                    return response
                result = await self._after_status(
                    request, retry, state, response,
                    attempt=attempt, elapsed=finished - attempt_start, finished=finished,
                )  # fmt: skip
                if result is None:
                    return response
                delay, reason, failure = result
                answered = response
            if observer.on_retry:
                await observer.retry(
                    RetryEvent(
                        request=request, attempt=attempt, delay=delay,
                        reason=reason, response=answered,
                        error=None if answered is not None else failure,
                    )
                )  # fmt: skip
            last_failure = failure
            await clock.sleep(delay)

    def _after_error(
        self,
        request: Request,
        retry: Retry,
        state: HostState,
        error: RequestError,
        *,
        attempt: int,
        elapsed: float,
        finished: float,
        capped: bool,
    ) -> tuple[float, str]:
        """The wait before retrying after a transport failure; raises when there is no retry."""
        if isinstance(error, TimeoutError) and capped:
            # The attempt was cut short by the call's deadline, not by its own limit.
            self._observer.attempt(request, attempt=attempt, elapsed=elapsed, error=error)
            raise DeadlineExceeded(
                f"{request.method} {request.redacted_url()}: "
                f"the call's deadline ran out during attempt {attempt}"
            ) from error
        verdict = classify_error(
            request.method,
            sent=error.sent,
            retryable=error.retryable,
            kind=type(error).__name__,
            idempotent_methods=retry.idempotent_methods,
            has_idempotency_key=retry.idempotency_header in request.headers,
        )
        delay = self._plan(
            request, retry, state, verdict,
            attempt=attempt, elapsed=elapsed, finished=finished, advised=None,
            response=None, error=error, failure=error,
        )  # fmt: skip
        if delay is None:
            raise error
        return delay, verdict.reason

    async def _after_status(
        self,
        request: Request,
        retry: Retry,
        state: HostState,
        response: Response,
        *,
        attempt: int,
        elapsed: float,
        finished: float,
    ) -> tuple[float, str, BaseException] | None:
        """The wait before retrying an error status, or None to hand the response back."""
        verdict = classify_status(
            request.method,
            response.status,
            response.headers,
            statuses=retry.statuses,
            idempotent_methods=retry.idempotent_methods,
            has_idempotency_key=retry.idempotency_header in request.headers,
        )
        if verdict is None:
            self._observer.attempt(request, attempt=attempt, elapsed=elapsed, response=response)
            return None
        advised = parse_retry_after(response.headers, now_wall=self._clock.time())
        if advised is not None:
            # Every request of this client to this host waits out the server's pause,
            # not only the one that was told.
            state.pause(finished + advised, response)
            if self._shared is not None and state.pause_response is response:
                await self._publish(state, response, advised)
        failure = status_error(response, now_wall=self._clock.time(), retry_after=advised)
        delay = self._plan(
            request, retry, state, verdict,
            attempt=attempt, elapsed=elapsed, finished=finished, advised=advised,
            response=response, error=None, failure=failure,
        )  # fmt: skip
        return None if delay is None else (delay, verdict.reason, failure)

    def _plan(
        self,
        request: Request,
        retry: Retry,
        state: HostState,
        verdict: Verdict,
        *,
        attempt: int,
        elapsed: float,
        finished: float,
        advised: float | None,
        response: Response | None,
        error: RequestError | None,
        failure: BaseException,
    ) -> float | None:
        """Seconds to wait before the next attempt, None to stop with the failure as it is, or
        an exception when the stop itself needs explaining (deadline, budget)."""

        def log(reason: str, delay: float | None = None) -> None:
            self._observer.attempt(
                request, attempt=attempt, elapsed=elapsed, response=response, error=error,
                retry_reason=reason, delay=delay,
            )  # fmt: skip

        target = f"{request.method} {request.redacted_url()}"
        if not verdict.retry:
            log(verdict.reason)
            return None
        if attempt >= retry.attempts:
            log(f"{verdict.reason}; all {retry.attempts} attempts used")
            return None
        if not request.replayable:
            log(f"{verdict.reason}; the request body is a stream and cannot be sent again")
            return None
        deadline = request.deadline
        wait = plan_wait(
            retry=attempt,
            advised=advised,
            base_delay=retry.base_delay,
            max_delay=retry.max_delay,
            max_retry_after=retry.max_retry_after,
            rand=self._random.random() if retry.jitter else 1.0,
            remaining=None if deadline is None else deadline - finished,
        )
        if wait.kind is WaitKind.ADVICE_TOO_LONG:
            # The caller gets the server's answer at once, with the advised wait on it.
            log(
                f"{verdict.reason}; the server asked for {wait.delay:.1f} s, "
                f"more than max_retry_after={retry.max_retry_after:g} s"
            )
            return None
        if wait.kind is WaitKind.PAST_DEADLINE:
            why = f"waiting {wait.delay:.1f} s would pass the deadline"
            log(f"{verdict.reason}; {why}")
            if wait.advised:
                return None
            raise DeadlineExceeded(f"{target}: {why}") from failure
        budget = state.budget
        if budget is not None and not budget.try_withdraw(finished):
            log(f"{verdict.reason}; retry budget exhausted")
            raise RetryBudgetExhausted(
                f"{target}: the retry budget for this host is spent ({verdict.reason})"
            ) from failure
        log(verdict.reason, wait.delay)
        return wait.delay

    async def _wait_out_pause(
        self, state: HostState, request: Request, retry: Retry, now: float
    ) -> None:
        wait = state.pause_until - now
        deadline = request.deadline
        too_long = wait > retry.max_retry_after
        if too_long or (deadline is not None and now + wait >= deadline):
            paused_by = state.pause_response
            if paused_by is None:  # a pause is always recorded with the response that asked
                raise RuntimeError("host pause without a response")
            raise status_error(
                paused_by,
                now_wall=self._clock.time(),
                retry_after=wait,
                prefix=(
                    "host paused by the server's advice (seen by another process): "
                    if state.pause_shared
                    else "host paused by the server's advice: "
                ),
            )
        await self._clock.sleep(wait)

    # -- advice shared with other processes ------------------------------------------------

    async def _consult(self, state: HostState, request: Request) -> None:
        """Bring the host's view of the shared pause up to date: one lookup, awaited by every
        request that finds the view stale meanwhile, and by none for long."""
        task = state.lookup
        if task is None:
            task = state.lookup = asyncio.get_running_loop().create_task(
                self._look_up(state, request)
            )
        await asyncio.wait((task,), timeout=SHARED_WAIT)

    async def _look_up(self, state: HostState, request: Request) -> None:
        shared = self._shared
        left, status = 0.0, 0
        try:
            if shared is not None:
                left, status = await shared.lookup(state.host)
        except Exception as error:  # advice is advisory: a broken store never fails a request
            self._warn(error)
        finally:
            state.lookup = None
            state.shared_until = self._clock.monotonic() + (
                shared.refresh if shared is not None else 0.0
            )
        if left > 0:
            until = self._clock.monotonic() + left
            if until > state.pause_until + _SAME_PAUSE:
                # The answer that asked for the pause went to another process: what it said
                # (status, wait) is all there is to raise with.
                stand_in = Response(
                    status or 429,
                    headers={"Retry-After": str(math.ceil(left))},
                    url=request.url,
                    request=request,
                )
                state.pause(until, stand_in, shared=True)

    async def _publish(self, state: HostState, response: Response, advised: float) -> None:
        task = asyncio.get_running_loop().create_task(self._share(state, response, advised))
        await asyncio.wait((task,), timeout=SHARED_WAIT)

    async def _share(self, state: HostState, response: Response, advised: float) -> None:
        shared = self._shared
        if shared is None:
            return
        try:
            in_force = await shared.pause(state.host, advised, status=response.status)
        except Exception as error:  # advice is advisory: a broken store never fails a request
            self._warn(error)
            return
        if in_force > advised + _SAME_PAUSE:
            # Another process was told to wait longer: the server meant it for everyone.
            state.pause(self._clock.monotonic() + in_force, response)

    def _warn(self, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            logger.warning(
                "shared server advice failed (%s); going on with this process's advice only",
                type(error).__name__,
            )
