"""RFC 9111 decisions for a private cache of GET and HEAD responses.

Sans-IO, like hishel's core: the functions here read header fields and clocks and say what to
do; the cache policy does the storing, sending and serving. Each rule cites its section of
RFC 9111 (HTTP Caching), RFC 9110 (HTTP Semantics), RFC 5861 (stale-while-revalidate and
stale-if-error) or RFC 8246 (immutable).

Times are wall-clock epoch seconds, not monotonic: stored entries outlive the process and
are compared with `Date` and `Expires`, which are wall-clock.

tether is a client, so this is a *private* cache (RFC 9111 §1): `s-maxage`,
`proxy-revalidate`, `private` and `Authorization` (§3.5) restrict shared caches only.

One deliberate extension: a `ttl` override (per request or per entry) forces the freshness
lifetime for APIs that send no cache headers, or wrong ones (hishel #407 is the ask). With it
the user takes responsibility, so the response's own `no-store`, `no-cache` and
`must-revalidate` are set aside; the *request's* directives still apply.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime
from typing import TypeAlias

__all__ = [
    "CacheAction",
    "CacheControl",
    "CacheDecision",
    "CacheEntry",
    "HeaderPairs",
    "can_serve_stale_on_error",
    "current_age",
    "decide",
    "freshness_lifetime",
    "invalidates",
    "is_storable",
    "make_entry",
    "merge_not_modified",
    "parse_cache_control",
    "vary_matches",
]

HeaderPairs: TypeAlias = tuple[tuple[str, str], ...]
Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]

# RFC 9110 §15.1: status codes that are heuristically cacheable.
_HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
# Statuses this cache knows how to reuse; 206 needs range handling it does not do (§3.3).
_STORABLE_STATUSES = _HEURISTIC_STATUSES - {206}
# RFC 9111 §4.2.2 suggests 10 % of the time since Last-Modified; the cap keeps a decade-old
# document from being trusted for a year. RFC 7234 §4.2.2 demanded a warning past 24 hours.
_HEURISTIC_FRACTION = 0.1
_HEURISTIC_CAP = 86400.0
# RFC 9111 §1.2.2: delta-seconds too large to represent are taken as 2**31.
_DELTA_MAX = 2**31
# RFC 9111 §3.1: connection-specific fields are never stored.
_HOP_BY_HOP = frozenset(
    {"connection", "proxy-connection", "keep-alive", "te", "transfer-encoding", "upgrade"}
)
# RFC 5861 §4: the errors stale-if-error applies to (None stands for "no response at all").
_STALE_IF_ERROR_STATUSES = frozenset({500, 502, 503, 504})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


# -- header helpers ---------------------------------------------------------------------------


def _pairs(headers: Headers) -> HeaderPairs:
    # Mapping.items() of a multidict yields every line, so repeated fields survive.
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name), str(value)) for name, value in items)


def _get(pairs: HeaderPairs, name: str) -> str | None:
    """A field's value with repeated lines joined by commas (RFC 9110 §5.3)."""
    values = [value for key, value in pairs if key.lower() == name]
    if not values:
        return None
    return ", ".join(values)


def _http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # RFC 9110 §5.6.7: every HTTP-date is GMT; asctime() carries no zone at all.
        return parsed.replace(tzinfo=UTC).timestamp()
    return parsed.timestamp()


def _delta_seconds(value: str) -> int | None:
    """RFC 9111 §1.2.2: a non-negative integer; anything else is invalid."""
    text = value.strip().strip('"')
    if not text.isdigit():
        return None
    return min(int(text), _DELTA_MAX)


# -- Cache-Control ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheControl:
    """Parsed Cache-Control directives of a request or a response (RFC 9111 §5.2)."""

    max_age: int | None = None
    s_maxage: int | None = None
    no_store: bool = False
    no_cache: bool = False
    #: Field names of the qualified form `no-cache="Set-Cookie"` (§5.2.2.4).
    no_cache_fields: tuple[str, ...] = ()
    must_revalidate: bool = False
    must_understand: bool = False
    proxy_revalidate: bool = False
    private: bool = False
    public: bool = False
    immutable: bool = False
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    #: `max-stale` with a value; `max_stale_any` when it had none (any staleness accepted).
    max_stale: int | None = None
    max_stale_any: bool = False
    min_fresh: int | None = None
    only_if_cached: bool = False
    no_transform: bool = False


_DIRECTIVE = re.compile(
    r"""\s*(?P<name>[!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*
        (?:=\s*(?P<value>"(?:[^"\\]|\\.)*"|[^,\s]*))?\s*(?:,|$)""",
    re.VERBOSE,
)
_DELTA_DIRECTIVES = {
    "max-age": "max_age",
    "s-maxage": "s_maxage",
    "stale-while-revalidate": "stale_while_revalidate",
    "stale-if-error": "stale_if_error",
    "min-fresh": "min_fresh",
}
_FLAG_DIRECTIVES = {
    "no-store": "no_store",
    "must-revalidate": "must_revalidate",
    "must-understand": "must_understand",
    "proxy-revalidate": "proxy_revalidate",
    "private": "private",
    "public": "public",
    "immutable": "immutable",
    "only-if-cached": "only_if_cached",
    "no-transform": "no_transform",
}


def parse_cache_control(value: str | None) -> CacheControl:
    """Parse a Cache-Control field value; unknown directives are ignored (§5.2.3)."""
    if not value:
        return CacheControl()
    deltas: dict[str, int | None] = {}
    flags: set[str] = set()
    no_cache_fields: tuple[str, ...] = ()
    max_stale: int | None = None
    for match in _DIRECTIVE.finditer(value):
        name = match["name"].lower()
        argument = match["value"]
        if name in _DELTA_DIRECTIVES:
            key = _DELTA_DIRECTIVES[name]
            if key in deltas:
                continue  # §4.2.1: with duplicates, the first occurrence is used
            seconds = None if argument is None else _delta_seconds(argument)
            # §4.2.1: invalid freshness information is best treated as stale, hence 0 for
            # max-age; for the others an invalid value grants nothing.
            deltas[key] = 0 if seconds is None and key == "max_age" else seconds
        elif name in _FLAG_DIRECTIVES:
            flags.add(_FLAG_DIRECTIVES[name])
        elif name == "no-cache":
            flags.add("no_cache")
            if argument:
                # §5.2.2.4: the qualified form lists field names in a quoted string.
                names = argument.strip('"').split(",")
                no_cache_fields = tuple(n.strip().lower() for n in names if n.strip())
        elif name == "max-stale":
            if argument is None:
                flags.add("max_stale_any")
            else:
                max_stale = _delta_seconds(argument)
    return CacheControl(
        max_age=deltas.get("max_age"),
        s_maxage=deltas.get("s_maxage"),
        no_store="no_store" in flags,
        no_cache="no_cache" in flags,
        no_cache_fields=no_cache_fields,
        must_revalidate="must_revalidate" in flags,
        must_understand="must_understand" in flags,
        proxy_revalidate="proxy_revalidate" in flags,
        private="private" in flags,
        public="public" in flags,
        immutable="immutable" in flags,
        stale_while_revalidate=deltas.get("stale_while_revalidate"),
        stale_if_error=deltas.get("stale_if_error"),
        max_stale=max_stale,
        max_stale_any="max_stale_any" in flags,
        min_fresh=deltas.get("min_fresh"),
        only_if_cached="only_if_cached" in flags,
        no_transform="no_transform" in flags,
    )


# -- entries ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheEntry:
    """A stored response's metadata; the body is stored next to it by the cache policy."""

    status: int
    #: The response header fields as stored (connection-specific fields removed, §3.1).
    headers: HeaderPairs
    #: The request header fields named by the response's Vary, as sent (§4.1).
    vary_values: tuple[tuple[str, str | None], ...] = ()
    #: Epoch seconds when the request was sent and when the response arrived (§4.2.3).
    request_time: float
    response_time: float
    method: str = "GET"
    #: Forced freshness lifetime in seconds (see the module docstring), or None.
    ttl: float | None = None

    def header(self, name: str) -> str | None:
        """A stored field's value, repeated lines joined; `name` is case-insensitive."""
        return _get(self.headers, name.lower())

    @property
    def cache_control(self) -> CacheControl:
        return parse_cache_control(self.header("cache-control"))

    @property
    def etag(self) -> str | None:
        return self.header("etag")

    @property
    def last_modified(self) -> str | None:
        return self.header("last-modified")


def _vary_names(vary: str | None) -> tuple[str, ...]:
    if not vary:
        return ()
    return tuple(name.strip().lower() for name in vary.split(",") if name.strip())


def _normalise(value: str | None) -> str | None:
    # §4.1: values may be normalised before comparison; whitespace around list commas and at
    # the ends carries no meaning, so it is collapsed.
    if value is None:
        return None
    return ",".join(part.strip() for part in value.split(","))


def _storable_pairs(pairs: HeaderPairs, drop: Iterable[str] = ()) -> HeaderPairs:
    """§3.1: connection-specific fields and those named in Connection are not stored; nor are
    fields named by a qualified no-cache (§5.2.2.4), which may not be reused unvalidated.
    """
    excluded = set(_HOP_BY_HOP)
    excluded.update(drop)
    connection = _get(pairs, "connection")
    if connection:
        excluded.update(name.strip().lower() for name in connection.split(","))
    return tuple((name, value) for name, value in pairs if name.lower() not in excluded)


def _with_date(pairs: HeaderPairs, response_time: float) -> HeaderPairs:
    # RFC 9110 §6.6.1: a recipient with a clock that caches a response without Date MUST add
    # one recording when it was received, or its age could never be computed.
    if _get(pairs, "date") is not None:
        return pairs
    return (*pairs, ("Date", formatdate(response_time, usegmt=True)))


def make_entry(
    *,
    status: int,
    request_headers: Headers,
    response_headers: Headers,
    request_time: float,
    response_time: float,
    method: str = "GET",
    ttl: float | None = None,
) -> CacheEntry:
    """Build the entry to store for a response (check `is_storable` first)."""
    response_pairs = _pairs(response_headers)
    request_pairs = _pairs(request_headers)
    control = parse_cache_control(_get(response_pairs, "cache-control"))
    stored = _with_date(_storable_pairs(response_pairs, control.no_cache_fields), response_time)
    vary_values = tuple(
        (name, _normalise(_get(request_pairs, name)))
        for name in _vary_names(_get(response_pairs, "vary"))
    )
    return CacheEntry(
        status=status,
        headers=stored,
        vary_values=vary_values,
        request_time=request_time,
        response_time=response_time,
        method=method.upper(),
        ttl=ttl,
    )


# -- storability, freshness, age --------------------------------------------------------------


def is_storable(
    *,
    method: str,
    status: int,
    request_headers: Headers,
    response_headers: Headers,
    ttl: float | None = None,
) -> bool:
    """Whether a private cache may store this response (RFC 9111 §3)."""
    # §3: the method must be understood and cacheable; only GET and HEAD are cached here.
    if method.upper() not in {"GET", "HEAD"}:
        return False
    request = parse_cache_control(_get(_pairs(request_headers), "cache-control"))
    # §5.2.1.5: a request no-store forbids storing the response to it; the user's own ttl
    # does not override what the same user asked of this request.
    if request.no_store:
        return False
    # §3: final responses only; §3.3: partial content (206) needs range support; a 304
    # updates an entry (§4.3.4) but is never stored itself. Beyond that, only 2xx and the
    # heuristically cacheable statuses are kept: an API client should not replay a 500
    # because the error page carried max-age.
    if status not in _STORABLE_STATUSES and not (200 <= status < 300 and status != 206):
        return False
    if ttl is not None and status in _STORABLE_STATUSES:
        return True
    pairs = _pairs(response_headers)
    control = parse_cache_control(_get(pairs, "cache-control"))
    # §5.2.2.3: must-understand lets a cache that understands the status store it even with
    # no-store (which is there for caches that do not).
    if control.no_store and not (control.must_understand and status in _STORABLE_STATUSES):
        return False
    # §3: with no explicit permission the response is storable only if it carries explicit
    # freshness, `public`/`private`, or a heuristically cacheable status (RFC 9110 §15.1).
    # `private` counts because this is a private cache (§5.2.2.7).
    return (
        _get(pairs, "expires") is not None
        or control.max_age is not None
        or control.public
        or control.private
        or status in _HEURISTIC_STATUSES
    )


def freshness_lifetime(entry: CacheEntry, *, ttl: float | None = None) -> float:
    """Seconds the stored response stays fresh (RFC 9111 §4.2.1 and §4.2.2)."""
    forced = ttl if ttl is not None else entry.ttl
    if forced is not None:
        return max(0.0, forced)
    control = entry.cache_control
    # §4.2.1: a private cache ignores s-maxage; max-age wins over Expires.
    if control.max_age is not None:
        return float(control.max_age)
    expires_value = entry.header("expires")
    date = _http_date(entry.header("date"))
    if date is None:
        date = entry.response_time
    if expires_value is not None:
        expires = _http_date(expires_value)
        # §5.3: an invalid Expires, notably "0", means already expired.
        if expires is None:
            return 0.0
        return max(0.0, expires - date)
    # §4.2.2: heuristics only without explicit expiry, and only for heuristically cacheable
    # statuses or responses marked public.
    if entry.status in _HEURISTIC_STATUSES or control.public:
        last_modified = _http_date(entry.header("last-modified"))
        if last_modified is not None and last_modified < date:
            return min(_HEURISTIC_CAP, _HEURISTIC_FRACTION * (date - last_modified))
    return 0.0


def current_age(entry: CacheEntry, now: float) -> float:
    """Seconds since the origin generated the stored response (RFC 9111 §4.2.3)."""
    age_field = entry.header("age")
    age_value = 0
    if age_field is not None:
        # §5.1: with a list, use the first member; an invalid value is ignored.
        parsed = _delta_seconds(age_field.split(",", 1)[0])
        age_value = parsed if parsed is not None else 0
    date = _http_date(entry.header("date"))
    date_value = date if date is not None else entry.response_time
    apparent_age = max(0.0, entry.response_time - date_value)
    response_delay = entry.response_time - entry.request_time
    corrected_age_value = age_value + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = now - entry.response_time
    return max(0.0, corrected_initial_age + resident_time)


def vary_matches(entry: CacheEntry, request_headers: Headers) -> bool:
    """Whether the request selects this stored response (RFC 9111 §4.1)."""
    names = _vary_names(entry.header("vary"))
    if not names:
        return True
    # §4.1: "Vary: *" always fails to match.
    if "*" in names:
        return False
    pairs = _pairs(request_headers)
    stored = dict(entry.vary_values)
    # A field absent from both requests matches; present in only one, it does not.
    return all(_normalise(_get(pairs, name)) == stored.get(name) for name in names)


# -- the decision -----------------------------------------------------------------------------


class CacheAction(enum.StrEnum):
    #: Serve the stored response as is.
    FRESH = "fresh"
    #: Send a conditional request built from the stored validators; a 304 refreshes the
    #: entry (`merge_not_modified`), anything else replaces it.
    STALE_REVALIDATE = "stale_revalidate"
    #: Serve the stored response now and revalidate in the background (RFC 5861 §3).
    STALE_WHILE_REVALIDATE = "stale_while_revalidate"
    #: Nothing usable is stored: send the request unconditionally.
    MISS = "miss"


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheDecision:
    action: CacheAction
    #: Why, in a few words, for logs and the `from_cache` debugging story.
    reason: str
    #: The entry's current age, for the `Age` field of a served response (§5.1).
    age: float = 0.0
    #: `If-None-Match` / `If-Modified-Since` to add to the request (§4.3.1).
    conditional_headers: HeaderPairs = ()
    #: The request said only-if-cached and nothing acceptable is stored: answer 504 without
    #: contacting the origin (§5.2.1.7).
    only_if_cached: bool = False


def _conditional_headers(entry: CacheEntry) -> HeaderPairs:
    # §4.3.1: validate with the stored entity tag and Last-Modified. Both are sent; a server
    # evaluates If-None-Match first and ignores If-Modified-Since then (RFC 9110 §13.2.2).
    headers: list[tuple[str, str]] = []
    etag = entry.etag
    if etag is not None:
        headers.append(("If-None-Match", etag))
    last_modified = entry.last_modified
    if last_modified is not None:
        headers.append(("If-Modified-Since", last_modified))
    return tuple(headers)


def decide(
    entry: CacheEntry | None,
    *,
    method: str,
    request_headers: Headers,
    now: float,
    ttl: float | None = None,
) -> CacheDecision:
    """What to do with a request given the stored response selected by its URL, if any."""
    method = method.upper()
    request = parse_cache_control(_get(_pairs(request_headers), "cache-control"))
    if method not in {"GET", "HEAD"}:
        return CacheDecision(action=CacheAction.MISS, reason="method not cacheable")

    def miss(reason: str, age: float = 0.0) -> CacheDecision:
        return CacheDecision(
            action=CacheAction.MISS, reason=reason, age=age, only_if_cached=request.only_if_cached
        )

    if entry is None:
        return miss("not stored")
    # §4: a HEAD response has no body to answer a GET with.
    if method == "GET" and entry.method == "HEAD":
        return miss("stored response is for HEAD")
    if not vary_matches(entry, request_headers):
        return miss("vary mismatch")

    lifetime = freshness_lifetime(entry, ttl=ttl)
    age = current_age(entry, now)
    forced = ttl is not None or entry.ttl is not None
    response = entry.cache_control
    conditional = _conditional_headers(entry)

    def revalidate(reason: str) -> CacheDecision:
        if request.only_if_cached:
            return miss(f"{reason}; only-if-cached", age)
        if not conditional:
            return miss(f"{reason}; no validators", age)
        return CacheDecision(
            action=CacheAction.STALE_REVALIDATE,
            reason=reason,
            age=age,
            conditional_headers=conditional,
        )

    # §5.2.1.4: a request no-cache demands validation with the origin before reuse.
    if request.no_cache:
        return revalidate("request no-cache")
    # §5.2.2.4: a response no-cache must be validated before every reuse.
    if response.no_cache and not forced:
        return revalidate("response no-cache")

    # §4.2: a response is fresh while its age has not reached its freshness lifetime.
    if age < lifetime:
        # RFC 8246 §2: an immutable response is not revalidated while fresh, which is what
        # a reload's max-age=0 would otherwise force.
        if request.max_age is not None and age > request.max_age and not response.immutable:
            # §5.2.1.1: the client will not accept a response older than max-age.
            return revalidate("older than request max-age")
        if request.min_fresh is not None and lifetime - age < request.min_fresh:
            # §5.2.1.3: the client wants the response to stay fresh for min-fresh longer.
            return revalidate("fresh for less than request min-fresh")
        return CacheDecision(action=CacheAction.FRESH, reason="fresh", age=age)

    staleness = age - lifetime
    # §4.2.4 and §5.2.2.2: must-revalidate (and no-cache, handled above) forbid serving a
    # stale response in any case.
    may_serve_stale = forced or not response.must_revalidate
    request_constrains_age = request.max_age is not None or request.min_fresh is not None
    if may_serve_stale:
        # §5.2.1.2: the client accepts a response stale by up to max-stale seconds.
        if (
            request.max_stale_any
            or (request.max_stale is not None and staleness <= request.max_stale)
        ) and not (request.max_age is not None and age > request.max_age):
            return CacheDecision(
                action=CacheAction.FRESH, reason="within request max-stale", age=age
            )
        # RFC 5861 §3: serve stale while revalidating in the background, within the window
        # the origin granted; a request that limits age asked for a current answer.
        window = response.stale_while_revalidate
        if window is not None and staleness <= window and not request_constrains_age:
            return CacheDecision(
                action=CacheAction.STALE_WHILE_REVALIDATE,
                reason="stale-while-revalidate",
                age=age,
                conditional_headers=conditional,
            )
    return revalidate("stale")


# -- after the exchange -----------------------------------------------------------------------


def _strong(etag: str) -> bool:
    return not etag.strip().startswith("W/")


def _opaque(etag: str) -> str:
    etag = etag.strip()
    return etag.removeprefix("W/")


def merge_not_modified(
    entry: CacheEntry,
    *,
    response_headers: Headers,
    request_time: float,
    response_time: float,
) -> CacheEntry | None:
    """Freshen a stored response with a 304 (RFC 9111 §4.3.4); None when the 304 is not for
    this stored response, in which case the entry must not be updated (and the request is
    best repeated without conditions).
    """
    new = _pairs(response_headers)
    new_etag = _get(new, "etag")
    stored_etag = entry.etag
    if new_etag is not None:
        # §4.3.4: a strong validator selects stored responses with the same strong
        # validator; a weak one, those matching it by weak comparison (RFC 9110 §8.8.3.2).
        if stored_etag is None:
            return None
        if _strong(new_etag):
            if not _strong(stored_etag) or new_etag.strip() != stored_etag.strip():
                return None
        elif _opaque(new_etag) != _opaque(stored_etag):
            return None
    else:
        new_last_modified = _get(new, "last-modified")
        stored_last_modified = entry.last_modified
        if new_last_modified is not None and stored_last_modified is not None:
            if _http_date(new_last_modified) != _http_date(stored_last_modified):
                return None
        elif new_last_modified is not None:
            return None

    control = parse_cache_control(_get(new, "cache-control"))
    # RFC 9110 §6.6.1: a 304 without Date is dated on receipt like any other response;
    # keeping the old Date would make the freshened entry look as old as the first one.
    updates = _with_date(_storable_pairs(new, control.no_cache_fields), response_time)
    # §3.2: every field in the 304 replaces the stored one of that name, except
    # Content-Length, which describes the 304's own (empty) content.
    replaced = {name.lower() for name, _ in updates} - {"content-length"}
    updates = tuple((name, value) for name, value in updates if name.lower() in replaced)
    # A stored Age described the old response's journey; the 304 is a new one, so its age is
    # what counts from now on (absent from an origin server's 304, hence dropped).
    replaced.add("age")
    kept = tuple((name, value) for name, value in entry.headers if name.lower() not in replaced)
    merged = (*kept, *updates)
    return replace(entry, headers=merged, request_time=request_time, response_time=response_time)


def can_serve_stale_on_error(
    entry: CacheEntry | None,
    *,
    now: float,
    status: int | None,
    request_headers: Headers = (),
    stale_if_error: float | None = None,
    ttl: float | None = None,
) -> bool:
    """Whether a stored response may answer in place of an error.

    `status` is the error response's status, or None when there was no response at all
    (connection failure, timeout, open circuit). `stale_if_error` is the client's own
    permission in seconds, which RFC 9111 §4.2.4 allows ("explicitly permitted by the
    client"); the response's and the request's `stale-if-error` (RFC 5861 §4) count too.
    """
    if entry is None:
        return False
    # RFC 5861 §4: an error is a 500, 502, 503 or 504, or no response at all.
    if status is not None and status not in _STALE_IF_ERROR_STATUSES:
        return False
    forced = ttl is not None or entry.ttl is not None
    response = entry.cache_control
    # §4.2.4: must-revalidate and no-cache forbid stale responses, errors or not.
    if not forced and (response.must_revalidate or response.no_cache):
        return False
    lifetime = freshness_lifetime(entry, ttl=ttl)
    age = current_age(entry, now)
    if age < lifetime:
        return True
    request = parse_cache_control(_get(_pairs(request_headers), "cache-control"))
    windows = [
        window
        for window in (response.stale_if_error, request.stale_if_error, stale_if_error)
        if window is not None
    ]
    if not windows:
        return False
    return age - lifetime <= max(windows)


def invalidates(method: str, status: int) -> bool:
    """Whether a response to this request must evict the stored responses for its target
    URI (and its Location and Content-Location): RFC 9111 §4.4, an unsafe method answered
    with a non-error status.
    """
    return method.upper() not in _SAFE_METHODS and 200 <= status < 400
