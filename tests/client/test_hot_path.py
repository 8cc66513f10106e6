"""The request path's shortcuts keep the behaviour of the long way round."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web

import tether
from tests.conftest import FaultServer, LoopbackServer
from tether.transports import AiohttpTransport

BODIES = [
    b'{"a":[1,2],"b":"\xc3\xa9"}',
    b"12",
    b"7",
    b"",
    b" \n[true]",
    codecs.BOM_UTF8 + b'{"a":1}',
    '{"a":"é"}'.encode("utf-16"),
    '{"a":1}'.encode("utf-16-le"),
    '{"a":1}'.encode("utf-16-be"),
    '{"a":1}'.encode("utf-32"),
    '{"a":1}'.encode("utf-32-le"),
    '"\ud800"'.encode("utf-8", "surrogatepass"),
    b'{"a":\xff}',
    b"nope",
]


def _outcome(decode: Callable[[], object]) -> tuple[object, object]:
    try:
        return "value", decode()
    except ValueError as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize("body", BODIES)
def test_json_decodes_every_body_as_json_loads_does(body: bytes) -> None:
    """Response.json() gives json.loads' value, or raises its exception, for any encoding."""
    response = tether.Response(200, content=body)
    assert _outcome(response.json) == _outcome(lambda: json.loads(body))


async def test_each_response_gives_its_connection_back(fault_server: FaultServer) -> None:
    """With a pool of one connection, calls in a row all complete, after a cut-short body too."""
    fault_server.plan = ["ok", "truncate", "ok", "ok"]
    transport = AiohttpTransport(max_connections=1)
    async with tether.Client(
        fault_server.url, transport=transport, retry=None, timeout=5.0
    ) as client:
        assert (await client.get("/a")).json() == {"ok": True}
        with pytest.raises(tether.NetworkError):
            await client.get("/b")
        assert (await client.get("/c")).status == 200
        assert (await client.get("/d")).status == 200
    assert fault_server.requests == 4


async def test_a_lent_session_closed_by_its_owner_is_a_config_error(
    fault_server: FaultServer,
) -> None:
    """A request through a lent session its owner closed says so, and sends nothing."""
    session = aiohttp.ClientSession()
    async with tether.Client(fault_server.url, session=session, retry=None) as client:
        await session.close()
        with pytest.raises(tether.ConfigError, match="given to the client has been closed"):
            await client.get("/x")
    assert fault_server.requests == 0


async def _echo_headers(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        {"ua": request.headers.getall("User-Agent"), "x": "X-Once" in request.headers}
    )


@pytest.mark.parametrize("lend", [False, True], ids=["own session", "lent session"])
async def test_default_headers_are_shared_but_never_changed(
    server: LoopbackServer, lend: bool
) -> None:
    """A header a hook adds to one request's shared defaults reaches that request only."""
    server.route("GET", "/h", _echo_headers)
    first: list[bool] = []

    def add_once(request: tether.Request) -> None:
        if not first:
            first.append(True)
            request.headers["X-Once"] = "1"

    async with (
        aiohttp.ClientSession() as session,
        tether.Client(server.url, session=session if lend else None, on_request=add_once) as client,
    ):
        answers = [(await client.get("/h")).json() for _ in range(3)]
        custom = (await client.get("/h", headers={"user-agent": "mine/1"})).json()
    agent = f"tether/{tether.__version__}"
    assert answers == [
        {"ua": [agent], "x": True},
        {"ua": [agent], "x": False},
        {"ua": [agent], "x": False},
    ]
    assert custom == {"ua": ["mine/1"], "x": False}
