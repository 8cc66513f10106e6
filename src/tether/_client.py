"""`Client` (async) and `SyncClient` (a blocking facade over the very same pipeline)."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json as jsonlib
import logging
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from functools import lru_cache
from types import TracebackType
from typing import Any, TypeVar, overload
from urllib.parse import urlencode, urlsplit

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import TypeAdapter, ValidationError

from tether._cache_config import Cache
from tether._clock import Clock, SystemClock
from tether._config import NO_RETRY, Retry, Timeout
from tether._core._breaker import BreakerMetrics
from tether._errors import ConfigError, ResponseValidationError
from tether._flow import Breaker, Bulkhead, RateLimitTypes, rate_limiters
from tether._graphql import graphql as _graphql
from tether._models import DEFAULT_HEADERS, Content, Request, Response, new_request
from tether._observe import Observer, RequestHook, ResponseHook, RetryHook
from tether._redact import Redactor
from tether._status import status_error
from tether._types import SecretLike, Send, reveal, type_name
from tether._version import __version__
from tether.auth._base import Credential
from tether.pagination import Paginated, Paginator, SyncPaginated
from tether.policies._base import Policy, build_pipeline
from tether.policies._breaker import BreakerPolicy
from tether.policies._bulkhead import BulkheadPolicy
from tether.policies._cache import CACHE_TTL_EXTENSION, CachePolicy
from tether.policies._ratelimit import COST_EXTENSION, RateLimitPolicy
from tether.policies._redirect import RedirectPolicy
from tether.policies._retry import RETRY_EXTENSION, TIMEOUT_EXTENSION, RetryPolicy, SharedAdvice
from tether.transports._aiohttp import AiohttpTransport, VerifyTypes
from tether.transports._base import AsyncTransport

__all__ = ["USE_CLIENT_DEFAULT", "Client", "SyncClient"]

logger = logging.getLogger("tether")

T = TypeVar("T")

USER_AGENT = f"tether/{__version__}"

ParamValue = str | int | float | bool | None
ParamsTypes = Mapping[str, ParamValue | Sequence[ParamValue]] | Iterable[tuple[str, ParamValue]]


class UseClientDefault(enum.Enum):
    """Marks an option left to the client's setting (distinct from None, which disables)."""

    token = 0

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT = UseClientDefault.token


class ClientState(enum.Enum):
    #: Created; the connection pool opens on first use.
    UNOPENED = 1
    #: Inside `async with` or after a first request.
    OPENED = 2
    #: Closed: the pool is released and the client cannot be used again.
    CLOSED = 3


# Module globals: checked on every request, and a global is one lookup, an enum member two.
_OPENED = ClientState.OPENED
_CLOSED = ClientState.CLOSED


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _param_text(value: ParamValue) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _params(params: ParamsTypes | None) -> list[tuple[str, str]] | None:
    if not params:
        return None
    items: Iterable[tuple[str, Any]] = params.items() if isinstance(params, Mapping) else params
    result: list[tuple[str, str]] = []
    for name, value in items:
        if value is None:
            continue
        if isinstance(value, list | tuple):
            result.extend((name, _param_text(v)) for v in value if v is not None)
        else:
            result.append((name, _param_text(value)))
    return result


def _body(
    headers: CIMultiDict[str],
    json: Any,
    data: Mapping[str, Any] | None,
    content: bytes | str | Content,
) -> Content:
    """The encoded body; sets the Content-Type that goes with it unless one is set."""
    if (json is not None) + (data is not None) + (content is not None) > 1:
        raise ConfigError("pass at most one of json=, data= and content=")
    if json is not None:
        headers.setdefault("Content-Type", "application/json")
        return jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
    if data is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return urlencode(data, doseq=True).encode()
    if isinstance(content, str):
        return content.encode()
    return content


@lru_cache(maxsize=256)
def _adapter(model: Any) -> TypeAdapter[Any]:
    # Building a TypeAdapter compiles a validator: far too slow to repeat on every call.
    return TypeAdapter(model)


class Client:
    """An async HTTP client for one API, with retries, deadlines and redaction built in.

    Args:
        base_url: Prefix for relative URLs; `get("/devices")` on `https://api.example.com/v1`
            requests `https://api.example.com/v1/devices`.
        auth: A credential from `tether.auth`.
        headers: Default headers for every request.
        timeout: Seconds for the whole call, or a `Timeout` (total, connect, per attempt).
        retry: A `Retry`, or None for a single attempt (server advice is still obeyed).
        session: An `aiohttp.ClientSession` to share; tether never closes a session it was lent.
        transport: Any `AsyncTransport` (e.g. `HttpxTransport`, `MockTransport`) instead.
        verify: TLS verification: True, False, a CA bundle path or an `ssl.SSLContext`.
        allow_insecure_http: Allow credentials over plain http to a non-loopback host.
        follow_redirects: Follow 3xx redirects. A hop to another origin, or from https to
            http, carries no credential header or parameter.
        max_redirects: How many redirects one call may follow.
        max_connections: Size of the connection pool the client owns.
        raise_for_status: Raise `HTTPStatusError` subclasses for 4xx/5xx answers.
        redact_headers: Header names to treat as credentials, beside Authorization, Cookie,
            X-Api-Key and those the credential uses: never sent on a redirect to another
            origin. (Header values never appear in log records or error messages at all.)
        redact_params: Query parameter names treated likewise: their values are hidden in
            logged URLs, reprs and errors, and dropped on a redirect to another origin.
        secrets: Secret values hidden wherever they appear, beside the credential's own.
        on_request, on_response, on_retry: Event hooks, sync or async, called per attempt.
        rate_limit: `"60/min"`, a `RateLimit`, a (shareable) `RateLimiter`, `"adaptive"`, or a
            list of them, all acquired together before each attempt.
        breaker: A `Breaker`: stop calling a host that is failing, probe it, recover.
        bulkhead: A `Bulkhead`: at most N requests in flight, a bounded queue behind them.
        cache: A `Cache`: a private RFC 9111 cache for GET/HEAD, with single-flight and
            stale-if-error; see docs/caching.md.
        shared_advice: Share server pauses (`Retry-After`) with other processes, e.g. a
            `tether.distributed.RedisAdviceStore`; see docs/retries.md.
        clock: The time source; tests pass `tether.testing.FakeClock`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        auth: Credential | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeout | float | None = Timeout(),  # noqa: B008 - frozen value object
        retry: Retry | None = Retry(),  # noqa: B008 - frozen value object
        session: aiohttp.ClientSession | None = None,
        transport: AsyncTransport | None = None,
        verify: VerifyTypes = True,
        allow_insecure_http: bool = False,
        follow_redirects: bool = True,
        max_redirects: int = 10,
        max_connections: int = 100,
        raise_for_status: bool = True,
        redact_headers: Iterable[str] = (),
        redact_params: Iterable[str] = (),
        secrets: Iterable[SecretLike] = (),
        on_request: RequestHook | Sequence[RequestHook] | None = None,
        on_response: ResponseHook | Sequence[ResponseHook] | None = None,
        on_retry: RetryHook | Sequence[RetryHook] | None = None,
        rate_limit: RateLimitTypes | None = None,
        breaker: Breaker | None = None,
        bulkhead: Bulkhead | None = None,
        cache: Cache | None = None,
        shared_advice: SharedAdvice | None = None,
        clock: Clock | None = None,
    ) -> None:
        if auth is not None and not isinstance(auth, Credential):
            raise ConfigError(f"auth must be a tether.auth credential, got {type(auth).__name__}")
        if session is not None and transport is not None:
            raise ConfigError("pass either session= or transport=, not both")
        if retry is not None and not isinstance(retry, Retry):
            raise ConfigError(f"retry must be a tether.Retry or None, got {retry!r}")
        self._auth = auth
        self._allow_insecure_http = allow_insecure_http
        self._base_url = self._check_base_url(base_url)
        if self._base_url is not None:
            self._guard_plain_http(self._base_url)
        redactor = Redactor(
            headers=redact_headers, params=redact_params, secrets=map(reveal, secrets)
        )
        if auth is not None:
            redactor = redactor.merge(auth.redactor())
        self._redactor = redactor
        self._timeout = Timeout.coerce(timeout)
        self._retry = retry if retry is not None else NO_RETRY
        self._raise_for_status = raise_for_status
        self._clock: Clock = clock if clock is not None else SystemClock()
        # Read-only: requests that add no header of their own share this map as it is.
        self._headers = DEFAULT_HEADERS
        if headers:
            merged = DEFAULT_HEADERS.copy()
            merged.update(headers)
            self._headers = CIMultiDictProxy(merged)
        if transport is not None and verify is not True:
            raise ConfigError(
                "verify= configures the transport tether builds; set TLS options on the "
                "transport you pass instead"
            )
        if verify is not True:
            # Said once, at construction, so it is seen without flooding the log.
            logger.warning(
                "TLS verification is %s for %s",
                "off" if verify is False else "using a custom CA bundle or context",
                redactor.url(self._base_url or "this client"),
            )
        if transport is None:
            transport = AiohttpTransport(
                session=session, verify=verify, max_connections=max_connections
            )
        elif not isinstance(transport, AsyncTransport):
            raise ConfigError(f"transport must implement send() and aclose(), got {transport!r}")
        self._transport = transport
        self._observer = Observer(on_request=on_request, on_response=on_response, on_retry=on_retry)
        self._retry_policy = RetryPolicy(
            retry=self._retry,
            timeout=self._timeout,
            clock=self._clock,
            observer=self._observer,
            shared_advice=shared_advice,
        )
        self._send = self._build_pipeline(
            transport,
            auth=auth,
            rate_limit=rate_limit,
            breaker=breaker,
            bulkhead=bulkhead,
            cache=cache,
            follow_redirects=follow_redirects,
            max_redirects=max_redirects,
        )
        self._state = ClientState.UNOPENED
        self._urls: dict[str, str] = {}

    def _build_pipeline(
        self,
        transport: AsyncTransport,
        *,
        auth: Credential | None,
        rate_limit: RateLimitTypes | None,
        breaker: Breaker | None,
        bulkhead: Bulkhead | None,
        cache: Cache | None,
        follow_redirects: bool,
        max_redirects: int,
    ) -> Send:
        if breaker is not None and not isinstance(breaker, Breaker):
            raise ConfigError(f"breaker must be a tether.Breaker or None, got {breaker!r}")
        if bulkhead is not None and not isinstance(bulkhead, Bulkhead):
            raise ConfigError(f"bulkhead must be a tether.Bulkhead or None, got {bulkhead!r}")
        if cache is not None and not isinstance(cache, Cache):
            raise ConfigError(f"cache must be a tether.Cache or None, got {cache!r}")
        # Order, outermost first: cache -> retry -> rate limit -> bulkhead -> breaker -> auth ->
        # redirects -> transport. A fresh cache hit costs no token and no breaker call, and a
        # failure anywhere below can be answered from a stale entry. Each attempt takes its
        # own rate-limit slot (the server counts attempts); the breaker times only the real
        # exchange, not the waits before it.
        self._cache = CachePolicy(cache, clock=self._clock) if cache is not None else None
        policies: list[Policy] = [self._cache] if self._cache is not None else []
        policies.append(self._retry_policy)
        limiters = rate_limiters(rate_limit)
        self.rate_limiters = limiters
        if limiters:
            credential_key = f"{type(auth).__name__}:{id(auth):x}" if auth is not None else ""
            policies.append(
                RateLimitPolicy(limiters, clock=self._clock, credential_key=credential_key)
            )
        if bulkhead is not None:
            policies.append(BulkheadPolicy(bulkhead, clock=self._clock))
        self._breaker = BreakerPolicy(breaker, clock=self._clock) if breaker is not None else None
        if self._breaker is not None:
            policies.append(self._breaker)
        if auth is not None:
            policies.append(auth)
        if follow_redirects:
            policies.append(RedirectPolicy(max_redirects=max_redirects))
        return build_pipeline(policies, transport.send)

    def _check_base_url(self, base_url: str | None) -> str | None:
        if base_url is None:
            return None
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        if parts.query or parts.fragment:
            raise ConfigError("base_url must not carry a query or fragment; use params= instead")
        return base_url.rstrip("/")

    def _guard_plain_http(self, url: str) -> None:
        if self._auth is None or not self._auth.needs_secure_transport or self._allow_insecure_http:
            return
        parts = urlsplit(url)
        if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            raise ConfigError(
                f"refusing to send credentials over plain http to {parts.hostname}; "
                "use https, or create the client with allow_insecure_http=True"
            )

    def _resolve(self, url: str) -> str:
        resolved = self._urls.get(url)
        if resolved is not None:
            return resolved
        if url.startswith(("http://", "https://")):
            resolved = url
        elif "://" in url:
            raise ConfigError(f"only http and https URLs are supported, got {url!r}")
        elif self._base_url is None:
            raise ConfigError(f"{url!r} is relative and the client has no base_url")
        else:
            resolved = f"{self._base_url}/{url.lstrip('/')}" if url else self._base_url
        self._guard_plain_http(resolved)
        if len(self._urls) >= 1024:
            self._urls.clear()
        self._urls[url] = resolved
        return resolved

    def build_request(
        self,
        method: str,
        url: str,
        *,
        params: ParamsTypes | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | Content = None,
        timeout: Timeout | float | UseClientDefault | None = USE_CLIENT_DEFAULT,
    ) -> Request:
        """The `Request` a call would send, before auth and retries; no I/O."""
        if self._state is _CLOSED:
            raise ConfigError("the client is closed; create a new one")
        request_headers: CIMultiDict[str] | CIMultiDictProxy[str] = self._headers
        body: Content = None
        has_body = json is not None or data is not None or content is not None
        if headers or has_body:
            merged = self._headers.copy()
            if headers:
                merged.update(headers)
            if has_body:
                body = _body(merged, json, data, content)
            request_headers = merged
        if timeout is USE_CLIENT_DEFAULT:
            limits = None
            total = self._timeout.total
        else:
            limits = Timeout.coerce(timeout)
            total = limits.total
        request = new_request(
            method=method.upper(),
            url=self._urls.get(url) or self._resolve(url),
            params=_params(params) if params else None,
            headers=request_headers,
            content=body,
            deadline=None if total is None else self._clock.monotonic() + total,
            redactor=self._redactor,
        )
        if limits is not None and limits is not self._timeout:
            request.extensions[TIMEOUT_EXTENSION] = limits
        return request

    def _prepare(self, request: Request, retry: Retry | UseClientDefault | None) -> None:
        if self._state is not _OPENED:
            if self._state is _CLOSED:
                raise ConfigError("the client is closed; create a new one")
            self._state = _OPENED
        if retry is not USE_CLIENT_DEFAULT:
            request.extensions[RETRY_EXTENSION] = retry if retry is not None else NO_RETRY

    def _finish(self, response: Response, raise_for_status: bool | None) -> Response:
        if response.status >= 400 and (
            self._raise_for_status if raise_for_status is None else raise_for_status
        ):
            raise status_error(response, now_wall=self._clock.time())
        return response

    async def send(
        self,
        request: Request,
        *,
        retry: Retry | UseClientDefault | None = USE_CLIENT_DEFAULT,
        raise_for_status: bool | None = None,
    ) -> Response:
        """Send a built request through the pipeline."""
        self._prepare(request, retry)
        return self._finish(await self._send(request), raise_for_status)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: ParamsTypes | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | str | Content = None,
        timeout: Timeout | float | UseClientDefault | None = USE_CLIENT_DEFAULT,
        retry: Retry | UseClientDefault | None = USE_CLIENT_DEFAULT,
        raise_for_status: bool | None = None,
        cost: float | tuple[float, ...] = 1.0,
        cache_ttl: float | None = None,
    ) -> Response:
        """Send one request; every client option except the transport can be overridden here.

        `cost` weighs the request for the rate limiters (tokens for an LLM API, say): one
        number for every limit, or one per limit. `cache_ttl` keeps this response fresh for
        that many seconds whatever its headers say (0 bypasses the cache for this call).
        """
        request = self.build_request(
            method,
            url,
            params=params,
            headers=headers,
            json=json,
            data=data,
            content=content,
            timeout=timeout,
        )
        if cost != 1.0:
            request.extensions[COST_EXTENSION] = cost
        if cache_ttl is not None:
            if self._cache is None:
                raise ConfigError("cache_ttl= needs a client created with cache=tether.Cache()")
            request.extensions[CACHE_TTL_EXTENSION] = cache_ttl
        # build_request refused a closed client, so this only marks the first use.
        self._state = _OPENED
        if retry is not USE_CLIENT_DEFAULT:
            request.extensions[RETRY_EXTENSION] = retry if retry is not None else NO_RETRY
        # The pipeline is awaited here rather than through send(), and a success skips
        # _finish: every call made here is paid by every request.
        response = await self._send(request)
        if response.status >= 400:
            return self._finish(response, raise_for_status)
        return response

    async def get(self, url: str, **kwargs: Any) -> Response:
        return await self.request("GET", url, **kwargs)

    async def head(self, url: str, **kwargs: Any) -> Response:
        return await self.request("HEAD", url, **kwargs)

    async def options(self, url: str, **kwargs: Any) -> Response:
        return await self.request("OPTIONS", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> Response:
        return await self.request("DELETE", url, **kwargs)

    @overload
    async def get_json(self, url: str, *, model: None = None, **kwargs: Any) -> Any: ...

    @overload
    async def get_json(self, url: str, *, model: type[T], **kwargs: Any) -> T: ...

    async def get_json(self, url: str, *, model: Any = None, **kwargs: Any) -> Any:
        """GET `url` and decode its JSON body, validated against `model` when one is given."""
        response = await self.request("GET", url, **kwargs)
        return decode_json(response, model)

    def paginate(
        self,
        url: str,
        *,
        paginator: Paginator,
        model: Any = None,
        max_pages: int | None = None,
        max_items: int | None = None,
        dedupe: bool = False,
        method: str = "GET",
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Paginated[Any]:
        """Iterate the items of every page (`async for item in client.paginate(...)`), or the
        pages with `.pages()`; each page goes through the whole pipeline.

        Args:
            paginator: A `tether.pagination` paginator: `Cursor`, `Offset`, `PageNumber`,
                `LinkHeader`, `NextURL`, or your own.
            model: Validate each item against this type (pydantic).
            max_pages, max_items: Stop after this many.
            dedupe: Skip items already seen (by the paginator's `id_field`).
            options: Other call options (`timeout=`, `retry=`, `cost=`) for every page.
        """
        return Paginated(
            self,
            method.upper(),
            url,
            paginator=paginator,
            model=model,
            max_pages=max_pages,
            max_items=max_items,
            dedupe=dedupe,
            params=params,
            headers=headers,
            json=json,
            options=options,
        )

    async def graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        path: str = "/graphql",
        operation_name: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Run a GraphQL query or mutation and return its `data`; an `errors` array raises
        `GraphQLError` (see `tether.graphql`)."""
        return await _graphql(
            self, query, variables, path=path, operation_name=operation_name, headers=headers
        )

    async def aclose(self) -> None:
        """Close the connection pool, unless it was lent to us. Idempotent."""
        if self._state is ClientState.CLOSED:
            return
        self._state = ClientState.CLOSED
        if self._cache is not None:
            await self._cache.aclose()
        await self._transport.aclose()

    async def __aenter__(self) -> Client:
        if self._state is ClientState.CLOSED:
            raise ConfigError("the client is closed; create a new one")
        self._state = ClientState.OPENED
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def circuits(self) -> dict[str, str]:
        """Each circuit's state ("closed", "open", "half_open") by host; empty without a breaker."""
        if self._breaker is None:
            return {}
        return {key: str(state) for key, state in self._breaker.states().items()}

    def circuit_metrics(self) -> dict[str, BreakerMetrics]:
        """Each circuit's state, calls, failures, slow calls, rates and openings, by host."""
        return self._breaker.metrics() if self._breaker is not None else {}

    def __repr__(self) -> str:
        base = self._redactor.url(self._base_url) if self._base_url else None
        return f"<Client base_url={base!r} auth={self._auth!r} state={self._state.name}>"


def decode_json(response: Response, model: Any) -> Any:
    """The response's JSON, validated against `model`; errors name the field, never the value."""
    redactor = response.request.redactor if response.request is not None else Redactor()
    try:
        if model is None:
            return response.json()
        return _adapter(model).validate_json(response.content)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)[:10]
        )
        # Chained from None: pydantic's own text quotes the offending input, which may be secret.
        raise ResponseValidationError(
            redactor.text(f"response did not match {type_name(model)}: {problems}"),
            response=response,
        ) from None
    except ValueError as exc:
        raise ResponseValidationError(
            f"response body is not valid JSON ({type(exc).__name__} at {getattr(exc, 'pos', '?')})",
            response=response,
        ) from None


class _LoopThread:
    """An event loop on a daemon thread: the blocking facade's engine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="tether-sync-client", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C in the caller's thread must not leave the call running on the loop thread.
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class SyncClient:
    """The blocking twin of `Client`: same options, same methods, same pipeline.

    Calls run on one private event loop thread, so a `SyncClient` may be shared by any number of
    threads; they share its connection pool, retry budget and server-advised pauses.
    """

    def __init__(self, base_url: str | None = None, **options: Any) -> None:
        if options.get("session") is not None:
            raise ConfigError(
                "SyncClient runs its own event loop, so it cannot share an aiohttp session; "
                "use Client(session=...) inside your loop instead"
            )
        self._client = Client(base_url, **options)
        self._engine: _LoopThread | None = _LoopThread()
        self._lock = threading.Lock()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        engine = self._engine
        if engine is None:
            coro.close()
            raise ConfigError("the client is closed; create a new one")
        return engine.run(coro)

    def build_request(self, method: str, url: str, **kwargs: Any) -> Request:
        """The `Request` a call would send, before auth and retries; no I/O."""
        return self._client.build_request(method, url, **kwargs)

    def send(self, request: Request, **kwargs: Any) -> Response:
        """Send a built request through the pipeline."""
        return self._run(self._client.send(request, **kwargs))

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        return self._run(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> Response:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> Response:
        return self.request("OPTIONS", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Response:
        return self.request("DELETE", url, **kwargs)

    @overload
    def get_json(self, url: str, *, model: None = None, **kwargs: Any) -> Any: ...

    @overload
    def get_json(self, url: str, *, model: type[T], **kwargs: Any) -> T: ...

    def get_json(self, url: str, *, model: Any = None, **kwargs: Any) -> Any:
        return decode_json(self.request("GET", url, **kwargs), model)

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """The blocking twin of `Client.graphql`."""
        return self._run(self._client.graphql(query, variables, **kwargs))

    def paginate(self, url: str, **kwargs: Any) -> SyncPaginated[Any]:
        """Iterate the items of every page (or `.pages()`), blocking; see `Client.paginate`."""
        return SyncPaginated(self._client.paginate(url, **kwargs), self._run)

    def close(self) -> None:
        """Close the pool and stop the loop thread. Idempotent and thread-safe."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            engine.run(self._client.aclose())
        finally:
            engine.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._client).replace("<Client", "<SyncClient", 1)
