"""What the client tells the outside world: one log record per attempt, and event hooks."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from tether._models import Request, Response

__all__ = ["Observer", "RequestHook", "ResponseHook", "RetryEvent", "RetryHook", "logger"]

logger = logging.getLogger("tether")


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A failed attempt that will be tried again after `delay` seconds."""

    request: Request
    #: The attempt that failed (1 for the first).
    attempt: int
    delay: float
    reason: str
    response: Response | None
    error: BaseException | None


RequestHook: TypeAlias = Callable[[Request], Awaitable[None] | None]
ResponseHook: TypeAlias = Callable[[Response], Awaitable[None] | None]
RetryHook: TypeAlias = Callable[[RetryEvent], Awaitable[None] | None]


_T = TypeVar("_T")


def _hooks(value: _T | Sequence[_T] | None) -> tuple[_T, ...]:
    if value is None:
        return ()
    if isinstance(value, Sequence):
        return tuple(value)
    return (value,)


async def _call_all(hooks: tuple[Callable[..., object], ...], argument: object) -> None:
    for hook in hooks:
        result = hook(argument)
        if inspect.isawaitable(result):
            await result


class Observer:
    """Logs each attempt on logger `tether` and calls the event hooks."""

    __slots__ = ("on_request", "on_response", "on_retry")

    def __init__(
        self,
        *,
        on_request: RequestHook | Sequence[RequestHook] | None = None,
        on_response: ResponseHook | Sequence[ResponseHook] | None = None,
        on_retry: RetryHook | Sequence[RetryHook] | None = None,
    ) -> None:
        self.on_request = _hooks(on_request)
        self.on_response = _hooks(on_response)
        self.on_retry = _hooks(on_retry)

    async def request(self, request: Request) -> None:
        await _call_all(self.on_request, request)

    async def response(self, response: Response) -> None:
        await _call_all(self.on_response, response)

    async def retry(self, event: RetryEvent) -> None:
        await _call_all(self.on_retry, event)

    @staticmethod
    def attempt(
        request: Request,
        *,
        attempt: int,
        elapsed: float,
        response: Response | None = None,
        error: BaseException | None = None,
        retry_reason: str | None = None,
        delay: float | None = None,
    ) -> None:
        """One structured record per attempt: DEBUG when it succeeded, INFO when it failed."""
        level = (
            logging.DEBUG if error is None and (response is None or response.ok) else logging.INFO
        )
        if not logger.isEnabledFor(level):
            return
        url = request.redacted_url()
        if response is not None:
            outcome = f"{response.status} {response.reason}"
        else:
            outcome = type(error).__name__
        message = (
            f"{request.method} {url} -> {outcome} in {elapsed * 1000:.1f} ms (attempt {attempt})"
        )
        if retry_reason is not None:
            if delay is not None:
                message += f"; retrying in {delay:.2f} s: {retry_reason}"
            else:
                message += f"; not retried: {retry_reason}"
        logger.log(
            level,
            message,
            extra={
                "method": request.method,
                "url": url,
                "status": response.status if response is not None else None,
                "elapsed": elapsed,
                "attempt": attempt,
                "retry_reason": retry_reason,
                "retry_delay": delay,
                "request_id": response.request_id if response is not None else None,
                "error": type(error).__name__ if error is not None else None,
            },
        )
