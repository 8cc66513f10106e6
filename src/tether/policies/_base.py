"""The pipeline: each policy is `send(request, next_)`, the transport is the last link."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tether._types import Send

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["Policy", "build_pipeline"]


@runtime_checkable
class Policy(Protocol):
    """One link of the pipeline. It may change the request, wait, retry, or answer itself."""

    def send(self, request: Request, next_: Send) -> Awaitable[Response]:
        """Handle `request`, calling `next_` zero or more times."""
        ...


def _link(send: Callable[[Request, Send], Awaitable[Response]], next_: Send) -> Send:
    # A plain closure, not `partial(send, next_=...)`: a partial with a keyword goes through
    # CPython's generic call path and builds a kwargs dict on every request, while a Python
    # function calling a bound method stays on the interpreter's inlined fast path.
    def link(request: Request) -> Awaitable[Response]:
        return send(request, next_)

    return link


def build_pipeline(policies: Sequence[Policy], terminal: Send) -> Send:
    """Link `policies` in order in front of `terminal`, once, at client construction.

    Each link is a closure over the policy's bound `send` and the next link, so a request pays
    one plain call per policy and nothing to walk a list.
    """
    send = terminal
    for policy in reversed(policies):
        send = _link(policy.send, send)
    return send
