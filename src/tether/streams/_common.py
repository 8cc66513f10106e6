"""What the WebSocket and SSE clients share: URL and credential checks, hooks, the bounded
receive queue, and turning a refused handshake into tether's error tree."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from multidict import CIMultiDict

from tether._client import USER_AGENT, _is_loopback
from tether._errors import ConfigError, HTTPStatusError
from tether._models import Request, Response
from tether._redact import Redactor
from tether._status import status_error
from tether._types import SecretLike, reveal
from tether.auth._base import Credential
from tether.streams._events import Overflow

__all__ = [
    "Hook",
    "MessageQueue",
    "QueueOverflow",
    "call_hook",
    "check_url",
    "handshake_error",
    "make_redactor",
    "make_request",
]

logger = logging.getLogger("tether.streams")

T = TypeVar("T")

#: A hook may be a plain function or a coroutine function.
Hook = Callable[..., Awaitable[None] | None]


async def call_hook(hook: Hook | None, *args: Any, what: str) -> None:
    """Run a user hook; its failure is logged, never allowed to take the stream down."""
    if hook is None:
        return
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        # The stream outlives a bug in one callback; the log shows which hook and why.
        logger.exception("%s raised", what)


def check_url(
    url: str,
    *,
    schemes: Iterable[str],
    auth: Credential | None,
    allow_insecure: bool,
    secure_schemes: Iterable[str],
) -> str:
    """Validate a stream URL; refuse credentials over plain text to a non-loopback host."""
    if not isinstance(url, str):
        raise ConfigError(f"url must be a string, got {type(url).__name__}")
    parts = urlsplit(url)
    allowed = tuple(schemes)
    if parts.scheme not in allowed or not parts.hostname:
        raise ConfigError(f"url must be an absolute {'/'.join(allowed)} URL")
    if (
        auth is not None
        and auth.needs_secure_transport
        and not allow_insecure
        and parts.scheme not in tuple(secure_schemes)
        and not _is_loopback(parts.hostname)
    ):
        raise ConfigError(
            f"refusing to send credentials over plain {parts.scheme} to {parts.hostname}; "
            "use a TLS URL, or pass allow_insecure_http=True"
        )
    return url


def make_redactor(auth: Credential | None, secrets: Iterable[SecretLike]) -> Redactor:
    redactor = Redactor(secrets=map(reveal, secrets))
    if auth is not None:
        redactor = redactor.merge(auth.redactor())
    return redactor


def make_request(url: str, headers: Mapping[str, str] | None, redactor: Redactor) -> Request:
    """A fresh request for one opening handshake, for the credential to apply itself to."""
    merged: CIMultiDict[str] = CIMultiDict({"User-Agent": USER_AGENT})
    if headers:
        merged.update(headers)
    return Request("GET", url, headers=merged, redactor=redactor)


def handshake_error(
    status: int,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    request: Request,
    *,
    now_wall: float,
    body: bytes = b"",
    prefix: str = "",
) -> HTTPStatusError:
    """The `HTTPStatusError` subclass for a refused handshake (401 -> AuthenticationError, 429 ->
    RateLimitError with `.retry_after`, ...), its text redacted."""
    response = Response(status, headers=headers, content=body, url=request.url, request=request)
    return status_error(response, now_wall=now_wall, prefix=prefix)


class QueueOverflow(Exception):
    """Raised inside the reader when `Overflow.DISCONNECT` fires."""


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class MessageQueue(Generic[T]):
    """A bounded FIFO between the socket reader and the consumer, with an overflow policy.

    Leaner than `asyncio.Queue` on purpose: the reader appends and the consumer pops without a
    context switch while both have work, which is what keeps the wrapper near raw throughput.
    """

    __slots__ = ("_end", "_getter", "_items", "_low", "_maxsize", "_policy", "_putter", "dropped")

    def __init__(self, maxsize: int, policy: Overflow) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        # A blocked reader is woken at half full, not at every pop: one wake-up per batch.
        self._low = maxsize // 2
        self._policy = policy
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None
        self._end: _End | None = None
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self._maxsize

    @property
    def ended(self) -> bool:
        return self._end is not None

    def _wake_getter(self) -> None:
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    async def put(self, item: T) -> None:
        """Queue `item`, applying the overflow policy when the queue is full."""
        items = self._items
        if len(items) >= self._maxsize:
            if self._policy is Overflow.DROP_OLDEST:
                items.popleft()
                self.dropped += 1
            elif self._policy is Overflow.DISCONNECT:
                raise QueueOverflow
            else:
                while len(items) >= self._maxsize and self._end is None:
                    putter = self._putter = asyncio.get_running_loop().create_future()
                    try:
                        await putter
                    finally:
                        self._putter = None
                if self._end is not None:
                    return
        items.append(item)
        if self._getter is not None:
            self._wake_getter()

    async def wait_room(self, level: int) -> None:
        """Wait until at most `level` items are queued (or the queue has ended)."""
        while len(self._items) > level and self._end is None:
            putter = self._putter = asyncio.get_running_loop().create_future()
            try:
                await putter
            finally:
                self._putter = None

    async def get(self) -> T:
        """The next item; raises the stream's error, or StopAsyncIteration, once drained."""
        items = self._items
        while not items:
            end = self._end
            if end is not None:
                if end.error is not None:
                    raise end.error
                raise StopAsyncIteration
            getter = self._getter = asyncio.get_running_loop().create_future()
            try:
                await getter
            finally:
                if self._getter is getter:
                    self._getter = None
        item = items.popleft()
        putter = self._putter
        if putter is not None and len(items) <= self._low and not putter.done():
            putter.set_result(None)
        return item

    def end(self, error: BaseException | None) -> None:
        """No more items will come; consumers drain what is queued, then see `error` or the end."""
        if self._end is None:
            self._end = _End(error)
        self._wake_getter()
        putter = self._putter
        if putter is not None and not putter.done():
            putter.set_result(None)
