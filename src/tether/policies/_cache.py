"""The HTTP cache policy: a private RFC 9111 cache for GET and HEAD, in front of the pipeline.

Every decision comes from `tether._core._cache`; this module looks entries up, sends, stores
and serves. It is the outermost link, so a fresh hit costs no rate-limit token, no breaker
call and no retry budget.

Beyond RFC 9111 it adds:

- single-flight: concurrent identical misses share one request. The request runs in a task
  the callers only await, so cancelling the one who started it strands nobody; it is
  cancelled when its last caller gives up.
- stale-if-error for failures that never produced a response (connection errors, timeouts,
  deadline, retry budget, open circuit), allowed by the response or by the client.
- stale-while-revalidate with an owned background refresh, at most one per key.

Secrets never reach a backend: keys are digests of method and URL, the request fields kept
for Vary matching pass through the request's redactor, response fields named as credentials
(Set-Cookie, the credential's own header) are not stored and known secret values in the
others are replaced.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from tether._cache_config import Cache
from tether._core._cache import (
    CacheAction,
    CacheEntry,
    HeaderPairs,
    can_serve_stale_on_error,
    current_age,
    decide,
    freshness_lifetime,
    invalidates,
    is_storable,
    make_entry,
    merge_not_modified,
    vary_matches,
)
from tether._errors import (
    BulkheadFull,
    CircuitOpenError,
    ConfigError,
    DeadlineExceeded,
    RateLimitWaitTooLong,
    RequestError,
    RetryBudgetExhausted,
    TetherError,
)
from tether._models import Response
from tether._redact import REDACTED
from tether._types import Send
from tether.cache._base import CacheBackend, StoredResponse
from tether.cache._memory import MemoryCache

if TYPE_CHECKING:
    from tether._clock import Clock
    from tether._models import Request
    from tether._redact import Redactor

__all__ = ["CACHE_TTL_EXTENSION", "CachePolicy"]

logger = logging.getLogger("tether")

#: A request's own freshness lifetime in seconds, overriding `Cache.ttl` for this call; `0`
#: sends the call past the cache (nothing looked up, nothing stored).
CACHE_TTL_EXTENSION = "tether.cache_ttl"

# Failures that left no response to answer with; with a 500/502/503/504 response these are
# the errors stale-if-error covers (RFC 5861 §4: "an error is any situation that would result
# in a 500, 502, 503 or 504 ... being generated").
# Local refusals (rate limit, bulkhead, open circuit) count too: a fresh answer could not be
# had in time, which is exactly when a stale one is worth more than an error.
_STALE_ERRORS = (
    RequestError,
    DeadlineExceeded,
    RetryBudgetExhausted,
    CircuitOpenError,
    RateLimitWaitTooLong,
    BulkheadFull,
)
# A caller that validates or asks for ranges itself wants the origin's own answer to exactly
# that (RFC 9111 §4.3.2 lets a cache answer such requests, but only from complete, fresh
# entries; passing them through is always correct and keeps 304 and 206 out of the store).
_CALLER_CONDITIONS = frozenset(
    {"if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range", "range"}
)
_KEY_FORMAT = "tether-cache/1"


def _full_url(request: Request) -> str:
    """The target URI as sent, query parameters in the order given."""
    params = request.params
    if not params:
        return request.url
    return f"{request.url}{'&' if '?' in request.url else '?'}{urlencode(params)}"


def _key(method: str, url: str) -> str:
    # A digest, not the URL: query parameters may carry secrets, and the key is all a
    # backend needs (the served response takes its URL from the request).
    return hashlib.sha256(f"{_KEY_FORMAT} {method} {url}".encode()).hexdigest()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _stored_fields(headers: CIMultiDictProxy[str], redactor: Redactor) -> HeaderPairs:
    """Response fields fit to store: credential fields dropped, secret values hidden."""
    sensitive = redactor.headers
    return tuple(
        (name, redactor.text(value))
        for name, value in headers.items()
        if name.lower() not in sensitive
    )


@dataclass(slots=True)
class _Lookup:
    """What one call found in the cache, and the facts needed to store its answer."""

    method: str
    key: str
    #: The request's URL before any link below could change it; served responses carry it.
    url: str
    #: The request's fields as the cache may keep them (credentials redacted).
    view: HeaderPairs
    partition: str
    ttl: float | None
    #: The stored response selected for this request (§4.1), fresh or not.
    stored: StoredResponse | None

    @property
    def flight_key(self) -> str:
        return f"{self.key}/{self.partition}"


@dataclass(slots=True)
class _Outcome:
    """The answer of one trip to the origin, as its callers share it."""

    response: Response
    #: The entry describing `response`, stored or not: callers who joined the trip check
    #: its Vary against their own request.
    entry: CacheEntry
    #: False when the origin forbade reuse (no-store): joiners then ask for themselves.
    shareable: bool


class _Flight:
    """One request to the origin on behalf of every caller awaiting `task`."""

    __slots__ = ("detached", "invalidated", "key", "target", "task", "waiters")

    def __init__(self, key: str, *, target: str, detached: bool) -> None:
        self.key = key
        #: Method and redacted URL, for log lines.
        self.target = target
        #: A background refresh: it runs to its end even when nobody awaits it.
        self.detached = detached
        #: Set when an unsafe request invalidated the key meanwhile: the answer, obtained
        #: before the change, must not be stored.
        self.invalidated = False
        self.waiters = 0
        self.task: asyncio.Task[_Outcome]


class CachePolicy:
    """Answers GET and HEAD from a private HTTP cache when RFC 9111 allows, and stores what
    the origin lets it keep. Unsafe methods that succeed invalidate their URL (§4.4).
    """

    __slots__ = ("_backend", "_clock", "_closed", "_config", "_flights", "_salt")

    def __init__(self, cache: Cache, *, clock: Clock) -> None:
        if not isinstance(cache, Cache):
            raise ConfigError(f"cache must be a tether.Cache, got {cache!r}")
        self._config = cache
        self._backend: CacheBackend = (
            MemoryCache() if isinstance(cache.backend, str) else cache.backend
        )
        self._clock = clock
        self._flights: dict[str, _Flight] = {}
        self._closed = False
        # Salts the partition digests of credentials: never stored, so a digest in a cache
        # file cannot be checked against guessed passwords, and such entries are reused only
        # by this client instance.
        self._salt = secrets.token_bytes(16)

    @property
    def backend(self) -> CacheBackend:
        return self._backend

    async def send(self, request: Request, next_: Send) -> Response:
        method = request.method.upper()
        if method not in ("GET", "HEAD"):
            return await self._send_unsafe(request, method, next_)
        ttl = self._ttl(request)
        if (
            ttl == 0
            or request.content
            or any(name.lower() in _CALLER_CONDITIONS for name in request.headers)
        ):
            return await next_(request)
        key = _key(method, _full_url(request))
        view, partition = self._view(request)
        stored = await self._load(key, view, partition)
        now = self._clock.time()
        if stored is not None and "cache-control" not in request.headers:
            age = fresh_age(stored, ttl, now)
            if age is not None:
                return self._serve(stored, request, request.url, age)
        decision = decide(
            stored.entry if stored is not None else None,
            method=method,
            request_headers=view,
            now=now,
            ttl=ttl,
        )
        lookup = _Lookup(
            method=method,
            key=key,
            url=request.url,
            view=view,
            partition=partition,
            ttl=ttl,
            stored=stored,
        )
        action = decision.action
        if stored is not None and action is CacheAction.FRESH:
            return self._serve(stored, request, lookup.url, decision.age)
        if stored is not None and action is CacheAction.STALE_WHILE_REVALIDATE:
            # RFC 5861 §3: the stale answer now, a fresh one for the next caller.
            self._refresh(request, lookup, decision.conditional_headers, next_)
            return self._serve(stored, request, lookup.url, decision.age)
        if decision.only_if_cached:
            # RFC 9111 §5.2.1.7: nothing usable is stored, so answer 504 without the origin.
            response = Response(504, url=request.url, request=request)
            response.from_cache = True
            response.attempts = 0
            return response
        try:
            response = await self._fetch(request, lookup, decision.conditional_headers, next_)
        except _STALE_ERRORS as error:
            stale = self._stale(request, lookup, status=None)
            if stale is None:
                raise
            logger.info(
                "serving a stale cached response for %s %s after %s",
                method,
                request.redacted_url(),
                type(error).__name__,
            )
            return stale
        if response.status >= 500 and not response.from_cache:
            # RFC 9111 §4.2.4 and RFC 5861 §4: a stored response may stand in for an error
            # answer where the origin or the client allows it.
            stale = self._stale(request, lookup, status=response.status)
            if stale is not None:
                logger.info(
                    "serving a stale cached response for %s %s after status %d",
                    method,
                    request.redacted_url(),
                    response.status,
                )
                return stale
        return response

    async def wait_idle(self) -> None:
        """Wait until no background refresh or shared request is in progress."""
        while self._flights:
            tasks = [flight.task for flight in self._flights.values()]
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel background refreshes and shared requests, then close the backend."""
        self._closed = True
        tasks = [flight.task for flight in self._flights.values()]
        self._flights.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._backend.aclose()

    # -- lookup -------------------------------------------------------------------------------

    def _ttl(self, request: Request) -> float | None:
        override: Any = request.extensions.get(CACHE_TTL_EXTENSION)
        if override is not None:
            if (
                isinstance(override, bool)
                or not isinstance(override, int | float)
                or not override >= 0
            ):
                raise ConfigError(f"cache_ttl must be zero or more seconds, got {override!r}")
            return float(override)
        config = self._config
        if config.ttl is None or isinstance(config.ttl, float):
            return config.ttl
        return config.ttl_for(urlsplit(request.url).path)

    def _view(self, request: Request) -> tuple[HeaderPairs, str]:
        """The request's fields with credentials redacted, and the partition they imply."""
        redactor = request.redactor
        sensitive = redactor.headers
        shown: list[tuple[str, str]] = []
        hidden: list[str] = []
        for name, value in request.headers.items():
            lower = name.lower()
            safe = REDACTED if lower in sensitive else redactor.text(value)
            if safe != value:
                hidden.append(f"{lower}:{value}")
            shown.append((name, safe))
        if not hidden:
            # The usual case: credentials are added by `auth=`, below the cache.
            return tuple(shown), ""
        # Credentials set on the request itself: a response fetched with them is reused only
        # by requests carrying the very same ones.
        digest = hashlib.sha256(self._salt)
        digest.update("\n".join(sorted(hidden)).encode())
        return tuple(shown), digest.hexdigest()[:32]

    async def _load(self, key: str, view: HeaderPairs, partition: str) -> StoredResponse | None:
        try:
            found: Sequence[StoredResponse] = await self._backend.get(key)
        except Exception:
            # A broken cache must not break the call: it behaves as a miss.
            logger.warning("cache lookup failed; sending the request", exc_info=True)
            return None
        best: StoredResponse | None = None
        for candidate in found:
            if candidate.partition != partition or not vary_matches(candidate.entry, view):
                continue
            # §4.1: of several matching responses, the most recent one is used.
            if best is None or candidate.entry.response_time > best.entry.response_time:
                best = candidate
        return best

    def _serve(self, stored: StoredResponse, request: Request, url: str, age: float) -> Response:
        fields = CIMultiDict(stored.entry.headers)
        # §5.1: a response served from cache carries its current age, in whole seconds.
        fields.popall("Age", None)
        fields["Age"] = str(int(age))
        response = Response(
            stored.entry.status,
            headers=CIMultiDictProxy(fields),
            content=b"" if request.method.upper() == "HEAD" else stored.body,
            url=url,
            request=request,
        )
        response.from_cache = True
        response.attempts = 0
        return response

    def _stale(self, request: Request, lookup: _Lookup, *, status: int | None) -> Response | None:
        stored = lookup.stored
        if stored is None:
            return None
        now = self._clock.time()
        if not can_serve_stale_on_error(
            stored.entry,
            now=now,
            status=status,
            request_headers=lookup.view,
            stale_if_error=self._config.stale_if_error,
            ttl=lookup.ttl,
        ):
            return None
        return self._serve(stored, request, lookup.url, current_age(stored.entry, now))

    # -- trips to the origin ------------------------------------------------------------------

    async def _fetch(
        self, request: Request, lookup: _Lookup, conditional: HeaderPairs, next_: Send
    ) -> Response:
        """The origin's answer for `request`, shared with identical concurrent misses."""
        flight_key = lookup.flight_key
        flight = self._flights.get(flight_key)
        if flight is None:
            flight = self._launch(request, lookup, conditional, next_, detached=False)
            outcome = await self._await(flight)
            return outcome.response
        outcome = await self._await(flight, request)
        if outcome.shareable and vary_matches(outcome.entry, lookup.view):
            return _copy_for(outcome.response, request)
        # The shared answer does not fit this request (another Vary'd variant, or one the
        # origin said not to reuse): ask for our own.
        outcome = await self._exchange(request, lookup, conditional, next_, None)
        return outcome.response

    def _launch(
        self,
        request: Request,
        lookup: _Lookup,
        conditional: HeaderPairs,
        next_: Send,
        *,
        detached: bool,
    ) -> _Flight:
        flight = _Flight(
            lookup.flight_key,
            target=f"{lookup.method} {request.redacted_url()}",
            detached=detached,
        )
        flight.task = asyncio.create_task(
            self._exchange(request, lookup, conditional, next_, flight)
        )
        flight.task.add_done_callback(lambda task: self._landed(flight, task))
        self._flights[flight.key] = flight
        return flight

    async def _await(self, flight: _Flight, joiner: Request | None = None) -> _Outcome:
        """The flight's outcome. A `joiner` (a caller who did not start it) waits no longer
        than its own deadline: the trip runs under the starter's, which may be later.
        """
        deadline = joiner.deadline if joiner is not None else None
        if joiner is not None and deadline is not None and deadline <= self._clock.monotonic():
            raise _deadline_passed(joiner)
        flight.waiters += 1
        try:
            # Shielded: a caller who is cancelled stops waiting; the trip goes on for the
            # others (and stops below when nobody is left).
            if joiner is None or deadline is None:
                return await asyncio.shield(flight.task)
            try:
                async with asyncio.timeout(deadline - self._clock.monotonic()) as scope:
                    return await asyncio.shield(flight.task)
            except TimeoutError:  # asyncio's, i.e. the builtin one
                if scope.expired():
                    raise _deadline_passed(joiner) from None
                raise
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if flight.task.cancelled() and task is not None and not task.cancelling():
                # The trip was cancelled by `aclose`, not this caller: say so plainly
                # rather than let a stray CancelledError unwind the caller's task.
                raise ConfigError(
                    "the client was closed while this request was in flight"
                ) from None
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.detached and not flight.task.done():
                flight.task.cancel()
                if self._flights.get(flight.key) is flight:
                    del self._flights[flight.key]

    def _landed(self, flight: _Flight, task: asyncio.Task[_Outcome]) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        if task.cancelled():
            return
        # Retrieved here so that a trip nobody awaited any more (its callers were cancelled,
        # or it was a background refresh) does not log "exception was never retrieved".
        error = task.exception()
        if error is not None and flight.detached:
            # tether's own messages are redacted when built; another library's may hold
            # anything, so only its type is logged.
            detail = f": {error}" if isinstance(error, TetherError) else ""
            logger.warning(
                "background revalidation of %s failed: %s%s",
                flight.target,
                type(error).__name__,
                detail,
            )

    def _refresh(
        self, request: Request, lookup: _Lookup, conditional: HeaderPairs, next_: Send
    ) -> None:
        """Start a background revalidation for `lookup`, unless one is already on its way."""
        if self._closed or lookup.flight_key in self._flights:
            return
        # A copy: the caller keeps its request, and the refresh outlives the call.
        self._launch(request.copy(), lookup, conditional, next_, detached=True)

    async def _exchange(
        self,
        request: Request,
        lookup: _Lookup,
        conditional: HeaderPairs,
        next_: Send,
        flight: _Flight | None,
    ) -> _Outcome:
        """Send `request` (conditionally, to revalidate), store what may be stored, and say
        what to answer.
        """
        clock = self._clock
        stored = lookup.stored
        if conditional and stored is not None:
            # §4.3.1: validate with the stored validators; a copy, so the caller's request
            # does not carry them into a retry of its own.
            outgoing = request.copy()
            for name, value in conditional:
                outgoing.headers[name] = value
            request_time = clock.time()
            response = await next_(outgoing)
            response_time = clock.time()
            if response.status != 304:
                # §4.3.3: a full response (or an error) answers the validation request.
                return await self._store(
                    request, lookup, response, sent=request_time, received=response_time,
                    flight=flight,
                )  # fmt: skip
            merged = merge_not_modified(
                stored.entry,
                response_headers=_stored_fields(response.headers, request.redactor),
                request_time=request_time,
                response_time=response_time,
            )
            if merged is not None:
                # §4.3.4: the 304 freshens the stored response, which is then used.
                refreshed = StoredResponse(
                    entry=merged, body=stored.body, partition=lookup.partition
                )
                await self._save(lookup, refreshed, flight)
                served = self._serve(
                    refreshed, request, lookup.url, current_age(merged, response_time)
                )
                served.attempts = response.attempts
                served.elapsed = response.elapsed
                return _Outcome(response=served, entry=merged, shareable=True)
            # §4.3.4: a 304 that selects no stored response must not update one; the
            # full response is needed, so ask again without conditions.
        request_time = clock.time()
        response = await next_(request)
        response_time = clock.time()
        return await self._store(
            request, lookup, response, sent=request_time, received=response_time, flight=flight
        )

    async def _store(
        self,
        request: Request,
        lookup: _Lookup,
        response: Response,
        *,
        sent: float,
        received: float,
        flight: _Flight | None,
    ) -> _Outcome:
        fields = _stored_fields(response.headers, request.redactor)
        entry = make_entry(
            status=response.status,
            request_headers=lookup.view,
            response_headers=fields,
            request_time=sent,
            response_time=received,
            method=lookup.method,
            ttl=lookup.ttl,
        )
        storable = is_storable(
            method=lookup.method,
            status=response.status,
            request_headers=lookup.view,
            response_headers=fields,
            ttl=lookup.ttl,
        )
        if storable:
            body = b"" if lookup.method == "HEAD" else response.content
            await self._save(
                lookup, StoredResponse(entry=entry, body=body, partition=lookup.partition), flight
            )
        no_store = lookup.ttl is None and entry.cache_control.no_store
        return _Outcome(response=response, entry=entry, shareable=not no_store)

    async def _save(self, lookup: _Lookup, stored: StoredResponse, flight: _Flight | None) -> None:
        if flight is not None and flight.invalidated:
            return
        try:
            await self._backend.set(lookup.key, stored)
        except Exception:
            logger.warning("storing a response in the cache failed", exc_info=True)

    # -- invalidation (RFC 9111 §4.4) ---------------------------------------------------------

    async def _send_unsafe(self, request: Request, method: str, next_: Send) -> Response:
        # The target URI as the caller gave it, before `auth=` adds query credentials below.
        target = _full_url(request)
        response = await next_(request)
        if invalidates(method, response.status):
            urls = [target]
            # §4.4: Location and Content-Location may name the changed resource too, but only
            # on the same origin, so another site cannot evict this one's entries.
            for name in ("location", "content-location"):
                value = response.headers.get(name)
                if value:
                    url = urljoin(target, value)
                    if _origin(url) == _origin(target):
                        urls.append(url)
            await self._invalidate(urls)
        return response

    async def _invalidate(self, urls: list[str]) -> None:
        keys = {_key(method, url) for url in urls for method in ("GET", "HEAD")}
        for flight in self._flights.values():
            if flight.key.partition("/")[0] in keys:
                flight.invalidated = True
        for key in keys:
            try:
                await self._backend.delete(key)
            except Exception:
                logger.warning("invalidating a cached response failed", exc_info=True)

    def __repr__(self) -> str:
        return f"CachePolicy(backend={self._backend!r})"


def fresh_age(stored: StoredResponse, ttl: float | None, now: float) -> float | None:
    """The stored response's age if `decide` would serve it as fresh to a request without
    Cache-Control of its own, else None (then `decide` has the last word).

    The hit path in short: with no request directives, RFC 9111 §4.2 reduces to "age below
    the freshness lifetime", and both depend on the entry alone, so they are worked out once
    per stored object and ttl. Equivalence with `decide` is checked by a property test.
    """
    memo = stored.memo
    if ttl not in memo:
        entry = stored.entry
        forced = ttl is not None or entry.ttl is not None
        if entry.cache_control.no_cache and not forced:
            memo[ttl] = None  # §5.2.2.4: validated before every reuse, never a plain hit
        else:
            # §4.2.3: the age is its value at arrival plus the time resident since.
            memo[ttl] = (
                freshness_lifetime(entry, ttl=ttl),
                current_age(entry, entry.response_time),
            )
    facts = memo[ttl]
    if facts is None:
        return None
    lifetime, initial_age = facts
    age = max(0.0, initial_age + (now - stored.entry.response_time))
    return age if age < lifetime else None


def _deadline_passed(request: Request) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"{request.method} {request.redacted_url()}: the deadline passed while waiting for "
        "an identical request already in flight"
    )


def _copy_for(response: Response, request: Request) -> Response:
    """The shared answer as a response of its own for a caller who joined the trip."""
    copy = Response(
        response.status,
        headers=response.headers,
        content=response.content,
        reason=response.reason,
        url=response.url,
        request=request,
    )
    copy.from_cache = response.from_cache
    copy.attempts = response.attempts
    copy.elapsed = response.elapsed
    return copy
