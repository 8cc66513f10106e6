"""The cache policy against a real loopback server: RFC 9111 freshness, validation, Vary,
overrides, invalidation and persistence, with a fake clock to move time."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

import tether
from tests.cache.conftest import RigFactory, http_date, reply, validating
from tests.conftest import LoopbackServer
from tether._cache_config import Cache
from tether.cache import MemoryCache, SQLiteCache
from tether.policies._cache import CachePolicy
from tether.testing import FakeClock

# -- freshness (RFC 9111 §4.2) ------------------------------------------------------------------


async def test_fresh_response_is_served_from_cache(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.2: while fresh (max-age), the stored response answers without the origin, with Age."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}))
    first = await rig.get()
    rig.clock.advance(10)
    second = await rig.get()
    assert server.count("/x") == 1
    assert (first.from_cache, second.from_cache) == (False, True)
    assert (second.status, second.text, second.headers["Age"]) == (200, "v1", "10")
    assert second.attempts == 0
    assert second.url == f"{server.url}/x"


async def test_stale_response_without_validators_goes_to_origin(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.2, §4.3: once max-age has passed and no validator is stored, the request is sent."""
    rig = make_rig()
    server.script(
        "GET",
        "/x",
        reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}),
        reply(rig.clock, "v2", {"Cache-Control": "max-age=60"}),
    )
    await rig.get()
    rig.clock.advance(61)
    response = await rig.get()
    assert (response.text, response.from_cache, server.count("/x")) == ("v2", False, 2)
    assert "If-None-Match" not in server.seen[1].headers


async def test_expires_gives_freshness(server: LoopbackServer, make_rig: RigFactory) -> None:
    """§5.3: Expires minus Date is the lifetime when there is no max-age."""
    rig = make_rig()
    expires = http_date(rig.clock.time() + 30)
    server.script("GET", "/x", reply(rig.clock, "v1", {"Expires": expires}))
    await rig.get()
    rig.clock.advance(29)
    assert (await rig.get()).from_cache
    rig.clock.advance(2)
    assert not (await rig.get()).from_cache
    assert server.count("/x") == 2


async def test_max_age_wins_over_expires(server: LoopbackServer, make_rig: RigFactory) -> None:
    """§4.2.1: max-age takes precedence over Expires."""
    rig = make_rig()
    headers = {"Cache-Control": "max-age=100", "Expires": http_date(rig.clock.time() - 1)}
    server.script("GET", "/x", reply(rig.clock, "v1", headers))
    await rig.get()
    rig.clock.advance(50)
    assert (await rig.get()).from_cache


async def test_no_explicit_freshness_is_not_reused(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.2.2: with no freshness information and no Last-Modified, nothing is reused."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1"))
    await rig.get()
    await rig.get()
    assert server.count("/x") == 2


async def test_heuristic_freshness_from_last_modified(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.2.2: a response with Last-Modified is fresh for 10 % of its age, capped at a day."""
    rig = make_rig()
    modified = http_date(rig.clock.time() - 1000)
    server.script("GET", "/x", reply(rig.clock, "v1", {"Last-Modified": modified}))
    await rig.get()
    rig.clock.advance(99)
    assert (await rig.get()).from_cache
    rig.clock.advance(2)
    assert not (await rig.get()).from_cache


# -- validation (RFC 9111 §4.3) ------------------------------------------------------------------


async def test_stale_entry_revalidated_with_etag(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.3.1, §4.3.4: a stale entry is validated with If-None-Match; a 304 freshens it."""
    rig = make_rig()
    server.route("GET", "/x", validating(rig.clock, '"e1"', "v1", {"Cache-Control": "max-age=10"}))  # type: ignore[arg-type]
    await rig.get()
    rig.clock.advance(20)
    revalidated = await rig.get()
    assert server.seen[1].headers["If-None-Match"] == '"e1"'
    assert (revalidated.status, revalidated.text) == (200, "v1")
    assert revalidated.from_cache
    assert revalidated.headers["Age"] == "0"
    rig.clock.advance(5)
    assert (await rig.get()).from_cache  # freshened by the 304: no third request
    assert server.count("/x") == 2


async def test_revalidation_with_last_modified(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.3.1: without an ETag the stored Last-Modified goes out as If-Modified-Since."""
    rig = make_rig()
    modified = http_date(rig.clock.time() - 10_000)
    headers = {"Cache-Control": "max-age=10", "Last-Modified": modified}
    server.script(
        "GET",
        "/x",
        reply(rig.clock, "v1", headers),
        reply(rig.clock, headers=headers, status=304),
    )
    await rig.get()
    rig.clock.advance(20)
    response = await rig.get()
    assert server.seen[1].headers["If-Modified-Since"] == modified
    assert (response.text, response.from_cache) == ("v1", True)


async def test_304_updates_stored_fields(server: LoopbackServer, make_rig: RigFactory) -> None:
    """§3.2, §4.3.4: fields in the 304 replace the stored ones (a new max-age, a new header)."""
    rig = make_rig()
    server.script(
        "GET",
        "/x",
        reply(rig.clock, "v1", {"ETag": '"e1"', "Cache-Control": "max-age=10", "X-V": "1"}),
        reply(
            rig.clock,
            headers={"ETag": '"e1"', "Cache-Control": "max-age=1000", "X-V": "2"},
            status=304,
        ),
    )
    await rig.get()
    rig.clock.advance(20)
    response = await rig.get()
    assert response.headers["X-V"] == "2"
    rig.clock.advance(500)
    assert (await rig.get()).from_cache
    assert server.count("/x") == 2


async def test_changed_resource_replaces_the_entry(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.3.3: a full response to a validation request is used and stored instead."""
    rig = make_rig()
    server.script(
        "GET",
        "/x",
        reply(rig.clock, "v1", {"ETag": '"e1"', "Cache-Control": "max-age=10"}),
        reply(rig.clock, "v2", {"ETag": '"e2"', "Cache-Control": "max-age=10"}),
    )
    await rig.get()
    rig.clock.advance(20)
    changed = await rig.get()
    again = await rig.get()
    assert (changed.text, changed.from_cache) == ("v2", False)
    assert (again.text, again.from_cache) == ("v2", True)
    assert server.count("/x") == 2


async def test_304_for_another_validator_repeats_without_conditions(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.3.4: a 304 naming a different ETag updates nothing; the request is repeated plainly."""
    rig = make_rig()
    server.script(
        "GET",
        "/x",
        reply(rig.clock, "v1", {"ETag": '"e1"', "Cache-Control": "max-age=10"}),
        reply(rig.clock, headers={"ETag": '"other"'}, status=304),
        reply(rig.clock, "v2", {"ETag": '"e2"', "Cache-Control": "max-age=10"}),
    )
    await rig.get()
    rig.clock.advance(20)
    response = await rig.get()
    assert response.text == "v2"
    assert "If-None-Match" not in server.seen[2].headers


async def test_callers_own_conditions_pass_through(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.3.2: a caller's own If-None-Match or Range gets the origin's own answer, even with
    a fresh entry stored, and that answer is not stored."""
    rig = make_rig()
    fresh = {"Cache-Control": "max-age=60", "ETag": '"e1"'}
    server.script(
        "GET", "/x", reply(rig.clock, "v1", fresh), reply(rig.clock, headers=fresh, status=304)
    )
    await rig.get()
    for headers in ({"If-None-Match": '"e1"'}, {"Range": "bytes=0-1"}):
        response = await rig.get(headers=headers)
        assert (response.status, response.from_cache) == (304, False)
    assert server.count("/x") == 3
    assert ((await rig.get()).status, server.count("/x")) == (200, 3)


# -- directives (RFC 9111 §5.2) -----------------------------------------------------------------


async def test_response_no_store_is_never_stored(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§5.2.2.5: no-store forbids storing the response."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "no-store, max-age=60"}))
    await rig.get()
    await rig.get()
    assert server.count("/x") == 2


async def test_response_no_cache_revalidates_every_time(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§5.2.2.4: no-cache is stored but validated before each reuse, however fresh."""
    rig = make_rig()
    server.route(
        "GET", "/x", validating(rig.clock, '"e1"', "v1", {"Cache-Control": "no-cache, max-age=60"})
    )  # type: ignore[arg-type]
    await rig.get()
    response = await rig.get()
    assert server.seen[1].headers["If-None-Match"] == '"e1"'
    assert (response.text, response.from_cache) == ("v1", True)


async def test_request_no_cache_forces_validation(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§5.2.1.4: the caller's no-cache validates a fresh entry with the origin."""
    rig = make_rig()
    server.route("GET", "/x", validating(rig.clock, '"e1"', "v1", {"Cache-Control": "max-age=60"}))  # type: ignore[arg-type]
    await rig.get()
    await rig.get(headers={"Cache-Control": "no-cache"})
    assert server.seen[1].headers["If-None-Match"] == '"e1"'


async def test_request_max_age_limits_reuse(server: LoopbackServer, make_rig: RigFactory) -> None:
    """§5.2.1.1: a request max-age refuses a stored response older than it."""
    rig = make_rig()
    server.route("GET", "/x", validating(rig.clock, '"e1"', "v1", {"Cache-Control": "max-age=60"}))  # type: ignore[arg-type]
    await rig.get()
    rig.clock.advance(10)
    assert (await rig.get(headers={"Cache-Control": "max-age=20"})).from_cache
    await rig.get(headers={"Cache-Control": "max-age=5"})
    assert server.count("/x") == 2


async def test_request_no_store_keeps_the_answer_out(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§5.2.1.5: a response to a request marked no-store is not stored."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}))
    await rig.get(headers={"Cache-Control": "no-store"})
    await rig.get()
    assert server.count("/x") == 2


async def test_only_if_cached_without_entry_answers_504(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§5.2.1.7: only-if-cached with nothing usable stored gets a 504, the origin untouched."""
    rig = make_rig()
    response = await rig.get(headers={"Cache-Control": "only-if-cached"})
    assert (response.status, response.from_cache, server.count("/x")) == (504, True, 0)


# -- Vary (RFC 9111 §4.1) ----------------------------------------------------------------------


async def test_vary_keeps_one_response_per_header_value(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.1: with Vary: Accept, each Accept value selects its own stored response."""
    rig = make_rig()

    async def negotiate(request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=f"as {request.headers['Accept']}",
            headers={
                "Date": http_date(rig.clock.time()),
                "Cache-Control": "max-age=60",
                "Vary": "Accept",
            },
        )

    server.route("GET", "/x", negotiate)
    for accept in ("application/json", "text/plain", "application/json", "text/plain"):
        response = await rig.get(headers={"Accept": accept})
        assert response.text == f"as {accept}"
    assert server.count("/x") == 2


async def test_vary_star_never_matches(server: LoopbackServer, make_rig: RigFactory) -> None:
    """§4.1: a stored response with Vary: * never answers a later request."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60", "Vary": "*"}))
    await rig.get()
    await rig.get()
    assert server.count("/x") == 2


# -- the key -----------------------------------------------------------------------------------


async def test_query_is_part_of_the_key_in_order_sent(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """The key is method and full URL, query parameters in the order given (not sorted)."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}))
    await rig.get(params=[("a", "1"), ("b", "2")])
    await rig.get(params=[("a", "1"), ("b", "2")])
    await rig.get(params=[("b", "2"), ("a", "1")])
    await rig.get(params=[("a", "2"), ("b", "2")])
    assert server.count("/x") == 3


async def test_head_and_get_are_stored_apart(server: LoopbackServer, make_rig: RigFactory) -> None:
    """The method is part of the key; a HEAD response has no body to answer a GET (§4)."""
    rig = make_rig()
    server.script("HEAD", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}))
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}))
    await rig.get(method="HEAD")
    head = await rig.get(method="HEAD")
    got = await rig.get()
    assert (head.from_cache, head.content) == (True, b"")
    assert (got.from_cache, got.text) == (False, "v1")
    assert [seen.method for seen in server.seen] == ["HEAD", "GET"]


async def test_get_with_a_body_is_not_cached(server: LoopbackServer, make_rig: RigFactory) -> None:
    """A GET carrying a body is sent as is: the key does not cover bodies."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}))
    await rig.get(content=b"{}")
    await rig.get(content=b"{}")
    assert server.count("/x") == 2


# -- ttl overrides ------------------------------------------------------------------------------


async def test_ttl_caches_responses_without_headers(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """Cache(ttl=...) makes a header-less response fresh for that long."""
    rig = make_rig(Cache(ttl=3600))
    server.script("GET", "/x", reply(rig.clock, "v1"))
    await rig.get()
    rig.clock.advance(3599)
    assert (await rig.get()).from_cache
    rig.clock.advance(2)
    assert not (await rig.get()).from_cache
    assert server.count("/x") == 2


async def test_ttl_overrides_the_apis_headers(server: LoopbackServer, make_rig: RigFactory) -> None:
    """A ttl means "cache this whatever the API says": no-store and max-age=0 are set aside."""
    rig = make_rig(Cache(ttl=60))
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "no-store, max-age=0"}))
    await rig.get()
    assert (await rig.get()).from_cache
    assert server.count("/x") == 1


async def test_ttl_keeps_heuristically_cacheable_errors(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """RFC 9110 §15.1: with a ttl a 404 is kept like a 200; a 500 never is (RFC 9111 §3)."""
    rig = make_rig(Cache(ttl=60))
    server.script("GET", "/gone", reply(rig.clock, "no", status=404))
    server.script("GET", "/broken", reply(rig.clock, "oops", status=500))
    for path in ("/gone", "/broken"):
        await rig.get(path)
    gone, broken = [await rig.get(path) for path in ("/gone", "/broken")]
    assert (gone.status, gone.from_cache) == (404, True)
    assert (broken.status, broken.from_cache) == (500, False)


async def test_per_request_ttl(server: LoopbackServer, make_rig: RigFactory) -> None:
    """The request's tether.cache_ttl extension overrides the client's ttl for that call."""
    rig = make_rig(Cache(ttl=10))
    server.script("GET", "/x", reply(rig.clock, "v1"))
    await rig.get(ttl=100)
    rig.clock.advance(50)
    assert (await rig.get(ttl=100)).from_cache
    assert not (await rig.get(ttl=20)).from_cache


async def test_ttl_zero_bypasses_the_cache(server: LoopbackServer, make_rig: RigFactory) -> None:
    """cache_ttl=0 sends the call past the cache: a fresh entry is not used, nothing is stored."""
    rig = make_rig()
    server.script(
        "GET",
        "/x",
        reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}),
        reply(rig.clock, "v2", {"Cache-Control": "max-age=60"}),
    )
    await rig.get()
    bypassed = await rig.get(ttl=0)
    cached = await rig.get()
    assert (bypassed.text, bypassed.from_cache) == ("v2", False)
    assert (cached.text, cached.from_cache) == ("v1", True)


async def test_ttl_mapping_by_path(server: LoopbackServer, make_rig: RigFactory) -> None:
    """Endpoint groups: each path glob has its own ttl; unmatched paths follow the headers."""
    rig = make_rig(Cache(ttl={"/static/*": 600, "/live/*": 0}))
    for path in ("/static/a", "/live/a", "/other"):
        server.script("GET", path, reply(rig.clock, "v", {"Cache-Control": "max-age=60"}))
    for path in ("/static/a", "/live/a", "/other"):
        await rig.get(path)
    rig.clock.advance(120)
    for path in ("/static/a", "/live/a", "/other"):
        await rig.get(path)
    assert [server.count(p) for p in ("/static/a", "/live/a", "/other")] == [1, 2, 2]


@pytest.mark.parametrize("bad", [-1, "10", True, float("nan")])
async def test_invalid_per_request_ttl(make_rig: RigFactory, bad: object) -> None:
    """A negative or non-numeric cache_ttl is a ConfigError before any I/O."""
    rig = make_rig()
    request = rig.request()
    request.extensions["tether.cache_ttl"] = bad
    with pytest.raises(tether.ConfigError, match="cache_ttl"):
        await rig.send(request)


# -- invalidation (RFC 9111 §4.4) ---------------------------------------------------------------


async def test_unsafe_methods_invalidate(server: LoopbackServer, make_rig: RigFactory) -> None:
    """§4.4: a successful POST, PUT, PATCH or DELETE evicts the stored GET for its URL."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=600"}))
    await rig.get()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        server.script(method, "/x", reply(rig.clock, "done", status=201))
        assert (await rig.get()).from_cache
        await rig.get(method=method, content=b"{}")
        assert not (await rig.get()).from_cache
    assert [seen.method for seen in server.seen] == [
        "GET", "POST", "GET", "PUT", "GET", "PATCH", "GET", "DELETE", "GET"
    ]  # fmt: skip


async def test_failed_unsafe_request_does_not_invalidate(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.4: only a non-error status invalidates."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=600"}))
    server.script("POST", "/x", reply(rig.clock, "no", status=422))
    await rig.get()
    await rig.get(method="POST")
    assert (await rig.get()).from_cache


async def test_invalidation_covers_head_and_location(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.4: the target's GET and HEAD entries go, and so does a same-origin Location."""
    rig = make_rig()
    fresh = {"Cache-Control": "max-age=600"}
    for method, path in (("GET", "/items"), ("HEAD", "/items"), ("GET", "/items/7")):
        server.script(method, path, reply(rig.clock, "v", fresh))
    server.script("POST", "/items", reply(rig.clock, status=201, headers={"Location": "/items/7"}))
    for method, path in (("GET", "/items"), ("HEAD", "/items"), ("GET", "/items/7")):
        await rig.get(path, method=method)
    await rig.get("/items", method="POST")
    for method, path in (("GET", "/items"), ("HEAD", "/items"), ("GET", "/items/7")):
        assert not (await rig.get(path, method=method)).from_cache


async def test_location_on_another_origin_is_not_invalidated(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """§4.4: a Location on another origin cannot evict that origin's entries."""
    rig = make_rig()
    other = server.url.replace("127.0.0.1", "localhost")
    server.script("GET", "/items/7", reply(rig.clock, "v", {"Cache-Control": "max-age=600"}))
    server.script(
        "POST", "/items", reply(rig.clock, status=201, headers={"Location": f"{other}/items/7"})
    )
    rig.url = other
    await rig.get("/items/7")
    rig.url = server.url
    await rig.get("/items", method="POST")
    rig.url = other
    assert (await rig.get("/items/7")).from_cache


# -- persistence -------------------------------------------------------------------------------


async def test_sqlite_entries_survive_a_restart(
    server: LoopbackServer, make_rig: RigFactory, tmp_path: Path
) -> None:
    """An entry stored by one client's SQLite cache answers a new client on the same file."""
    clock = FakeClock()
    path = tmp_path / "cache.db"
    server.route("GET", "/x", validating(clock, '"e1"', "v1", {"Cache-Control": "max-age=60"}))  # type: ignore[arg-type]
    first = make_rig(Cache(backend=SQLiteCache(path)), clock=clock)
    await first.get()
    await first.policy.aclose()
    second = make_rig(Cache(backend=SQLiteCache(path)), clock=clock)
    clock.advance(30)
    hit = await second.get()
    assert (hit.text, hit.from_cache, hit.headers["Age"]) == ("v1", True, "30")
    clock.advance(60)
    revalidated = await second.get()
    assert (revalidated.text, revalidated.from_cache) == ("v1", True)
    assert server.seen[1].headers["If-None-Match"] == '"e1"'
    assert server.count("/x") == 2


class BrokenBackend:
    """A backend whose every operation fails."""

    async def get(self, key: str) -> list[object]:
        raise OSError("disk on fire")

    async def set(self, key: str, response: object) -> None:
        raise OSError("disk on fire")

    async def delete(self, key: str) -> None:
        raise OSError("disk on fire")

    async def clear(self) -> None:
        raise OSError("disk on fire")

    async def aclose(self) -> None:
        return None


async def test_a_broken_backend_does_not_break_calls(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """Storage failures are logged and the call goes to the origin as if nothing were stored."""
    rig = make_rig(Cache(backend=BrokenBackend()))  # type: ignore[arg-type]
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}))
    server.script("POST", "/x", reply(rig.clock, "ok"))
    assert (await rig.get()).text == "v1"
    assert (await rig.get()).text == "v1"
    assert (await rig.get(method="POST")).status == 200
    assert server.count("/x") == 3


# -- construction and closing ------------------------------------------------------------------


def test_memory_backend_is_per_policy() -> None:
    """backend="memory" gives each client its own MemoryCache; a given backend is used as is."""
    clock = FakeClock()
    one, two = CachePolicy(Cache(), clock=clock), CachePolicy(Cache(), clock=clock)
    assert isinstance(one.backend, MemoryCache)
    assert one.backend is not two.backend
    shared = MemoryCache()
    assert CachePolicy(Cache(backend=shared), clock=clock).backend is shared


def test_policy_needs_a_cache_option() -> None:
    """Anything but a tether Cache is refused before any I/O."""
    with pytest.raises(tether.ConfigError, match=r"tether\.Cache"):
        CachePolicy({"ttl": 60}, clock=FakeClock())  # type: ignore[arg-type]


async def test_aclose_closes_the_sqlite_file(
    server: LoopbackServer, make_rig: RigFactory, tmp_path: Path
) -> None:
    """Closing the policy closes its backend: the last SQLite connection folds the WAL back."""
    path = tmp_path / "cache.db"
    rig = make_rig(Cache(backend=SQLiteCache(path)))
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}))
    await rig.get()
    assert (tmp_path / "cache.db-wal").exists()
    await rig.policy.aclose()
    assert not (tmp_path / "cache.db-wal").exists()
