"""An in-memory transport for tests: a function answers every request, no sockets."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether._models import Request, Response

__all__ = ["MockTransport"]

Handler = Callable[["Request"], "Response | Awaitable[Response]"]


class MockTransport:
    """Answers with `handler(request)`, sync or async; the handler may raise tether errors
    (`ConnectError`, `ReadTimeout`, ...) to stand for network faults.
    """

    __slots__ = ("_handler", "requests")

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        #: A snapshot of every attempt, in order, as sent (after auth was applied).
        self.requests: list[Request] = []

    async def send(self, request: Request) -> Response:
        self.requests.append(request.copy())
        result = self._handler(request)
        response = await result if inspect.isawaitable(result) else result
        response.request = request
        if not response.url:
            response.url = request.url
        return response

    async def aclose(self) -> None:
        return None
