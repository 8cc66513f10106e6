"""The pipeline: each policy is `send(request, next_)`, the transport is the last link."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from functools import partial
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


def build_pipeline(policies: Sequence[Policy], terminal: Send) -> Send:
    """Link `policies` in order in front of `terminal`, once, at client construction.

    The links are bound partials, so a request pays one call per policy and nothing to walk
    a list.
    """
    send = terminal
    for policy in reversed(policies):
        send = partial(policy.send, next_=send)
    return send
