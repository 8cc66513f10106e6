"""A rate limiter whose buckets live in Redis, shared by every process that uses them.

One Lua script does the whole GCRA step (read the TATs, compute the departure, commit) in one
round trip, on the Redis server's clock (`TIME` inside the script), so processes on hosts
whose clocks disagree still space their requests correctly. The arithmetic is the local
`GCRA`'s (see `tether._core._ratelimit`): the same defaults (burst 1, start drained), the
same FIFO queueing, the same multi-limit atomicity.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Literal, TypeAlias

from tether._clock import Clock
from tether._core._ratelimit import Cost, Limit
from tether._errors import ConfigError, RateLimitWaitTooLong
from tether._flow import RateLimit, RateLimiter, Scope
from tether.distributed._common import (
    REDIS_ERRORS,
    RedisLike,
    SharedStateUnavailable,
    Throttled,
    connect,
    digest,
    key_prefix,
)

__all__ = ["OnRedisError", "RedisRateLimiter"]

#: What a limiter does while Redis cannot be reached.
OnRedisError: TypeAlias = Literal["fail_open", "fail_closed", "local"]

# KEYS[1]: a hash of TATs, field i for limit i. ARGV: n, max_wait (-1: none), then per limit
# step, capacity, start_full (1/0), then a handover in seconds (see below). Returns one
# string, "1 <wait> <now>" when committed and "0 <wait> <now>" when refused, `now` being the
# server's clock (one string: a reply array costs the client a parse per element).
# Times are formatted with %.6f: Lua's default number format keeps 14 digits, which at
# today's epoch is only a tenth of a millisecond.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local fields = {}
for i = 1, n do fields[i] = tostring(i) end
local tats = redis.call('HMGET', KEYS[1], unpack(fields))
-- This process's local fallback still has callers queued for `handover` seconds: no shared
-- slot goes out before they are through (their traffic would come on top of it).
local handover = tonumber(ARGV[3 * n + 3])
if handover > 0 then
  local floor = now + handover
  for i = 1, n do
    local tat = tats[i] and tonumber(tats[i]) or now
    tats[i] = string.format('%.6f', tat > floor and tat or floor)
  end
end
local departure = now
for i = 1, n do
  local tat = tats[i]
  if tat then
    tat = tonumber(tat)
    local base = tat > now and tat or now
    local allowed = base + tonumber(ARGV[3 * i]) - tonumber(ARGV[3 * i + 1])
    if allowed > departure then departure = allowed end
  end
end
local wait = departure - now
if max_wait >= 0 and wait > max_wait then
  return string.format('0 %.6f %.6f', wait, now)
end
local latest = now
local update = {}
for i = 1, n do
  local step = tonumber(ARGV[3 * i])
  local capacity = tonumber(ARGV[3 * i + 1])
  local tat = tats[i]
  local new
  if tat then
    tat = tonumber(tat)
    new = (tat > departure and tat or departure) + step
  elseif ARGV[3 * i + 2] == '1' then
    new = departure + step
  else
    new = departure + capacity
  end
  if new > latest then latest = new end
  update[#update + 1] = tostring(i)
  update[#update + 1] = string.format('%.6f', new)
end
redis.call('HSET', KEYS[1], unpack(update))
-- Once every TAT has passed the bucket is back at rest; keep it a second longer than that.
redis.call('PEXPIRE', KEYS[1], math.ceil((latest - now) * 1000) + 1000)
return string.format('1 %.6f %.6f', wait, now)
"""

# Gives back reserved capacity; a bucket never ends up fuller than at rest (TAT >= now).
_REFUND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
for i = 1, n do
  local tat = redis.call('HGET', KEYS[1], tostring(i))
  if tat then
    local new = tonumber(tat) - tonumber(ARGV[1 + i])
    if new < now then new = now end
    redis.call('HSET', KEYS[1], tostring(i), string.format('%.6f', new))
  end
end
return 1
"""

#: How fast a clock-offset sample loses its worth: 10 ms of round trip per second of age.
_SAMPLE_AGING = 0.01

#: The longest round trip whose clock sample is trusted (its error is half of it).
_GOOD_SAMPLE = 0.005

#: While Redis is down, how often one acquire tries it again (the others stay local).
_PROBE_EVERY = 0.25


def _scaled(limit: Limit, share: float) -> RateLimit:
    # The burst is kept: it is the largest cost a request may have, and shrinking it would
    # refuse requests that are valid under the configured limit.
    return RateLimit(rate=limit.rate * share, per=limit.per, burst=limit.burst)


class RedisRateLimiter(RateLimiter):
    """A `RateLimiter` whose quota is shared through Redis by every process that uses it.

    Args:
        limits: `RateLimit`s or shorthand strings, acquired together atomically.
        redis: A `redis://` URL or a `redis.asyncio` client (also a cluster client: every key
            of one bucket shares a hash tag).
        name: What identifies this quota in Redis. Processes with the same name, limits and
            scope key share one bucket. Defaults to one derived from the limits and paths;
            give a name when two different APIs have equal limits.
        scope: "client", "host" or "credential". The scope key is part of the Redis key, so
            a per-host limit stays per host in every process.
        paths: Glob(s) on the URL path the limiter applies to.
        max_wait: Longest wait for a slot before `RateLimitWaitTooLong`.
        on_redis_error: While Redis cannot be reached: "fail_open" lets requests through
            unlimited, "fail_closed" raises `SharedStateUnavailable`, "local" (the default)
            limits each process locally to `local_share` of the quota. The limiter tries Redis
            again about once a second and goes back to it as soon as it answers.
        local_share: The part of the quota one process may use under "local"; set it to one
            over the number of processes that share the quota.
        prefix: First part of every key name.
        late_after: A caller of `wait_turn` that wakes up later than this after its slot
            takes a new one rather than send in a burst behind the callers it fell behind.
    """

    __slots__ = (
        "_client",
        "_depth",
        "_fallback",
        "_handover",
        "_horizon",
        "_keys",
        "_offset",
        "_own_client",
        "_probe_at",
        "_scripts",
        "_shapes",
        "_throttled",
        "_wire",
        "late_after",
        "local_share",
        "name",
        "on_redis_error",
        "target",
    )

    def __init__(
        self,
        *limits: RateLimit | str,
        redis: str | RedisLike,
        name: str | None = None,
        scope: Scope = "client",
        paths: str | Sequence[str] | None = None,
        max_wait: float | None = 60.0,
        on_redis_error: OnRedisError = "local",
        local_share: float = 0.25,
        prefix: str = "tether",
        late_after: float = 0.025,
    ) -> None:
        if not limits:
            raise ConfigError("a RedisRateLimiter needs at least one limit")
        super().__init__(*limits, scope=scope, paths=paths, max_wait=max_wait)
        if on_redis_error not in ("fail_open", "fail_closed", "local"):
            raise ConfigError(
                "on_redis_error must be 'fail_open', 'fail_closed' or 'local', "
                f"got {on_redis_error!r}"
            )
        share: object = local_share  # callers may pass anything at run time
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise ConfigError(f"local_share must be a number in (0, 1], got {local_share!r}")
        self.on_redis_error = on_redis_error
        late: object = late_after
        if isinstance(late, bool) or not isinstance(late, int | float) or not late > 0:
            raise ConfigError(f"late_after must be a number of seconds > 0, got {late_after!r}")
        self.late_after = float(late_after)
        self.local_share = float(local_share)
        if name is None:
            name = digest(f"{self.limits!r}|{self.paths!r}")[:12]
        self.name = name
        self._client, self.target, self._own_client = connect(redis)
        self._scripts = (
            self._client.register_script(_ACQUIRE),
            self._client.register_script(_REFUND),
        )
        self._keys: dict[str, str] = {}
        #: Script arguments per cost (validated once): the hot path only formats the time.
        self._shapes: dict[Cost, list[float | int | str]] = {0.0: []}
        head = f"{key_prefix(prefix)}:rl:{name}:{scope}"
        self._wire = head
        self._fallback = RateLimiter(
            *(_scaled(limit, self.local_share) for limit in self._limits),
            scope=scope,
            paths=paths,
            max_wait=max_wait,
        )
        self._probe_at = 0.0  # monotonic time before which Redis is not tried again
        #: Per scope key, the latest departure handed out in the current mode (monotonic).
        #: When the limiter switches between Redis and its local fallback, the callers already
        #: queued under the old mode still go at their times, so the new mode's bucket is
        #: charged with them; otherwise both queues would send at once, doubling the rate for
        #: as long as the queue is deep.
        self._horizon: dict[str, float] = {}
        #: Per scope key, how deep the shared queue was at the last answer from Redis. A
        #: process that finds Redis gone some time after its last answer assumes the queue
        #: kept that depth (the other processes went on reserving meanwhile), rather than
        #: starting its local bucket where its own, older reservations end.
        self._depth: dict[str, float] = {}
        #: Per scope key, seconds of local queue to hand over to Redis after an outage.
        self._handover: dict[str, float] = {}
        #: (Redis clock minus our monotonic clock, the round trip it was measured with, when).
        self._offset = (0.0, math.inf, 0.0)
        self._throttled = Throttled()

    def redis_key(self, key: str) -> str:
        """The Redis key holding the bucket for scope key `key`: one hash tag per bucket, so a
        cluster keeps it on one node, and a digest of the scope key, never the key itself.
        """
        found = self._keys.get(key)
        if found is None:
            found = f"{{{self._wire}:{digest(key)}}}"
            if len(self._keys) >= 4096:
                self._keys.clear()
            self._keys[key] = found
        return found

    def _steps(self, cost: Cost) -> tuple[float, ...] | None:
        costs = cost if isinstance(cost, tuple) else (cost,) * len(self._limits)
        if len(costs) != len(self._limits):
            raise ConfigError(
                f"expected {len(self._limits)} costs, one per limit, got {len(costs)}: {cost!r}"
            )
        for value, limit in zip(costs, self._limits, strict=True):
            if not 0 <= value <= limit.burst:  # NaN fails too
                raise ConfigError(
                    f"rate limit cost must be a number in [0, burst={limit.burst}], got {value!r}"
                )
        if not any(costs):
            return None
        return tuple(c * limit.interval for c, limit in zip(costs, self._limits, strict=True))

    @property
    def degraded(self) -> bool:
        """Whether the last attempt to reach Redis failed (acquires are following the policy)."""
        return self._probe_at > 0.0

    async def acquire(
        self, key: str, cost: Cost = 1.0, *, deadline: float | None = None, clock: Clock
    ) -> float:
        """Reserve a slot and return the seconds to wait before sending.

        The reservation is committed only when the wait fits `max_wait` and `deadline` (a
        time on `clock.monotonic()`); otherwise nothing is reserved and
        `RateLimitWaitTooLong` is raised.
        """
        shape = self._shapes.get(cost)
        if shape is not None and not shape:
            return 0.0
        if shape is None:
            steps = self._steps(cost)
            if steps is None:
                return 0.0
            shape = []
            for step, item in zip(steps, self._limits, strict=True):
                shape += [repr(step), repr(item.burst * item.interval), int(item.start_full)]
            if len(self._shapes) < 64:  # costs repeat; LLM token counts may not
                self._shapes[cost] = shape
        now = clock.monotonic()
        limit = math.inf if self.max_wait is None else self.max_wait
        if deadline is not None:
            limit = min(limit, max(0.0, deadline - now))
        if self._probe_at and now < self._probe_at:
            return self._degraded(key, cost, now, limit, None)
        args: list[float | int | str] = [len(self._limits), -1 if math.isinf(limit) else limit]
        args += shape
        probing = self._probe_at > 0.0
        handover = self._handover.pop(key, 0.0)
        if probing:
            handover = max(handover, self._queued(key, now))
        args.append(repr(handover))
        try:
            reply = await self._scripts[0](keys=[self.redis_key(key)], args=args)
        except REDIS_ERRORS as error:
            if handover and not probing:
                self._handover[key] = handover
            if not probing:
                self._enter_local(now)
                await self._drop_connections()
            self._probe_at = clock.monotonic() + _PROBE_EVERY
            return self._degraded(key, cost, now, limit, error)
        if probing:
            self._leave_local(now, key)
            self._throttled.warning("rate limiter %s: Redis %s is back", self.name, self.target)
        committed, wait_text, redis_now = reply.split()
        wait = self._local_wait(now, clock.monotonic(), float(redis_now), float(wait_text))
        now = clock.monotonic()
        if committed not in (b"1", "1"):  # bytes, or str from a decoding client
            raise RateLimitWaitTooLong(
                f"the shared rate limit {self.name!r} would hold this request {wait:.1f} s, "
                "more than max_wait or the call's deadline allows",
                wait=wait,
            )
        self._track(key, now + wait)
        if len(self._depth) >= 4096:
            self._depth.clear()
        self._depth[key] = wait
        return wait

    async def _drop_connections(self) -> None:
        # Pooled connections to a Redis that went away are all dead; left in the pool, each
        # would fail one probe after Redis returns, and recovery would take one probe
        # interval per pooled connection.
        pool = getattr(self._client, "connection_pool", None)
        if pool is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await pool.disconnect()

    def _queued(self, key: str, now: float) -> float:
        """Seconds until the last caller queued in the current mode departs."""
        return max(0.0, self._horizon.get(key, 0.0) - now)

    def _track(self, key: str, departure: float) -> None:
        if departure > self._horizon.get(key, 0.0):
            if len(self._horizon) >= 4096:
                self._horizon.clear()
            self._horizon[key] = departure

    def _enter_local(self, now: float) -> None:
        """Start each local bucket where this process's Redis queue ends.

        Everyone's Redis reservations interleave up to about the same time, so the end of
        ours is where the shared queue ends: local slots begin there.
        """
        if self.on_redis_error == "local":
            for key in {*self._horizon, *self._depth}:
                queued = max(self._queued(key, now), self._depth.get(key, 0.0))
                gcra = self._fallback.bucket(key).gcra
                if queued > 0 and gcra is not None:
                    gcra.charge(now, tuple(queued / lim.interval for lim in gcra.limits))
        self._horizon.clear()
        self._depth.clear()

    def _leave_local(self, now: float, probed: str) -> None:
        for key in list(self._horizon):
            queued = self._queued(key, now)
            if key != probed and queued > 0:
                self._handover[key] = queued
        self._horizon.clear()
        self._probe_at = 0.0

    async def wait_turn(
        self, key: str, cost: Cost = 1.0, *, deadline: float | None = None, clock: Clock
    ) -> None:
        """Acquire a slot and sleep until it comes; return when the request may be sent.

        A caller that wakes up late (its process was busy or descheduled) has lost its slot:
        sending anyway would put it right behind the callers whose slots came after, and a
        stall of a few hundred milliseconds would release a burst that a strict server window
        refuses. Such a caller takes a new slot instead; the missed one stays spent, which
        errs on the safe side. A cancelled wait gives its slot back.
        """
        while True:
            wait = await self.acquire(key, cost, deadline=deadline, clock=clock)
            departure = clock.monotonic() + wait
            if wait <= 0:
                return
            try:
                await clock.sleep(wait)
            except BaseException:
                await asyncio.shield(self.arefund(key, cost, clock=clock))
                raise
            if clock.monotonic() - departure <= self.late_after:
                return

    def _local_wait(self, sent: float, received: float, redis_now: float, wait: float) -> float:
        """The wait, counted on this process's clock from the moment the script ran.

        Counting it from when the answer arrived would shift each departure by that call's
        delay (a new connection, Redis busy with other scripts), and shifts that vary bunch
        requests together. The offset between Redis's clock and ours comes from the call
        with the shortest round trip seen lately (as NTP picks its samples), so it is
        accurate to half that round trip; a stored sample ages, so drift is followed. Until
        a sample is good enough, the wait counts from the answer, which is late, never early.
        """
        rtt = received - sent
        offset, best, at = self._offset
        if rtt <= best + (received - at) * _SAMPLE_AGING:
            offset, best = redis_now - (sent + received) / 2, rtt
            self._offset = (offset, rtt, received)
        if best > _GOOD_SAMPLE:
            return wait
        # The script ran between `sent` and `received`, so its departure lies in that span.
        departure = min(max(redis_now + wait - offset, sent + wait), received + wait)
        return departure - received if departure > received else 0.0

    def _degraded(
        self, key: str, cost: Cost, now: float, limit: float, error: BaseException | None
    ) -> float:
        if error is not None:
            self._throttled.warning(
                "rate limiter %s: Redis %s unreachable (%s); policy %s",
                self.name,
                self.target,
                type(error).__name__,
                self.on_redis_error,
            )
        if self.on_redis_error == "fail_open":
            return 0.0
        if self.on_redis_error == "fail_closed":
            raise SharedStateUnavailable(
                f"the shared rate limit {self.name!r} cannot reach Redis {self.target} "
                "(on_redis_error='fail_closed'); the request was not sent"
            ) from None
        fallback = self._fallback
        wait = fallback.wait(key, now, cost)
        if wait > limit:
            raise RateLimitWaitTooLong(
                f"the shared rate limit {self.name!r} (local fallback while Redis is "
                f"unreachable) would hold this request {wait:.1f} s",
                wait=wait,
            )
        fallback.reserve(key, now + wait, cost)
        self._track(key, now + wait)
        return wait

    async def arefund(self, key: str, cost: Cost = 1.0, *, clock: Clock) -> None:
        """Give back a slot that was reserved but not used; best effort while Redis is down."""
        steps = self._steps(cost)
        if steps is None:
            return
        if self._probe_at:
            self._fallback.refund(key, clock.monotonic(), cost)
            return
        try:
            await self._scripts[1](
                keys=[self.redis_key(key)], args=[len(steps), *(repr(s) for s in steps)]
            )
        except REDIS_ERRORS:
            # An unreturned slot only makes the next caller wait a little longer.
            self._fallback.refund(key, clock.monotonic(), cost)

    # The synchronous interface of `RateLimiter`, for a pipeline that cannot await: it paces
    # this process at `local_share` of the quota, which is safe (never over the shared quota
    # when the share is right) but not shared. The async `acquire` is the shared path.
    def wait(self, key: str, now: float, cost: Cost) -> float:
        self._throttled.warning(
            "rate limiter %s: used through the synchronous interface; pacing this process "
            "locally at local_share=%g of the quota",
            self.name,
            self.local_share,
        )
        return self._fallback.wait(key, now, cost)

    def reserve(self, key: str, departure: float, cost: Cost) -> None:
        self._fallback.reserve(key, departure, cost)

    def refund(self, key: str, now: float, cost: Cost) -> None:
        self._fallback.refund(key, now, cost)

    async def aclose(self) -> None:
        """Close the connection pool if this limiter opened it (from a URL)."""
        if self._own_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        limits = ", ".join(str(limit) for limit in self.limits)
        return (
            f"RedisRateLimiter({limits}, name={self.name!r}, scope={self.scope!r}, "
            f"paths={self.paths!r}, redis={self.target!r}, "
            f"on_redis_error={self.on_redis_error!r}, local_share={self.local_share:g})"
        )
