"""The transport protocol: the last link of the pipeline, and the only one that does I/O.

A transport maps its library's exceptions to tether's at this boundary, keeping the original as
`__cause__`, so every policy above it reasons about one error tree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tether._models import Request, Response
    from tether._redact import Redactor

__all__ = ["AsyncTransport", "scrub_exception"]


@runtime_checkable
class AsyncTransport(Protocol):
    """Sends one request and returns the complete response."""

    async def send(self, request: Request) -> Response:
        """Send `request` within `request.timeout` / `request.connect_timeout`."""
        ...

    async def aclose(self) -> None:
        """Release what the transport owns; never what the caller lent it."""
        ...


def scrub_exception(exc: BaseException, redactor: Redactor) -> None:
    """Hide known secrets in a lower layer's exception text before it becomes a `__cause__`.

    Some libraries put the full URL, query string included, in their messages; the cause is
    printed with every traceback, so its text must be as clean as ours.
    """
    if not redactor.secrets and not redactor.params:
        return
    original = [str(arg) for arg in exc.args]
    cleaned = [redactor.url(arg) if "://" in arg else redactor.text(arg) for arg in original]
    if cleaned != original:
        exc.args = tuple(cleaned)
