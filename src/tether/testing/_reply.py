"""What the mock API answers: a `Reply` value, and the `Outcome` a transport or server delivers."""

from __future__ import annotations

import json as jsonlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Any, Final, cast

from tether._errors import ConfigError
from tether.testing._faults import (
    DISCONNECTING,
    REPLACING,
    Drip,
    EmptyResponse,
    Fault,
    Hang,
    Latency,
    MalformedChunk,
    RateLimited,
    Reset,
    ServerError,
    Truncate,
    check_count,
)

__all__ = ["Outcome", "Reply"]

_UNSET: Final = object()

HeaderItems = tuple[tuple[str, str], ...]


def header_items(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> HeaderItems:
    if headers is None:
        return ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    items = tuple((str(name), str(value)) for name, value in pairs)
    for name, value in items:
        if any(c in name + value for c in "\r\n\x00"):
            raise ConfigError(f"header {name!r} holds a line break or NUL")
    return items


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: a status with a JSON, text or bytes body, or a fault instead (or on top).

    `times` repeats it that many calls in a stub's sequence; the last reply of a sequence
    repeats for ever.
    """

    status: int = 200
    json: Any = field(default=_UNSET, kw_only=True)
    body: bytes | str | None = field(default=None, kw_only=True)
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = field(
        default=None, kw_only=True
    )
    times: int = field(default=1, kw_only=True)
    fault: Fault | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        status: object = self.status
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ConfigError(f"Reply.status must be an HTTP status, got {status!r}")
        if self.json is not _UNSET and self.body is not None:
            raise ConfigError("a Reply has json= or body=, not both")
        check_count("Reply.times", self.times, minimum=1)
        # Normalized once, so a Reply given a dict stays hashable and immutable.
        object.__setattr__(self, "headers", header_items(self.headers))
        if self.json is not _UNSET:
            try:
                jsonlib.dumps(self.json)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"Reply.json is not JSON-serializable: {exc}") from None

    @property
    def header_items(self) -> HeaderItems:
        # __post_init__ stored the normalized tuple in the field.
        return cast("HeaderItems", self.headers)

    @property
    def has_json(self) -> bool:
        return self.json is not _UNSET

    def render(self, *, now_wall: float) -> tuple[int, HeaderItems, bytes]:
        """Status, headers and body bytes; a replacing fault renders its own answer."""
        fault = self.fault
        if isinstance(fault, RateLimited):
            return _error_answer(
                fault.status, "rate_limited", fault.retry_after, fault.as_date, now_wall
            )
        if isinstance(fault, ServerError):
            return _error_answer(fault.status, "server_error", fault.retry_after, False, now_wall)
        headers = list(self.header_items)
        names = {name.lower() for name, _ in headers}
        if self.json is not _UNSET:
            body = jsonlib.dumps(self.json, separators=(",", ":"), ensure_ascii=False).encode()
            if "content-type" not in names:
                headers.append(("Content-Type", "application/json"))
        elif isinstance(self.body, str):
            body = self.body.encode()
            if "content-type" not in names:
                headers.append(("Content-Type", "text/plain; charset=utf-8"))
        else:
            body = self.body or b""
        return self.status, tuple(headers), body


def _error_answer(
    status: int, code: str, retry_after: float | None, as_date: bool, now_wall: float
) -> tuple[int, HeaderItems, bytes]:
    headers: list[tuple[str, str]] = [("Content-Type", "application/json")]
    if retry_after is not None:
        if as_date:
            # HTTP dates have whole seconds: round up, so obeying the date never comes early.
            headers.append(
                ("Retry-After", formatdate(math.ceil(now_wall + retry_after), usegmt=True))
            )
        else:
            value = int(retry_after) if float(retry_after).is_integer() else retry_after
            headers.append(("Retry-After", str(value)))
    body = jsonlib.dumps({"error": code, "status": status}).encode()
    return status, tuple(headers), body


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one request ends: an answer, shaped by delays and faults, or a broken connection."""

    status: int = 200
    headers: HeaderItems = ()
    body: bytes = b""
    #: Seconds before the status line.
    delay: float = 0.0
    #: The connection ends instead of (or, `after_headers`, in the middle of) the answer.
    disconnect: Reset | EmptyResponse | Hang | None = None
    truncate: Truncate | None = None
    drip: Drip | None = None
    malformed: bool = False
    #: Which stub or built-in route answered, for journals and errors.
    route: str | None = None


def shape(outcome: Outcome, fault: Fault, *, jitter: float = 0.0) -> Outcome:
    """`outcome` with a shaping or disconnecting fault added."""
    if isinstance(fault, Latency):
        return replace(outcome, delay=outcome.delay + fault.seconds + jitter)
    if isinstance(fault, Truncate):
        return replace(outcome, truncate=fault)
    if isinstance(fault, Drip):
        return replace(outcome, drip=fault)
    if isinstance(fault, MalformedChunk):
        return replace(outcome, malformed=True)
    if isinstance(fault, DISCONNECTING):
        return replace(outcome, disconnect=fault)
    if isinstance(fault, REPLACING):
        raise ConfigError(f"{fault!r} replaces the answer; it cannot shape one")
    return outcome


def disconnects_before_answer(fault: Fault | None) -> bool:
    return isinstance(fault, EmptyResponse | Hang) or (
        isinstance(fault, Reset) and not fault.after_headers
    )
