"""Turning an error response into the right exception, with a safe message."""

from __future__ import annotations

from tether._core._advice import parse_retry_after
from tether._errors import HTTPStatusError, status_error_class
from tether._models import Response

__all__ = ["BODY_EXCERPT_CHARS", "status_error"]

#: Enough of an error body to see the server's reason, not enough to flood a log line.
BODY_EXCERPT_CHARS = 500


def status_error(
    response: Response,
    *,
    now_wall: float,
    retry_after: float | None = None,
    prefix: str = "",
) -> HTTPStatusError:
    """The exception for `response`, its body excerpt redacted and truncated."""
    request = response.request
    redactor = request.redactor if request is not None else None
    text = response.text
    excerpt = text[:BODY_EXCERPT_CHARS] + ("..." if len(text) > BODY_EXCERPT_CHARS else "")
    if redactor is not None:
        excerpt = redactor.text(excerpt)
    if retry_after is None:
        retry_after = parse_retry_after(response.headers, now_wall=now_wall)
    target = f" for {request.method} {request.redacted_url()}" if request is not None else ""
    parts = [f"{prefix}{response.status} {response.reason}{target}"]
    request_id = response.request_id
    if request_id:
        parts.append(f" (request id {request_id})")
    if response.attempts > 1:
        parts.append(f" after {response.attempts} attempts")
    if retry_after is not None:
        parts.append(f"; the server asked to retry after {retry_after:.1f} s")
    if excerpt.strip():
        parts.append(f": {excerpt.strip()}")
    cls = status_error_class(response.status)
    return cls("".join(parts), response=response, body=excerpt, retry_after=retry_after)
