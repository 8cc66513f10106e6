"""RFC 9111 private-cache rules: storability, freshness, age, Vary, revalidation, stale use."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from multidict import CIMultiDict

from tether._core._cache import (
    CacheAction,
    CacheControl,
    CacheEntry,
    can_serve_stale_on_error,
    current_age,
    decide,
    freshness_lifetime,
    invalidates,
    is_storable,
    make_entry,
    merge_not_modified,
    parse_cache_control,
    vary_matches,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


def entry(
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    request_headers: dict[str, str] | None = None,
    at: float = T0,
    method: str = "GET",
    ttl: float | None = None,
) -> CacheEntry:
    """A response received at `at` (sent at the same instant), dated `at` unless told."""
    response = {"Date": http_date(at), **(headers or {})}
    return make_entry(
        status=status,
        request_headers=CIMultiDict(request_headers or {}),
        response_headers=CIMultiDict(response),
        request_time=at,
        response_time=at,
        method=method,
        ttl=ttl,
    )


def decision_for(
    stored: CacheEntry | None,
    now: float,
    *,
    method: str = "GET",
    ttl: float | None = None,
    **request: str,
) -> tuple[CacheAction, str]:
    result = decide(
        stored,
        method=method,
        request_headers=CIMultiDict({k.replace("_", "-"): v for k, v in request.items()}),
        now=now,
        ttl=ttl,
    )
    return result.action, result.reason


# -- Cache-Control parsing (§5.2) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, CacheControl()),
        ("max-age=60", CacheControl(max_age=60)),
        ("Max-Age=60, PUBLIC", CacheControl(max_age=60, public=True)),
        ('max-age="60"', CacheControl(max_age=60)),
        ("max-age=60, max-age=10", CacheControl(max_age=60)),
        ("max-age=soon", CacheControl(max_age=0)),
        ("max-age=-1", CacheControl(max_age=0)),
        ("max-age=99999999999", CacheControl(max_age=2**31)),
        ("s-maxage=30, private", CacheControl(s_maxage=30, private=True)),
        ("no-store", CacheControl(no_store=True)),
        (
            'no-cache="Set-Cookie, X-Trace", must-revalidate',
            CacheControl(
                no_cache=True, no_cache_fields=("set-cookie", "x-trace"), must_revalidate=True
            ),
        ),
        (
            "max-age=1, stale-while-revalidate=30, stale-if-error=600, immutable",
            CacheControl(max_age=1, stale_while_revalidate=30, stale_if_error=600, immutable=True),
        ),
        ("max-stale", CacheControl(max_stale_any=True)),
        (
            "max-stale=5, min-fresh=2, only-if-cached",
            CacheControl(max_stale=5, min_fresh=2, only_if_cached=True),
        ),
        ("community=UCI, foo", CacheControl()),
    ],
)
def test_parse_cache_control(value: str | None, expected: CacheControl) -> None:
    """Directives are case-insensitive, the first duplicate wins, bad max-age means stale."""
    assert parse_cache_control(value) == expected


# -- storability (§3) -----------------------------------------------------------------------


def storable(
    *,
    method: str = "GET",
    status: int = 200,
    response: dict[str, str] | None = None,
    sent: dict[str, str] | None = None,
    ttl: float | None = None,
) -> bool:
    return is_storable(
        method=method,
        status=status,
        request_headers=CIMultiDict(sent or {}),
        response_headers=CIMultiDict(response or {}),
        ttl=ttl,
    )


@pytest.mark.parametrize(
    ("exchange", "expected"),
    [
        ({}, True),  # 200 is heuristically cacheable
        ({"method": "HEAD"}, True),
        ({"method": "POST", "response": {"Cache-Control": "max-age=60"}}, False),
        ({"status": 404}, True),
        ({"status": 201}, False),  # not heuristically cacheable, no explicit freshness
        ({"status": 201, "response": {"Cache-Control": "max-age=60"}}, True),
        ({"status": 302}, False),
        ({"status": 206, "response": {"Cache-Control": "max-age=60"}}, False),
        ({"status": 304}, False),
        ({"status": 500, "response": {"Cache-Control": "max-age=60"}}, False),
        ({"response": {"Cache-Control": "no-store"}}, False),
        ({"response": {"Cache-Control": "no-store, must-understand"}}, True),
        ({"response": {"Cache-Control": "private, max-age=60"}}, True),
        ({"response": {"Cache-Control": "no-cache"}}, True),
        ({"sent": {"Cache-Control": "no-store"}}, False),
        ({"response": {"Cache-Control": "no-store"}, "ttl": 3600.0}, True),  # user override
        ({"sent": {"Cache-Control": "no-store"}, "ttl": 3600.0}, False),
    ],
)
def test_is_storable(exchange: dict[str, object], expected: bool) -> None:
    """A private cache stores GET/HEAD final responses unless no-store or an odd status says no."""
    assert storable(**exchange) is expected  # type: ignore[arg-type]


def test_make_entry_drops_connection_fields_and_adds_date() -> None:
    """Hop-by-hop fields and those named in Connection are not stored; a missing Date is added."""
    stored = make_entry(
        status=200,
        request_headers={},
        response_headers=CIMultiDict(
            {
                "Connection": "X-Hop",
                "X-Hop": "1",
                "Keep-Alive": "timeout=5",
                "Transfer-Encoding": "chunked",
                "Content-Type": "application/json",
            }
        ),
        request_time=T0 - 1,
        response_time=T0,
    )
    names = [name.lower() for name, _ in stored.headers]
    assert names == ["content-type", "date"]
    assert stored.header("DATE") == http_date(T0)


def test_make_entry_drops_fields_named_by_qualified_no_cache() -> None:
    """Fields listed in no-cache="..." are not stored, so they cannot be reused unvalidated."""
    stored = entry(
        headers={"Cache-Control": 'max-age=60, no-cache="Set-Cookie"', "Set-Cookie": "a=b"}
    )
    assert stored.header("set-cookie") is None


# -- freshness lifetime (§4.2.1, §4.2.2) ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "lifetime"),
    [
        (200, {"Cache-Control": "max-age=60"}, 60.0),
        (200, {"Cache-Control": "max-age=60", "Expires": http_date(T0 + 600)}, 60.0),
        (200, {"Cache-Control": "s-maxage=600"}, 0.0),
        (200, {"Cache-Control": "s-maxage=600, max-age=5"}, 5.0),
        (200, {"Expires": http_date(T0 + 600)}, 600.0),
        (200, {"Expires": http_date(T0 - 600)}, 0.0),
        (200, {"Expires": "0"}, 0.0),
        (200, {"Last-Modified": http_date(T0 - 1000)}, 100.0),
        (200, {"Last-Modified": http_date(T0 - 10 * 86400)}, 86400.0),
        (200, {"Last-Modified": http_date(T0 - 1000), "Expires": http_date(T0 + 5)}, 5.0),
        (200, {"Last-Modified": http_date(T0 - 1000), "Expires": "garbage"}, 0.0),
        (201, {"Last-Modified": http_date(T0 - 1000)}, 0.0),
        (201, {"Last-Modified": http_date(T0 - 1000), "Cache-Control": "public"}, 100.0),
        (200, {"Last-Modified": http_date(T0 + 1000)}, 0.0),
        (200, {}, 0.0),
    ],
)
def test_freshness_lifetime(status: int, headers: dict[str, str], lifetime: float) -> None:
    """max-age beats Expires, s-maxage is ignored, heuristics apply only without expiry."""
    assert freshness_lifetime(entry(status=status, headers=headers)) == lifetime


def test_expires_without_date_uses_response_time() -> None:
    """Without Date, Expires is measured from when the response was received (§4.2.1)."""
    stored = CacheEntry(
        status=200,
        headers=(("Expires", http_date(T0 + 30)),),
        request_time=T0,
        response_time=T0,
    )
    assert freshness_lifetime(stored) == 30.0


@pytest.mark.parametrize(
    ("entry_ttl", "call_ttl", "lifetime"), [(60.0, None, 60.0), (60.0, 5.0, 5.0), (None, 7.0, 7.0)]
)
def test_ttl_override_forces_the_lifetime(
    entry_ttl: float | None, call_ttl: float | None, lifetime: float
) -> None:
    """A ttl, per entry or per call (which wins), replaces whatever the headers say."""
    stored = entry(headers={"Cache-Control": "max-age=3600"}, ttl=entry_ttl)
    assert freshness_lifetime(stored, ttl=call_ttl) == lifetime


# -- age (§4.2.3) ---------------------------------------------------------------------------


def test_current_age_follows_rfc_9111_4_2_3() -> None:
    """Age adds the Age field, the response delay and the time resident in the cache."""
    stored = make_entry(
        status=200,
        request_headers={},
        response_headers={"date": http_date(T0), "age": "30"},
        request_time=T0 - 2,
        response_time=T0 + 1,
    )
    # corrected initial age = max(apparent 1, 30 + delay 3) = 33; plus 10 s resident.
    assert current_age(stored, T0 + 11) == 33 + 10


def test_apparent_age_from_a_lagging_date() -> None:
    """A Date older than the receipt time counts as age even without an Age field."""
    stored = entry(headers={"Date": http_date(T0 - 20)})
    assert current_age(stored, T0 + 5) == 25


@pytest.mark.parametrize("age", ["-5", "abc", "1.5"])
def test_invalid_age_is_ignored(age: str) -> None:
    """An Age that is not a non-negative integer is ignored (§5.1)."""
    assert current_age(entry(headers={"Age": age}), T0 + 1) == 1


def test_age_list_uses_first_member() -> None:
    """A list-valued Age uses its first member (§5.1)."""
    assert current_age(entry(headers={"Age": "10, 20"}), T0) == 10


# -- decisions -------------------------------------------------------------------------------


def test_nothing_stored_is_a_miss() -> None:
    """Without a stored response the request goes to the origin."""
    assert decision_for(None, T0) == (CacheAction.MISS, "not stored")


def test_fresh_response_is_served_with_its_age() -> None:
    """A fresh stored response is served, with its current age for the Age field."""
    stored = entry(headers={"Cache-Control": "max-age=60"})
    result = decide(stored, method="GET", request_headers={}, now=T0 + 10)
    assert result.action is CacheAction.FRESH
    assert result.age == 10


def test_stale_with_validators_revalidates_conditionally() -> None:
    """A stale response with ETag and Last-Modified yields If-None-Match and If-Modified-Since."""
    last_modified = http_date(T0 - 3600)
    stored = entry(
        headers={"Cache-Control": "max-age=60", "ETag": '"v1"', "Last-Modified": last_modified}
    )
    result = decide(stored, method="GET", request_headers={}, now=T0 + 61)
    assert result.action is CacheAction.STALE_REVALIDATE
    assert result.conditional_headers == (
        ("If-None-Match", '"v1"'),
        ("If-Modified-Since", last_modified),
    )


def test_stale_without_validators_is_a_miss() -> None:
    """A stale response with nothing to validate with is fetched again unconditionally."""
    stored = entry(headers={"Cache-Control": "max-age=60"})
    assert decision_for(stored, T0 + 61)[0] is CacheAction.MISS


@pytest.mark.parametrize(
    ("cache_control", "now", "action"),
    [
        ("max-age=60, stale-while-revalidate=30", T0 + 80, CacheAction.STALE_WHILE_REVALIDATE),
        ("max-age=60, stale-while-revalidate=30", T0 + 95, CacheAction.STALE_REVALIDATE),
        ("max-age=60, stale-while-revalidate=30", T0 + 30, CacheAction.FRESH),
        (
            "max-age=60, stale-while-revalidate=30, must-revalidate",
            T0 + 80,
            CacheAction.STALE_REVALIDATE,
        ),
    ],
)
def test_stale_while_revalidate(cache_control: str, now: float, action: CacheAction) -> None:
    """Within the SWR window a stale response is served while revalidating in the background."""
    stored = entry(headers={"Cache-Control": cache_control, "ETag": '"v1"'})
    result = decide(stored, method="GET", request_headers={}, now=now)
    assert result.action is action
    if action is CacheAction.STALE_WHILE_REVALIDATE:
        assert result.conditional_headers == (("If-None-Match", '"v1"'),)


def test_swr_needs_no_validators() -> None:
    """SWR without validators still serves stale; the background request is unconditional."""
    stored = entry(headers={"Cache-Control": "max-age=1, stale-while-revalidate=60"})
    result = decide(stored, method="GET", request_headers={}, now=T0 + 10)
    assert result.action is CacheAction.STALE_WHILE_REVALIDATE
    assert result.conditional_headers == ()


@pytest.mark.parametrize(
    ("response_cc", "request_cc", "now", "action"),
    [
        ("max-age=60", "no-cache", T0 + 1, CacheAction.STALE_REVALIDATE),
        ("max-age=60", "max-age=0", T0 + 1, CacheAction.STALE_REVALIDATE),
        ("max-age=60", "max-age=30", T0 + 10, CacheAction.FRESH),
        ("max-age=60", "min-fresh=55", T0 + 10, CacheAction.STALE_REVALIDATE),
        ("max-age=60", "min-fresh=10", T0 + 10, CacheAction.FRESH),
        ("max-age=60", "max-stale=20", T0 + 70, CacheAction.FRESH),
        ("max-age=60", "max-stale=5", T0 + 70, CacheAction.STALE_REVALIDATE),
        ("max-age=60", "max-stale", T0 + 7000, CacheAction.FRESH),
        ("max-age=60, must-revalidate", "max-stale", T0 + 70, CacheAction.STALE_REVALIDATE),
        ("max-age=60, immutable", "max-age=0", T0 + 1, CacheAction.FRESH),
        ("max-age=60, immutable", "no-cache", T0 + 1, CacheAction.STALE_REVALIDATE),
        (
            "max-age=60, stale-while-revalidate=60",
            "max-age=10",
            T0 + 70,
            CacheAction.STALE_REVALIDATE,
        ),
        ("max-age=60, no-cache", "", T0 + 1, CacheAction.STALE_REVALIDATE),
    ],
)
def test_request_and_response_directives(
    response_cc: str, request_cc: str, now: float, action: CacheAction
) -> None:
    """Request no-cache, max-age, min-fresh and max-stale and response no-cache are honoured."""
    stored = entry(headers={"Cache-Control": response_cc, "ETag": '"e"'})
    assert decision_for(stored, now, Cache_Control=request_cc)[0] is action


def test_request_no_store_may_still_be_served_from_cache() -> None:
    """Request no-store forbids storing the answer, not reusing what is stored (§5.2.1.5)."""
    stored = entry(headers={"Cache-Control": "max-age=60"})
    assert decision_for(stored, T0 + 1, Cache_Control="no-store")[0] is CacheAction.FRESH


def test_only_if_cached_without_a_usable_response() -> None:
    """only-if-cached with nothing fresh stored asks for a 504 rather than a request."""
    stale = entry(headers={"Cache-Control": "max-age=1", "ETag": '"e"'})
    for stored in (None, stale):
        result = decide(
            stored,
            method="GET",
            request_headers={"cache-control": "only-if-cached"},
            now=T0 + 10,
        )
        assert result.action is CacheAction.MISS
        assert result.only_if_cached


@pytest.mark.parametrize(
    ("stored_method", "method", "action"),
    [
        ("GET", "HEAD", CacheAction.FRESH),
        ("HEAD", "GET", CacheAction.MISS),
        ("GET", "POST", CacheAction.MISS),
    ],
)
def test_methods(stored_method: str, method: str, action: CacheAction) -> None:
    """A GET response answers HEAD; a HEAD response cannot answer GET; POST is not cached."""
    stored = entry(headers={"Cache-Control": "max-age=60"}, method=stored_method)
    assert decision_for(stored, T0 + 1, method=method)[0] is action


def test_ttl_override_caches_headerless_responses() -> None:
    """With ttl=3600 an API that sends no cache headers is served from cache for an hour."""
    stored = entry(headers={}, ttl=3600.0)
    assert decision_for(stored, T0 + 3599)[0] is CacheAction.FRESH
    assert decision_for(stored, T0 + 3601)[0] is CacheAction.MISS


def test_ttl_override_sets_aside_response_no_cache() -> None:
    """A ttl override wins over the response's no-cache and must-revalidate."""
    stored = entry(headers={"Cache-Control": "no-cache, no-store, must-revalidate"}, ttl=60.0)
    assert decision_for(stored, T0 + 30)[0] is CacheAction.FRESH


def test_per_request_ttl_overrides_stored_headers() -> None:
    """A ttl passed to decide applies to that request only."""
    stored = entry(headers={"Cache-Control": "max-age=5"})
    assert decision_for(stored, T0 + 30, ttl=60.0)[0] is CacheAction.FRESH
    assert decision_for(stored, T0 + 30)[0] is CacheAction.MISS


def test_heuristic_freshness_serves_then_revalidates() -> None:
    """With only Last-Modified (1000 s ago) the response is fresh for 100 s, then revalidated."""
    stored = entry(headers={"Last-Modified": http_date(T0 - 1000)})
    assert decision_for(stored, T0 + 99)[0] is CacheAction.FRESH
    assert decision_for(stored, T0 + 101)[0] is CacheAction.STALE_REVALIDATE


# -- Vary (§4.1) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored_request", "incoming", "matches"),
    [
        ({"Accept": "application/json"}, {"accept": "application/json"}, True),
        ({"Accept": "application/json"}, {"Accept": "text/html"}, False),
        ({"Accept-Language": "en,  fr"}, {"Accept-Language": "en, fr"}, True),
        ({}, {}, True),
        ({}, {"Accept": "application/json"}, False),
        ({"Accept": "application/json"}, {}, False),
    ],
)
def test_vary_secondary_key(
    stored_request: dict[str, str], incoming: dict[str, str], matches: bool
) -> None:
    """Vary selects a stored response only when the named request fields match."""
    stored = entry(
        headers={"Cache-Control": "max-age=60", "Vary": "Accept, Accept-Language"},
        request_headers=stored_request,
    )
    assert vary_matches(stored, CIMultiDict(incoming)) is matches
    result = decide(stored, method="GET", request_headers=CIMultiDict(incoming), now=T0 + 1)
    assert (result.action is CacheAction.FRESH) is matches


def test_vary_star_never_matches() -> None:
    """Vary: * means no request can be matched to the stored response."""
    stored = entry(headers={"Cache-Control": "max-age=60", "Vary": "*"})
    assert not vary_matches(stored, {})
    assert decision_for(stored, T0 + 1) == (CacheAction.MISS, "vary mismatch")


# -- 304 (§4.3.4) ---------------------------------------------------------------------------


def test_not_modified_merges_headers() -> None:
    """A 304 replaces the stored fields it carries, keeps Content-Length, and refreshes age."""
    stored = entry(
        headers={
            "Cache-Control": "max-age=60",
            "ETag": '"v1"',
            "Content-Length": "123",
            "Content-Type": "application/json",
            "Age": "50",
            "X-Old": "kept",
        }
    )
    later = T0 + 500
    merged = merge_not_modified(
        stored,
        response_headers=CIMultiDict(
            {
                "Cache-Control": "max-age=120",
                "ETag": '"v1"',
                "Date": http_date(later),
                "Content-Length": "0",
            }
        ),
        request_time=later,
        response_time=later,
    )
    assert merged is not None
    assert merged.header("cache-control") == "max-age=120"
    assert merged.header("content-length") == "123"
    assert merged.header("x-old") == "kept"
    assert merged.header("age") is None
    assert merged.header("date") == http_date(later)
    assert (merged.request_time, merged.response_time) == (later, later)
    assert decision_for(merged, later + 100)[0] is CacheAction.FRESH


def test_not_modified_without_date_is_dated_on_receipt() -> None:
    """A 304 without Date gets one for the time it arrived, so the entry is fresh again."""
    stored = entry(headers={"Cache-Control": "max-age=60", "ETag": '"v1"'})
    merged = merge_not_modified(
        stored, response_headers={"ETag": '"v1"'}, request_time=T0 + 900, response_time=T0 + 900
    )
    assert merged is not None
    assert decision_for(merged, T0 + 930)[0] is CacheAction.FRESH


@pytest.mark.parametrize(
    ("stored_headers", "new_headers", "selected"),
    [
        ({"ETag": '"v1"'}, {"ETag": '"v2"'}, False),
        ({"ETag": '"v1"'}, {"ETag": '"v1"'}, True),
        ({"ETag": 'W/"v1"'}, {"ETag": 'W/"v1"'}, True),
        ({"ETag": 'W/"v1"'}, {"ETag": '"v1"'}, False),  # a strong tag never matches a weak one
        ({"ETag": '"v1"'}, {"ETag": 'W/"v1"'}, True),  # weak comparison
        ({}, {"ETag": '"v1"'}, False),
        ({"Last-Modified": http_date(T0 - 60)}, {"Last-Modified": http_date(T0 - 60)}, True),
        ({"Last-Modified": http_date(T0 - 60)}, {"Last-Modified": http_date(T0 - 30)}, False),
        ({}, {}, True),
    ],
)
def test_not_modified_selects_by_validator(
    stored_headers: dict[str, str], new_headers: dict[str, str], selected: bool
) -> None:
    """A 304 updates the entry only when its validator identifies the stored response."""
    stored = entry(headers={"Cache-Control": "max-age=60", **stored_headers})
    merged = merge_not_modified(
        stored, response_headers=new_headers, request_time=T0 + 90, response_time=T0 + 90
    )
    assert (merged is not None) is selected


# -- stale-if-error (RFC 5861 §4, RFC 9111 §4.2.4) ------------------------------------------


@pytest.mark.parametrize(
    ("cache_control", "error", "allowed"),
    [
        ("max-age=60, stale-if-error=600", {"status": 503, "now": T0 + 300}, True),
        ("max-age=60, stale-if-error=600", {"status": None, "now": T0 + 300}, True),
        ("max-age=60, stale-if-error=600", {"status": 503, "now": T0 + 700}, False),
        ("max-age=60, stale-if-error=600", {"status": 404, "now": T0 + 300}, False),
        ("max-age=60, stale-if-error=600", {"status": 501, "now": T0 + 300}, False),
        (
            "max-age=60, stale-if-error=600, must-revalidate",
            {"status": 503, "now": T0 + 300},
            False,
        ),
        ("max-age=60", {"status": 503, "now": T0 + 300}, False),
        (
            "max-age=60",
            {
                "status": 502,
                "now": T0 + 300,
                "request_headers": {"cache-control": "stale-if-error=300"},
            },
            True,
        ),
        ("max-age=60", {"status": 504, "now": T0 + 300, "stale_if_error": 3600.0}, True),
        ("max-age=60, no-cache", {"status": 500, "now": T0 + 30, "stale_if_error": 3600.0}, False),
        ("max-age=60", {"status": 500, "now": T0 + 30}, True),  # still fresh
    ],
)
def test_stale_if_error(cache_control: str, error: dict[str, object], allowed: bool) -> None:
    """A stale response may replace a 5xx or connection error within a granted window."""
    stored = entry(headers={"Cache-Control": cache_control})
    assert can_serve_stale_on_error(stored, **error) is allowed  # type: ignore[arg-type]


def test_stale_if_error_without_entry() -> None:
    """Nothing stored, nothing to serve."""
    assert not can_serve_stale_on_error(None, now=T0, status=None, stale_if_error=60.0)


# -- invalidation (§4.4) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        ("POST", 201, True),
        ("put", 204, True),
        ("DELETE", 302, True),
        ("PATCH", 500, False),
        ("POST", 404, False),
        ("GET", 200, False),
    ],
)
def test_invalidates(method: str, status: int, expected: bool) -> None:
    """A successful unsafe request evicts what is stored for its URI."""
    assert invalidates(method, status) is expected
