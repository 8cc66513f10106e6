"""Flow-control options: rate limits, circuit breakers and bulkheads.

`RateLimit`, `Breaker` and `Bulkhead` are frozen settings. `RateLimiter` holds live state and
can be passed to several clients that share one quota (one API key used by many clients).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from tether._core._breaker import BreakerConfig, CircuitState, Transition
from tether._core._quota import parse_quota
from tether._core._ratelimit import GCRA, AdaptiveRate, Cost, Limit, parse_limit
from tether._errors import ConfigError

__all__ = [
    "Breaker",
    "BreakerEvent",
    "Bulkhead",
    "Gossip",
    "RateLimit",
    "RateLimitTypes",
    "RateLimiter",
    "Scope",
]

#: Whose traffic one bucket (or one circuit) counts. Never a silent global: the default for
#: rate limits is the client, and a limiter shared between clients is shared on purpose.
Scope: TypeAlias = Literal["client", "host", "credential"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """`rate` events per `per` seconds, at most `burst` at once.

    `start_full=False` (the default) means no surprise initial burst: the first request goes
    at once and later ones are spaced evenly; a burst has to be earned by idle time.
    `RateLimit.parse("60/min")` reads the shorthand.
    """

    rate: float
    per: float = 1.0
    burst: int = 1
    start_full: bool = False

    def __post_init__(self) -> None:
        self.limit()  # validates, with the same messages as the core

    @classmethod
    def parse(cls, text: str, *, burst: int = 1, start_full: bool = False) -> RateLimit:
        """`"60/min"`, `"10/s"`, `"1000/h"`, `"100/day"`, `"3/5s"`, `"20 per minute"`."""
        limit = parse_limit(text, burst=burst, start_full=start_full)
        return cls(rate=limit.rate, per=limit.per, burst=limit.burst, start_full=limit.start_full)

    def limit(self) -> Limit:
        return Limit(rate=self.rate, per=self.per, burst=self.burst, start_full=self.start_full)

    def __str__(self) -> str:
        return f"{self.rate:g}/{self.per:g}s (burst {self.burst})"


class _Bucket:
    """The state behind one scope key: configured limits plus, when adaptive, the server's."""

    __slots__ = ("adaptive", "adaptive_gcra", "adaptive_version", "gcra", "policy_gcra")

    def __init__(self, limits: tuple[Limit, ...], adaptive: bool) -> None:
        self.gcra = GCRA(*limits) if limits else None
        ceiling = min((lim.rate / lim.per for lim in limits), default=None)
        self.adaptive = AdaptiveRate(ceiling=ceiling) if adaptive else None
        self.adaptive_gcra: GCRA | None = None
        self.adaptive_version = -1
        #: Paces at the quota the server advertises (`RateLimit-Policy: q=..;w=..`).
        self.policy_gcra: GCRA | None = None

    def follow_policy(self, limit: Limit, now: float) -> None:
        gcra = self.policy_gcra
        if gcra is None:
            self.policy_gcra = gcra = GCRA(limit)
            gcra.reserve(now)  # the request that carried the policy used a slot
        elif gcra.limits != (limit,):
            gcra.retune(limit)

    def sync_adaptive(self, now: float) -> None:
        adaptive = self.adaptive
        if adaptive is None or adaptive.version == self.adaptive_version:
            return
        self.adaptive_version = adaptive.version
        limit = adaptive.limit
        if limit is None:
            self.adaptive_gcra = None
        elif self.adaptive_gcra is None:
            # The response that brought the news was itself a request: the new bucket starts
            # with that slot used, or the first request after a cut would go unspaced.
            self.adaptive_gcra = GCRA(limit)
            self.adaptive_gcra.reserve(now)
        else:
            # Retuning keeps the queue: reservations already handed out keep their slots.
            self.adaptive_gcra.retune(limit)


class RateLimiter:
    """Client-side rate limiting that matches real quotas.

    Args:
        limits: `RateLimit`s or shorthand strings; all are acquired together, atomically
            (e.g. `"10/s", "1000/h"`).
        scope: One bucket for the whole client ("client"), one per host, or one per
            credential.
        paths: Glob(s) on the URL path; the limiter applies only to matching requests
            (an endpoint group such as `"/search*"`). None applies to every request.
        adaptive: Also follow the server's quota headers (`RateLimit`, `X-RateLimit-*`) and
            429s, shrinking to what the server says is left and recovering additively.
            Works with no configured limit at all.
        max_wait: Longest wait for a slot before `RateLimitWaitTooLong`; None waits as long
            as the call's deadline allows.
    """

    __slots__ = ("_buckets", "_limits", "_matches", "adaptive", "max_wait", "paths", "scope")

    def __init__(
        self,
        *limits: RateLimit | str,
        scope: Scope = "client",
        paths: str | Sequence[str] | None = None,
        adaptive: bool = False,
        max_wait: float | None = 60.0,
    ) -> None:
        parsed = tuple(RateLimit.parse(x) if isinstance(x, str) else x for x in limits)
        for item in parsed:
            if not isinstance(item, RateLimit):
                raise ConfigError(f"expected a RateLimit or a string like '60/min', got {item!r}")
        if not parsed and not adaptive:
            raise ConfigError("a RateLimiter needs at least one limit, or adaptive=True")
        if scope not in ("client", "host", "credential"):
            raise ConfigError(f"scope must be 'client', 'host' or 'credential', got {scope!r}")
        if max_wait is not None and not (math.isfinite(max_wait) and max_wait >= 0):
            raise ConfigError(
                f"max_wait must be a number of seconds >= 0 or None, got {max_wait!r}"
            )
        self._limits = tuple(item.limit() for item in parsed)
        self.scope = scope
        self.paths = (paths,) if isinstance(paths, str) else tuple(paths) if paths else None
        self.adaptive = adaptive
        self.max_wait = max_wait
        self._buckets: dict[str, _Bucket] = {}
        self._matches: dict[str, bool] = {}

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return tuple(
            RateLimit(rate=x.rate, per=x.per, burst=x.burst, start_full=x.start_full)
            for x in self._limits
        )

    def applies(self, path: str) -> bool:
        """Whether requests to `path` pass through this limiter."""
        patterns = self.paths
        if patterns is None:
            return True
        known = self._matches.get(path)
        if known is None:
            known = any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)
            if len(self._matches) >= 4096:
                self._matches.clear()
            self._matches[path] = known
        return known

    def bucket(self, key: str) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._limits, self.adaptive)
        return bucket

    def wait(self, key: str, now: float, cost: Cost) -> float:
        """Seconds a request would wait now, reserving nothing."""
        bucket = self.bucket(key)
        wait = bucket.gcra.peek(now, cost) if bucket.gcra is not None else 0.0
        if bucket.adaptive is not None:
            bucket.sync_adaptive(now)
            if bucket.adaptive_gcra is not None:
                wait = max(wait, bucket.adaptive_gcra.peek(now, _scalar(cost)))
            wait = max(wait, bucket.adaptive.resume_at - now)
            if bucket.policy_gcra is not None:
                wait = max(wait, bucket.policy_gcra.peek(now, _scalar(cost)))
        return wait

    def try_reserve(self, key: str, now: float, cost: Cost, max_wait: float) -> float | None:
        """Reserve in one step when nothing but the configured limits applies (not adaptive):
        the wait, or None (and nothing reserved) when it would exceed `max_wait`."""
        gcra = self.bucket(key).gcra
        if gcra is None or self.adaptive:
            raise ConfigError("try_reserve needs a limiter with configured limits, not adaptive")
        return gcra.try_reserve(now, cost, max_wait=max_wait)

    def reserve(self, key: str, departure: float, cost: Cost) -> None:
        """Commit a slot at `departure` (a time at which `wait` is zero)."""
        bucket = self._buckets[key]
        if bucket.gcra is not None:
            bucket.gcra.reserve(departure, cost)
        if bucket.adaptive is not None:
            if bucket.adaptive_gcra is not None:
                bucket.adaptive_gcra.reserve(departure, _scalar(cost))
            if bucket.policy_gcra is not None:
                bucket.policy_gcra.reserve(departure, _scalar(cost))
            bucket.adaptive.sent(departure, _scalar(cost))

    def refund(self, key: str, now: float, cost: Cost) -> None:
        """Give back a slot that was not used (the waiting call was cancelled)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        if bucket.gcra is not None:
            bucket.gcra.refund(now, cost)
        if bucket.adaptive_gcra is not None:
            bucket.adaptive_gcra.refund(now, _scalar(cost))
        if bucket.policy_gcra is not None:
            bucket.policy_gcra.refund(now, _scalar(cost))

    def observe(
        self,
        key: str,
        now: float,
        *,
        status: int,
        headers: Iterable[tuple[str, str]] | object,
        now_wall: float,
        retry_after: float | None,
    ) -> None:
        """Feed the adaptive controller with what a response said about the quota."""
        bucket = self._buckets.get(key)
        if bucket is None or bucket.adaptive is None:
            return
        adaptive = bucket.adaptive
        quota = parse_quota(headers, now_wall=now_wall)  # type: ignore[arg-type]
        policy = None
        if quota is not None and quota.limit and quota.window and quota.unit in (None, "requests"):
            # The server said what it sustains: pace at limit/window, evenly.
            policy = quota.limit / quota.window
            bucket.follow_policy(Limit(rate=quota.limit, per=quota.window), now)
        if quota is not None and quota.remaining is not None and quota.reset_in is not None:
            remaining, reset_in, limit = quota.remaining, quota.reset_in, quota.limit
            if policy is None:
                adaptive.observe(now, remaining=remaining, reset_in=reset_in, limit=limit)
            # With a known policy, `t` (whole seconds, rounded up) may overstate the reset by
            # up to a second, which on short windows is most of it: use its lower bound unless
            # the server actually refused us.
            elif status == 429:
                wait = retry_after if retry_after is not None else reset_in
                adaptive.observe(now, remaining=0, reset_in=wait, limit=limit)
            elif remaining == 0:
                adaptive.observe(now, remaining=0, reset_in=max(0.0, reset_in - 1.0), limit=limit)
            elif remaining < policy * max(0.0, reset_in - 1.0):
                # Less left than our pace needs even at the earliest reset: someone else is
                # spending this quota, so spread what is left.
                adaptive.observe(now, remaining=remaining, reset_in=reset_in, limit=limit)
        if status == 429 and policy is None:
            # No quota to go by: back off multiplicatively (AIMD).
            adaptive.throttled(now, retry_after=retry_after)
        elif status < 400:
            adaptive.succeeded(now)

    def current_rate(self, key: str = "") -> float | None:
        """The rate (per second) the limiter allows now for `key`; None when unlimited."""
        bucket = self._buckets.get(key)
        rates = [lim.rate / lim.per for lim in self._limits]
        if bucket is not None and bucket.adaptive is not None:
            adaptive_rate = bucket.adaptive.rate
            if adaptive_rate is not None:
                rates.append(adaptive_rate)
            if bucket.policy_gcra is not None:
                (policy,) = bucket.policy_gcra.limits
                rates.append(policy.rate / policy.per)
        return min(rates, default=None)

    def __repr__(self) -> str:
        limits = ", ".join(
            str(RateLimit(rate=x.rate, per=x.per, burst=x.burst)) for x in self._limits
        )
        return (
            f"RateLimiter({limits}{', ' if limits else ''}scope={self.scope!r}, "
            f"paths={self.paths!r}, adaptive={self.adaptive})"
        )


def _scalar(cost: Cost) -> float:
    # The adaptive controller counts requests: with per-limit costs, the first is the request.
    return cost[0] if isinstance(cost, tuple) else cost


#: What `Client(rate_limit=...)` accepts.
RateLimitTypes: TypeAlias = (
    "str | RateLimit | RateLimiter | Sequence[str | RateLimit | RateLimiter]"
)


def rate_limiters(value: object) -> tuple[RateLimiter, ...]:
    """Normalise the `rate_limit=` option: loose limits form one client-scope limiter."""
    if value is None:
        return ()
    if value == "adaptive":
        return (RateLimiter(adaptive=True),)
    items: Sequence[object] = value if isinstance(value, list | tuple) else (value,)
    loose: list[RateLimit | str] = []
    limiters: list[RateLimiter] = []
    for item in items:
        if isinstance(item, RateLimiter):
            limiters.append(item)
        elif isinstance(item, RateLimit | str):
            loose.append(item)
        else:
            raise ConfigError(
                "rate_limit must be a string like '60/min', a RateLimit, a RateLimiter, "
                f"'adaptive', or a list of them; got {item!r}"
            )
    if loose:
        limiters.insert(0, RateLimiter(*loose))
    return tuple(limiters)


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """A circuit changed state."""

    key: str
    from_state: CircuitState
    to_state: CircuitState
    reason: str
    #: Monotonic time at which an open circuit admits probes again.
    retry_at: float | None
    failure_rate: float | None
    slow_call_rate: float | None

    @classmethod
    def of(cls, key: str, transition: Transition) -> BreakerEvent:
        return cls(
            key=key,
            from_state=transition.from_state,
            to_state=transition.to_state,
            reason=str(transition.reason),
            retry_at=transition.retry_at,
            failure_rate=transition.failure_rate,
            slow_call_rate=transition.slow_call_rate,
        )


@runtime_checkable
class Gossip(Protocol):
    """How breakers in several processes share evidence; `tether.distributed.BreakerGossip`.

    Each process keeps its own breaker: it publishes its transitions and may open on what a
    quorum of the others report, never on one shared flag.
    """

    def on_state_change(self, event: BreakerEvent) -> None:
        """Publish a transition of this process's circuit (in the background)."""
        ...

    def quorum_open(self, key: str, state: CircuitState, *, on_evidence: bool = False) -> bool:
        """Note this process's `state` of circuit `key` (`on_evidence`: open only because of
        the others) and say whether, by the last view, a quorum of instances report it open.

        Called on every request, so it must answer from memory, without I/O.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Breaker:
    """A circuit breaker per host (or per client), judged over a sliding time window.

    Connection errors, timeouts and 5xx are failures; 429 and other 4xx are not (the server
    answered). The circuit opens when, with at least `minimum_calls` in the last `window`
    seconds, the failure rate or the slow-call rate reaches its threshold. It stays open for
    `open_for` seconds, growing (jittered, doubling) with each reopening up to `max_open_for`;
    then `half_open_probes` calls are let through and all must succeed to close it.

    With `gossip` (a `tether.distributed.BreakerGossip`), the breaker also publishes its
    transitions, and a closed circuit opens when a quorum of live instances report it open
    (reason `"shared_evidence"`); it then probes and closes by its own calls, as usual.
    """

    failure_rate: float = 0.5
    slow_call_rate: float = 0.8
    slow_call_duration: float = 10.0
    minimum_calls: int = 20
    window: int = 30
    open_for: float = 5.0
    max_open_for: float = 300.0
    half_open_probes: int = 3
    #: Statuses that say nothing about the server's health.
    ignore_statuses: frozenset[int] = field(default=frozenset({429}))
    scope: Literal["host", "client"] = "host"
    on_state_change: Callable[[BreakerEvent], object] | None = None
    gossip: Gossip | None = None

    def __post_init__(self) -> None:
        if self.scope not in ("host", "client"):
            raise ConfigError(f"Breaker scope must be 'host' or 'client', got {self.scope!r}")
        if self.gossip is not None and not isinstance(self.gossip, Gossip):
            raise ConfigError(
                "Breaker gossip must be a tether.distributed.BreakerGossip (or have "
                f"on_state_change() and quorum_open()), got {type(self.gossip).__name__}"
            )
        self.config()

    def config(self) -> BreakerConfig:
        return BreakerConfig(
            failure_rate=self.failure_rate,
            slow_call_rate=self.slow_call_rate,
            slow_call_duration=self.slow_call_duration,
            minimum_calls=self.minimum_calls,
            window=self.window,
            open_base=self.open_for,
            open_max=self.max_open_for,
            half_open_probes=self.half_open_probes,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bulkhead:
    """At most `max_concurrent` requests in flight, and at most `max_queue` waiting for a slot.

    A request that finds the queue full fails at once with `BulkheadFull` instead of piling up;
    a waiting request gives up at its deadline.
    """

    max_concurrent: int
    max_queue: int = 100
    scope: Literal["client", "host"] = "client"

    def __post_init__(self) -> None:
        for name in ("max_concurrent", "max_queue"):
            value = getattr(self, name)
            minimum = 1 if name == "max_concurrent" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"Bulkhead.{name} must be an integer >= {minimum}, got {value!r}")
        if self.scope not in ("client", "host"):
            raise ConfigError(f"Bulkhead scope must be 'client' or 'host', got {self.scope!r}")
