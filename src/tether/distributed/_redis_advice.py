"""Server advice shared by every process: a `Retry-After` seen once pauses everyone.

The pause is a Redis key with a millisecond expiry (`PX`): it ends by itself on the Redis
server's clock, so no process has to clean it up and clocks that disagree do not matter. Its
value is the status that asked for it (429, 503), so a process that never saw the answer can
still raise the right error.
"""

from __future__ import annotations

import math
import time

from tether._errors import ConfigError
from tether.distributed._common import (
    REDIS_ERRORS,
    RedisLike,
    Throttled,
    connect,
    digest,
    key_prefix,
)

__all__ = ["RedisAdviceStore"]

# Extends a pause, never shortens it: a later, shorter Retry-After from another process must
# not cut short the longer one the server gave first. ARGV: ms, status. Returns the pause in
# force, in ms.
_PAUSE = """
local ms = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < ms then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ms)
  return ms
end
return left
"""

# Returns {ms left, status}; {0, 0} when there is no pause.
_LOOKUP = """
local left = redis.call('PTTL', KEYS[1])
if left <= 0 then
  return {0, 0}
end
return {left, tonumber(redis.call('GET', KEYS[1])) or 0}
"""

#: A server that asks for more than a day is misconfigured, not advising; cap what we share.
_LONGEST = 86_400.0
#: After a failed call, Redis is left alone this long: an outage then costs one timeout per
#: second instead of one per lookup.
_OUTAGE_PAUSE = 1.0
#: The status a pause is reported with when it was recorded without one.
_DEFAULT_STATUS = 429


class RedisAdviceStore:
    """Pauses asked for by servers (`Retry-After`, 429/503), shared through Redis.

    `pause(key, seconds)` records that requests for `key` (a host, usually) must wait;
    `paused_for(key)` says how long is left, `lookup(key)` also which status asked. Given to
    a client as `Client(shared_advice=...)`, its retry policy publishes every pause it records
    and honours those other processes published, re-reading them at most every `refresh`
    seconds per host.

    Advice is advisory: while Redis is unreachable, `pause` does nothing and lookups answer
    0 (one warning, repeated at most every 30 s), so each process falls back on what it saw
    itself; Redis is tried again a second later.
    """

    __slots__ = (
        "_client",
        "_down_until",
        "_lookup",
        "_own_client",
        "_pause",
        "_prefix",
        "_throttled",
        "refresh",
        "target",
    )

    def __init__(
        self, *, redis: str | RedisLike, prefix: str = "tether", refresh: float = 0.2
    ) -> None:
        every: object = refresh
        if isinstance(every, bool) or not isinstance(every, int | float) or not 0 <= refresh <= 60:
            raise ConfigError(f"refresh must be seconds in [0, 60], got {refresh!r}")
        self._client, self.target, self._own_client = connect(redis)
        self._prefix = f"{key_prefix(prefix)}:advice"
        self._pause = self._client.register_script(_PAUSE)
        self._lookup = self._client.register_script(_LOOKUP)
        self._throttled = Throttled()
        self._down_until = 0.0
        #: Longest a client's cached view of a host's shared pause is trusted, in seconds.
        self.refresh = float(refresh)

    def redis_key(self, key: str) -> str:
        """The Redis key holding the pause for `key` (a digest: hosts may carry user info)."""
        return f"{{{self._prefix}:{digest(key)}}}"

    async def pause(self, key: str, seconds: float, *, status: int = _DEFAULT_STATUS) -> float:
        """Pause every process for `key` at least `seconds`, on behalf of a `status` answer;
        returns the pause now in force (longer when another process already had a longer
        one), or 0 when Redis is away.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ConfigError(f"a pause must be a number of seconds, got {seconds!r}")
        code: object = status
        if isinstance(code, bool) or not isinstance(code, int) or not 400 <= status <= 599:
            raise ConfigError(f"a pause's status must be an HTTP error status, got {status!r}")
        if not seconds > 0 or self._away():  # NaN and zero pause nothing
            return 0.0
        ms = math.ceil(min(seconds, _LONGEST) * 1000)
        try:
            left = await self._pause(keys=[self.redis_key(key)], args=[ms, status])
        except REDIS_ERRORS as error:
            self._warn(error)
            return 0.0
        return int(left) / 1000

    async def lookup(self, key: str) -> tuple[float, int]:
        """Seconds left of the shared pause for `key` and the status that asked for it;
        `(0.0, 0)` when there is none (or Redis is away)."""
        if self._away():
            return 0.0, 0
        try:
            left, status = await self._lookup(keys=[self.redis_key(key)])
        except REDIS_ERRORS as error:
            self._warn(error)
            return 0.0, 0
        if int(left) <= 0:
            return 0.0, 0
        code = int(status)
        return int(left) / 1000, code if 400 <= code <= 599 else _DEFAULT_STATUS

    async def paused_for(self, key: str) -> float:
        """Seconds left of the shared pause for `key`; 0 when none (or Redis is away)."""
        left, _ = await self.lookup(key)
        return left

    async def clear(self, key: str) -> None:
        """End the pause for `key` early (the server answered again)."""
        if self._away():
            return
        try:
            await self._client.delete(self.redis_key(key))
        except REDIS_ERRORS as error:
            self._warn(error)

    def _away(self) -> bool:
        return self._down_until > 0 and time.monotonic() < self._down_until

    def _warn(self, error: BaseException) -> None:
        self._down_until = time.monotonic() + _OUTAGE_PAUSE
        self._throttled.warning(
            "shared server advice: Redis %s unreachable (%s); using local advice only",
            self.target,
            type(error).__name__,
        )

    async def aclose(self) -> None:
        """Close the connection pool if this store opened it (from a URL)."""
        if self._own_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"RedisAdviceStore(redis={self.target!r}, prefix={self._prefix!r})"
