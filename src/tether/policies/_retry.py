"""The retry policy: attempts, deadlines, server advice, idempotency keys and the retry budget.

All decisions are made by `tether._core`; this module only measures time, sleeps and forwards.
"""

from __future__ import annotations

import random
import uuid
from typing import TYPE_CHECKING

from tether._clock import Clock
from tether._config import Retry, Timeout
from tether._core._advice import parse_retry_after
from tether._core._budget import RetryBudgetState
from tether._core._retry import WaitKind, classify_error, classify_status, plan_wait
from tether._errors import (
    DeadlineExceeded,
    HTTPStatusError,
    RequestError,
    RetryBudgetExhausted,
    TimeoutError,
)
from tether._observe import Observer, RetryEvent
from tether._status import status_error
from tether._types import Send

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["HostState", "RetryPolicy"]

#: Key under which a request may carry its own `Retry` instead of the client's.
RETRY_EXTENSION = "tether.retry"


class HostState:
    """What one client knows about one host: its retry budget and any pause the server asked for."""

    __slots__ = ("budget", "pause_response", "pause_until")

    def __init__(self, retry: Retry) -> None:
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

    def pause(self, until: float, response: Response) -> None:
        if until > self.pause_until:
            self.pause_until = until
            self.pause_response = response


def _host_of(request: Request) -> str:
    url = request.url
    scheme_end = url.find("://")
    host_end = url.find("/", scheme_end + 3)
    return url if host_end < 0 else url[:host_end]


class RetryPolicy:
    """Runs attempts until one succeeds, a verdict says stop, or time or budget runs out."""

    __slots__ = ("_clock", "_hosts", "_observer", "_random", "_retry", "_timeout")

    def __init__(
        self,
        *,
        retry: Retry,
        timeout: Timeout,
        clock: Clock,
        observer: Observer,
        rand: random.Random | None = None,
    ) -> None:
        self._retry = retry
        self._timeout = timeout
        self._clock = clock
        self._observer = observer
        self._random = rand or random.Random()
        self._hosts: dict[str, HostState] = {}

    def host_state(self, host: str) -> HostState:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = HostState(self._retry)
        return state

    async def send(self, request: Request, next_: Send) -> Response:
        retry: Retry = request.extensions.get(RETRY_EXTENSION, self._retry)
        clock = self._clock
        observer = self._observer
        state = self.host_state(_host_of(request))
        method = request.method
        if retry.idempotency_key and method not in retry.idempotent_methods:
            # One key per call, reused by every attempt: that is what makes the repeat safe.
            request.headers.setdefault(retry.idempotency_header, str(uuid.uuid4()))
        has_key = retry.idempotency_header in request.headers
        deadline = request.deadline
        attempt_limit = self._timeout.attempt
        connect_limit = self._timeout.connect
        started = clock.monotonic()
        if state.budget is not None:
            state.budget.deposit(started)
        last_failure: BaseException | None = None
        attempt = 0
        while True:
            attempt += 1
            now = clock.monotonic()
            if state.pause_until > now:
                await self._wait_out_pause(state, request, retry, now)
                now = clock.monotonic()
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(
                    f"{method} {request.redacted_url()}: deadline passed before attempt {attempt}"
                ) from last_failure
            capped = remaining is not None and (attempt_limit is None or remaining < attempt_limit)
            timeout = remaining if capped else attempt_limit
            request.timeout = timeout
            request.connect_timeout = (
                connect_limit if timeout is None or (connect_limit is not None and connect_limit < timeout) else timeout
            )
            if observer.on_request:
                await observer.request(request)
            attempt_start = clock.monotonic()
            response: Response | None = None
            error: RequestError | None = None
            try:
                response = await next_(request)
            except RequestError as exc:
                error = exc
            finished = clock.monotonic()
            elapsed = finished - attempt_start

            if response is not None:
                response.attempts = attempt
                response.elapsed = finished - started
                if observer.on_response:
                    await observer.response(response)
                if response.status < 400:
                    observer.attempt(request, attempt=attempt, elapsed=elapsed, response=response)
                    return response
                verdict = classify_status(
                    method,
                    response.status,
                    response.headers,
                    statuses=retry.statuses,
                    idempotent_methods=retry.idempotent_methods,
                    has_idempotency_key=has_key,
                )
                if verdict is None:
                    observer.attempt(request, attempt=attempt, elapsed=elapsed, response=response)
                    return response
                advised = parse_retry_after(response.headers, now_wall=clock.time())
                if advised is not None:
                    # Every request of this client to this host waits out the server's pause,
                    # not only the one that was told.
                    state.pause(finished + advised, response)
            else:
                assert error is not None
                if isinstance(error, TimeoutError) and capped:
                    observer.attempt(request, attempt=attempt, elapsed=elapsed, error=error)
                    raise DeadlineExceeded(
                        f"{method} {request.redacted_url()}: the call's deadline ran out during attempt {attempt}"
                    ) from error
                verdict = classify_error(
                    method,
                    sent=error.sent,
                    kind=type(error).__name__,
                    idempotent_methods=retry.idempotent_methods,
                    has_idempotency_key=has_key,
                )
                advised = None

            stop_reason: str | None = None
            if not verdict.retry:
                stop_reason = verdict.reason
            elif attempt >= retry.attempts:
                stop_reason = f"{verdict.reason}; all {retry.attempts} attempts used"
            elif not request.replayable:
                stop_reason = f"{verdict.reason}; the request body is a stream and cannot be sent again"
            if stop_reason is not None:
                observer.attempt(
                    request, attempt=attempt, elapsed=elapsed, response=response, error=error,
                    retry_reason=stop_reason,
                )
                if error is not None:
                    raise error
                assert response is not None
                return response

            remaining = None if deadline is None else deadline - finished
            wait = plan_wait(
                retry=attempt,
                advised=advised,
                base_delay=retry.base_delay,
                max_delay=retry.max_delay,
                max_retry_after=retry.max_retry_after,
                rand=self._random.random() if retry.jitter else 1.0,
                remaining=remaining,
            )
            failure: BaseException = error if error is not None else self._status_error(response)
            if wait.kind is not WaitKind.SLEEP:
                why = (
                    f"the server asked for {wait.delay:.1f} s, more than max_retry_after={retry.max_retry_after:g} s"
                    if wait.kind is WaitKind.ADVICE_TOO_LONG
                    else f"waiting {wait.delay:.1f} s would pass the deadline"
                )
                observer.attempt(
                    request, attempt=attempt, elapsed=elapsed, response=response, error=error,
                    retry_reason=f"{verdict.reason}; {why}",
                )
                if wait.advised:
                    # The caller gets the server's answer at once, with the advised wait on it.
                    assert response is not None
                    return response
                raise DeadlineExceeded(f"{method} {request.redacted_url()}: {why}") from failure
            budget = state.budget
            if budget is not None and not budget.try_withdraw(finished):
                observer.attempt(
                    request, attempt=attempt, elapsed=elapsed, response=response, error=error,
                    retry_reason=f"{verdict.reason}; retry budget exhausted",
                )
                raise RetryBudgetExhausted(
                    f"{method} {request.redacted_url()}: retry budget for this host is spent "
                    f"({verdict.reason})"
                ) from failure
            observer.attempt(
                request, attempt=attempt, elapsed=elapsed, response=response, error=error,
                retry_reason=verdict.reason, delay=wait.delay,
            )
            if observer.on_retry:
                await observer.retry(
                    RetryEvent(
                        request=request, attempt=attempt, delay=wait.delay, reason=verdict.reason,
                        response=response, error=error,
                    )
                )
            last_failure = failure
            await clock.sleep(wait.delay)

    def _status_error(self, response: Response | None) -> HTTPStatusError:
        assert response is not None
        return status_error(response, now_wall=self._clock.time())

    async def _wait_out_pause(
        self, state: HostState, request: Request, retry: Retry, now: float
    ) -> None:
        wait = state.pause_until - now
        deadline = request.deadline
        too_long = wait > retry.max_retry_after
        if too_long or (deadline is not None and now + wait >= deadline):
            paused_by = state.pause_response
            assert paused_by is not None
            raise status_error(
                paused_by,
                now_wall=self._clock.time(),
                retry_after=wait,
                prefix="host paused by the server's advice: ",
            )
        await self._clock.sleep(wait)
