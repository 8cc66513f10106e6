"""The in-process way to run a `MockAPI`: a tether transport, no sockets, virtual time.

Connection faults cannot be real without a socket, so each becomes the tether error the real
transports raise for it (a reset is a `NetworkError`, a hang a `ReadTimeout`), and every wait is
spent on the mock's clock: with a `FakeClock`, a 30-second hang costs no wall time.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from tether._errors import NetworkError, ReadTimeout
from tether._models import Response
from tether.testing._faults import EmptyResponse, Hang, Reset
from tether.testing._match import MockRequest

if TYPE_CHECKING:
    from tether._clock import Clock
    from tether._models import Request
    from tether.testing._mockapi import MockAPI
    from tether.testing._reply import Outcome

__all__ = ["MockAPITransport", "pass_time"]


async def pass_time(clock: Clock, seconds: float) -> None:
    """Let `seconds` go by on `clock`.

    A clock that can be moved by hand (`FakeClock.advance`) is moved, so the mock's own
    latency does not show up in `FakeClock.sleeps`, which stays the list of the client's waits.
    """
    if seconds <= 0:
        return
    advance = getattr(clock, "advance", None)
    if advance is None:
        await clock.sleep(seconds)
        return
    wake_at = clock.monotonic() + seconds
    # Yield first, like FakeClock.sleep, so concurrent requests interleave as they would.
    await asyncio.sleep(0)
    behind = wake_at - clock.monotonic()
    if behind > 0:
        advance(behind)


async def _read_body(request: Request) -> bytes:
    content = request.content
    if content is None:
        return b""
    if isinstance(content, bytes):
        return content
    return b"".join([chunk async for chunk in content])


def _full_url(request: Request) -> str:
    if not request.params:
        return request.url
    joiner = "&" if "?" in request.url else "?"
    return request.url + joiner + urlencode(request.params)


class MockAPITransport:
    """Sends tether requests to a `MockAPI` in the same process."""

    __slots__ = ("_api",)

    def __init__(self, api: MockAPI) -> None:
        self._api = api

    @property
    def api(self) -> MockAPI:
        return self._api

    async def send(self, request: Request) -> Response:
        url = _full_url(request)
        parts = urlsplit(url)
        body = await _read_body(request)
        headers = list(request.headers.items())
        names = {name.lower() for name, _ in headers}
        # What aiohttp would put on the wire, so stubs see the same headers in every mode.
        if "host" not in names and parts.netloc:
            headers.append(("Host", parts.netloc))
        if body and "content-length" not in names:
            headers.append(("Content-Length", str(len(body))))
        incoming = MockRequest.build(
            request.method,
            url,
            path=parts.path,
            query_string=parts.query,
            headers=headers,
            body=body,
        )
        outcome = await self._api.handle(incoming)
        return await self._deliver(outcome, request, url)

    async def _deliver(self, outcome: Outcome, request: Request, url: str) -> Response:
        clock = self._api.clock
        limit = request.timeout
        target = f"{request.method} {request.redacted_url()}"
        spent = 0.0

        async def wait(seconds: float) -> None:
            nonlocal spent
            if limit is not None and spent + seconds >= limit:
                await pass_time(clock, limit - spent)
                raise ReadTimeout(
                    f"{target} timed out waiting for the response (after {limit:g} s)",
                    request=request,
                )
            await pass_time(clock, seconds)
            spent += seconds

        await wait(outcome.delay)
        fault = outcome.disconnect
        if isinstance(fault, Hang):
            await wait(self._api.hang_limit)
            raise ReadTimeout(
                f"{target}: the mock API hung for its hang_limit of {self._api.hang_limit:g} s",
                request=request,
            )
        if isinstance(fault, EmptyResponse):
            raise NetworkError(
                f"{target} failed after sending: the server closed the connection "
                "without answering",
                request=request,
            )
        if isinstance(fault, Reset) and not fault.after_headers:
            raise NetworkError(
                f"{target} failed after sending: connection reset by peer", request=request
            )
        body = b"" if request.method == "HEAD" else outcome.body
        if isinstance(fault, Reset):
            raise NetworkError(
                f"{target}: the response body was cut short (connection reset after the "
                f"headers, 0 of {len(body)} bytes)",
                request=request,
            )
        if outcome.malformed:
            raise NetworkError(
                f"{target}: the response body was cut short (a malformed chunk, then close)",
                request=request,
            )
        truncate = outcome.truncate
        if truncate is not None and truncate.keep < len(body):
            raise NetworkError(
                f"{target}: the response body was cut short ({truncate.keep} of {len(body)} bytes)",
                request=request,
            )
        if outcome.drip is not None:
            await wait(outcome.drip.duration)
        headers: CIMultiDict[str] = CIMultiDict(outcome.headers)
        if "content-length" not in headers:
            headers["Content-Length"] = str(len(outcome.body))
        return Response(
            outcome.status,
            headers=CIMultiDictProxy(headers),
            content=body,
            url=url,
            request=request,
        )

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<MockAPITransport {self._api!r}>"
