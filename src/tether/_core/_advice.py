"""Server advice: what the response says about retrying and waiting.

Parsing order follows the Stainless/OpenAI SDKs and azure-core: `retry-after-ms` (more precise,
non-standard), then `Retry-After` as delta-seconds, then `Retry-After` as an HTTP-date
(RFC 9110 §10.2.3). Unparseable advice is ignored rather than trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

__all__ = ["http_date", "parse_retry_after", "server_now", "should_retry_header"]


def http_date(value: str) -> float | None:
    """Epoch seconds of an HTTP-date (RFC 9110 §5.6.7), or None when it is not one."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # An HTTP-date always names GMT; one without a zone is not an HTTP-date.
        return None
    return parsed.timestamp()


def server_now(headers: Mapping[str, str], now_wall: float) -> float:
    """The server's clock at the time of the response (its `Date`), else ours.

    Times the server states as dates are measured against its own clock, so a skewed client
    clock neither stretches nor shrinks the waits they imply.
    """
    date = headers.get("date")
    if date is not None:
        stated = http_date(date)
        if stated is not None:
            return stated
    return now_wall


def _finite_non_negative(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def parse_retry_after(headers: Mapping[str, str], *, now_wall: float) -> float | None:
    """Seconds the server asks us to wait, or None when it gave no usable advice.

    `headers` must be case-insensitive. `now_wall` is the client's epoch time; when the response
    carries a `Date` header, an HTTP-date is measured against the server's own clock instead, so
    a skewed client clock does not stretch or shrink the wait. A date in the past means 0.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        parsed = _finite_non_negative(millis.strip())
        if parsed is not None:
            return parsed / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    # RFC 9110 §10.2.3: delay-seconds is a non-negative integer; floats are accepted because
    # real servers send them and the intent is unambiguous.
    seconds = _finite_non_negative(value)
    if seconds is not None:
        return seconds
    when = http_date(value)
    if when is None:
        return None
    return max(0.0, when - server_now(headers, now_wall))


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The server's explicit verdict from `x-should-retry`, or None when it gave none."""
    value = headers.get("x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None
