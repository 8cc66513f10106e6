"""Redirects are followed by the pipeline, and credentials never follow them to another origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import tether
from tests.conftest import LoopbackServer


def redirect(status: int, location: str):  # type: ignore[no-untyped-def]
    return lambda: web.Response(status=status, headers={"Location": location})


def ok():  # type: ignore[no-untyped-def]
    return lambda: web.json_response({"ok": True})


async def test_same_origin_keeps_credentials(server: LoopbackServer) -> None:
    """A redirect within the origin carries the header and the query credential."""
    server.script("GET", "/old", redirect(302, "/new?page=2"))
    server.script("GET", "/new", ok())
    auth = tether.auth.ApiKey("X-Api-Key", "k1")
    async with tether.Client(server.url, auth=auth, secrets=["q1"]) as c:
        response = await c.get("/old", params={"api_key": "q1", "keep": "no"})
    assert response.json() == {"ok": True}
    hop = server.seen[1]
    assert hop.headers["X-Api-Key"] == "k1"
    assert hop.query == {"page": "2", "api_key": "q1"}
    assert response.url.startswith(f"{server.url}/new?page=2")


async def test_cross_origin_drops_every_credential(server: LoopbackServer) -> None:
    """A hop to another origin carries no Authorization, API key header or key parameter."""
    other = server.url.replace("127.0.0.1", "localhost")
    server.script("GET", "/old", redirect(301, f"{other}/elsewhere?appid=echoed&x=1"))
    server.script("GET", "/elsewhere", ok())
    auth = tether.auth.ApiKey("appid", "sekret", location="query")
    async with tether.Client(
        server.url, auth=auth, headers={"X-Trace": "t1", "Authorization": "Bearer b"}
    ) as c:
        await c.get("/old")
    first, hop = server.seen
    assert first.query["appid"] == "sekret"
    assert "Authorization" not in hop.headers
    assert hop.query == {"x": "1"}
    assert hop.headers["X-Trace"] == "t1"


async def test_see_other_turns_post_into_get(server: LoopbackServer) -> None:
    """303 See Other fetches the new location with GET and no body."""
    server.script("POST", "/orders", redirect(303, "/orders/7"))
    server.script("GET", "/orders/7", ok())
    async with tether.Client(server.url) as c:
        response = await c.post("/orders", json={"item": 1})
    assert response.status == 200
    assert (server.seen[1].method, server.seen[1].body) == ("GET", b"")
    assert "Content-Type" not in server.seen[1].headers


async def test_temporary_redirect_keeps_method_and_body(server: LoopbackServer) -> None:
    """307 repeats the same method with the same body."""
    server.script("POST", "/a", redirect(307, "/b"))
    server.script("POST", "/b", ok())
    async with tether.Client(server.url) as c:
        await c.post("/a", json={"n": 1})
    assert (server.seen[1].method, server.seen[1].body) == ("POST", b'{"n":1}')


async def test_redirect_loop_is_bounded(server: LoopbackServer) -> None:
    """A redirect loop ends with NetworkError after max_redirects hops."""
    server.script("GET", "/loop", redirect(302, "/loop"))
    async with tether.Client(server.url, max_redirects=3, retry=None) as c:
        with pytest.raises(tether.NetworkError, match="more than 3 redirects"):
            await c.get("/loop")
    assert server.count("/loop") == 4


async def test_not_following(server: LoopbackServer) -> None:
    """With follow_redirects=False the 3xx response itself is returned."""
    server.script("GET", "/old", redirect(302, "/new"))
    async with tether.Client(server.url, follow_redirects=False) as c:
        response = await c.get("/old")
    assert response.status == 302
    assert response.headers["Location"] == "/new"


async def test_streamed_body_cannot_be_redirected(server: LoopbackServer) -> None:
    """A 307 for a streamed body raises instead of re-sending it empty."""
    server.script("PUT", "/a", redirect(307, "/b"))

    async def chunks() -> AsyncIterator[bytes]:
        yield b"data"

    async with tether.Client(server.url, retry=None) as c:
        with pytest.raises(tether.NetworkError, match="cannot be sent again"):
            await c.put("/a", content=chunks())


async def test_redirect_loop_is_not_retried(server: LoopbackServer) -> None:
    """A redirect loop would loop again, so the retry policy does not repeat the call."""
    server.script("GET", "/loop", redirect(302, "/loop"))
    async with tether.Client(server.url, max_redirects=2) as c:
        with pytest.raises(tether.TooManyRedirects):
            await c.get("/loop")
    assert server.count("/loop") == 3
