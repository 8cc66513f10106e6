"""Helpers for cache tests: a pipeline with the cache policy in front, and dated replies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate

import pytest
from aiohttp import web
from multidict import CIMultiDict

import tether
from tests.conftest import LoopbackServer
from tether._cache_config import Cache
from tether._redact import Redactor
from tether._types import Send
from tether.policies._base import Policy, build_pipeline
from tether.policies._cache import CACHE_TTL_EXTENSION, CachePolicy
from tether.testing import FakeClock
from tether.transports._aiohttp import AiohttpTransport


def http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


def reply(
    clock: FakeClock,
    body: str = "v1",
    headers: Mapping[str, str] | None = None,
    *,
    status: int = 200,
) -> Callable[[], web.StreamResponse]:
    """A server answer dated by the test's clock (aiohttp would date it by the real one)."""

    def make() -> web.StreamResponse:
        fields = {"Date": http_date(clock.time()), **(headers or {})}
        if status == 304:
            return web.Response(status=304, headers=fields)
        return web.Response(status=status, text=body, headers=fields)

    return make


def validating(
    clock: FakeClock, etag: str, body: str, headers: Mapping[str, str] | None = None
) -> Callable[[web.Request], object]:
    """A handler answering 304 when the request carries `etag` in If-None-Match."""

    async def handle(request: web.Request) -> web.StreamResponse:
        fields = {"Date": http_date(clock.time()), "ETag": etag, **(headers or {})}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=fields)
        return web.Response(text=body, headers=fields)

    return handle


@dataclass
class Rig:
    """The cache policy in front of (optional) further policies and a real transport."""

    policy: CachePolicy
    send: Send
    clock: FakeClock
    url: str

    def request(
        self,
        path: str = "/x",
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        params: list[tuple[str, str]] | None = None,
        ttl: float | None = None,
        content: bytes | None = None,
        redactor: Redactor | None = None,
    ) -> tether.Request:
        request = tether.Request(
            method,
            self.url + path,
            headers=CIMultiDict(headers or {}),
            params=params,
            content=content,
            redactor=redactor if redactor is not None else Redactor(),
        )
        if ttl is not None:
            request.extensions[CACHE_TTL_EXTENSION] = ttl
        return request

    async def get(self, path: str = "/x", **options: object) -> tether.Response:
        return await self.send(self.request(path, **options))  # type: ignore[arg-type]


@dataclass
class RigFactory:
    server: LoopbackServer
    made: list[tuple[CachePolicy, AiohttpTransport]] = field(default_factory=list)

    def __call__(
        self,
        cache: Cache | None = None,
        *,
        below: Sequence[Policy] = (),
        clock: FakeClock | None = None,
        terminal: Callable[[AiohttpTransport], Send] | None = None,
    ) -> Rig:
        clock = clock or FakeClock()
        policy = CachePolicy(cache or Cache(), clock=clock)
        transport = AiohttpTransport()
        self.made.append((policy, transport))
        last = terminal(transport) if terminal is not None else transport.send
        return Rig(policy, build_pipeline([policy, *below], last), clock, self.server.url)


@pytest.fixture
async def make_rig(server: LoopbackServer) -> AsyncIterator[RigFactory]:
    factory = RigFactory(server)
    yield factory
    for policy, transport in factory.made:
        await policy.aclose()
        await transport.aclose()
