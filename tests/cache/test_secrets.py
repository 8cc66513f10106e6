"""Secrets never reach the cache's storage, and responses fetched with one caller's credentials
never answer another's."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

import tether
from tests.cache.conftest import RigFactory, http_date
from tests.conftest import LoopbackServer
from tether._cache_config import Cache
from tether._redact import Redactor
from tether.cache import SQLiteCache

HEADER_KEY = "canary-header-key-7f3a9c"
BEARER = "canary-bearer-token-51d2e8"
QUERY_KEY = "canary-query-key-0b6e4d"
COOKIE = "canary-session-cookie-93aa17"
PATH_SECRET = "canary-path-secret-c4f0e2"
CANARIES = (HEADER_KEY, BEARER, QUERY_KEY, COOKIE, PATH_SECRET)


def forms(secret: str) -> list[bytes]:
    """The ways a secret could be written: verbatim, percent-encoded, base64."""
    return [
        secret.encode(),
        quote(secret, safe="").encode(),
        base64.b64encode(secret.encode()),
        secret.encode("utf-16-le"),
    ]


async def test_no_secret_is_written_to_the_sqlite_file(
    server: LoopbackServer, make_rig: RigFactory, tmp_path: Path
) -> None:
    """Canaries in the API key header, a bearer header set by hand, a query key, a path, an
    echoed response header and a cookie: none appears in the cache file or its WAL."""
    auth = tether.auth.ApiKey("X-Api-Key", HEADER_KEY)

    async def echo(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="payload",
            headers={
                "Date": http_date(rig.clock.time()),
                "Cache-Control": "max-age=600",
                "ETag": '"e1"',
                "Vary": "Authorization, X-Api-Key",
                "X-Echo": request.headers.get("X-Api-Key", ""),
                "X-Echo-Auth": request.headers.get("Authorization", ""),
                "Set-Cookie": f"session={COOKIE}; HttpOnly",
            },
        )

    path = tmp_path / "cache.db"
    rig = make_rig(Cache(backend=SQLiteCache(path)), below=[auth])
    server.route("GET", f"/users/{PATH_SECRET}", echo)
    redactor = Redactor(secrets=[PATH_SECRET, BEARER, QUERY_KEY]).merge(auth.redactor())

    def call() -> tether.Request:
        return rig.request(
            f"/users/{PATH_SECRET}",
            headers={"Authorization": f"Bearer {BEARER}"},
            params=[("api_key", QUERY_KEY)],
            redactor=redactor,
        )

    first = await rig.send(call())
    second = await rig.send(call())
    seen = server.seen[0]
    # The canaries did travel (so their absence below means something) ...
    assert seen.headers["X-Api-Key"] == HEADER_KEY
    assert seen.headers["Authorization"] == f"Bearer {BEARER}"
    assert seen.query["api_key"] == QUERY_KEY
    assert first.headers["X-Echo"] == HEADER_KEY
    # ... and the second call was a hit, so the response is in the file.
    assert (second.from_cache, second.text, server.count(f"/users/{PATH_SECRET}")) == (
        True,
        "payload",
        1,
    )
    assert "Set-Cookie" not in second.headers
    assert second.headers["X-Echo"] == "[REDACTED]"
    await rig.policy.aclose()

    files = [p for p in tmp_path.iterdir() if p.name.startswith("cache.db")]
    assert path in files
    for file in files:
        data = file.read_bytes()
        for canary in CANARIES:
            for form in forms(canary):
                assert form not in data, f"{canary} found in {file.name}"


async def test_credentials_on_the_request_partition_the_cache(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """A response fetched with one Authorization header never answers another, even without
    Vary: Authorization and even when both ask at the same moment."""
    rig = make_rig()

    async def whoami(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=f"for {request.headers['Authorization']}",
            headers={"Date": http_date(rig.clock.time()), "Cache-Control": "max-age=600"},
        )

    server.route("GET", "/me", whoami)
    alice, bob = ({"Authorization": f"Bearer {name}"} for name in ("alice", "bob"))
    together = await asyncio.gather(rig.get("/me", headers=alice), rig.get("/me", headers=bob))
    assert [r.text for r in together] == ["for Bearer alice", "for Bearer bob"]
    again = [await rig.get("/me", headers=h) for h in (alice, bob)]
    assert [(r.text, r.from_cache) for r in again] == [
        ("for Bearer alice", True),
        ("for Bearer bob", True),
    ]
    anonymous = await rig.get("/me", headers={"Authorization": "Bearer carol"})
    assert anonymous.text == "for Bearer carol"
    assert server.count("/me") == 3


async def test_credentials_added_below_the_cache_share_entries(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """With `auth=` (below the cache), one client's calls share entries: the cache is private
    to the client and its credential."""
    auth = tether.auth.Bearer("t0k3n")
    rig = make_rig(below=[auth])
    server.route(
        "GET",
        "/me",
        lambda _: _answer(rig.clock.time()),  # type: ignore[arg-type,return-value]
    )
    await rig.get("/me", redactor=auth.redactor())
    assert (await rig.get("/me", redactor=auth.redactor())).from_cache


async def _answer(now: float) -> web.StreamResponse:
    return web.Response(text="me", headers={"Date": http_date(now), "Cache-Control": "max-age=60"})
