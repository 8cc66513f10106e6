"""Server advice shared by every process: a `Retry-After` seen once pauses everyone.

The pause is a Redis key with a millisecond expiry (`PX`): it ends by itself on the Redis
server's clock, so no process has to clean it up and clocks that disagree do not matter.
"""

from __future__ import annotations

import math

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
# not cut short the longer one the server gave first. Returns the pause in force, in ms.
_PAUSE = """
local ms = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
  return ms
end
return left
"""

#: A server that asks for more than a day is misconfigured, not advising; cap what we share.
_LONGEST = 86_400.0


class RedisAdviceStore:
    """Pauses asked for by servers (`Retry-After`, 429/503), shared through Redis.

    `pause(key, seconds)` records that requests for `key` (a host, usually) must wait;
    `paused_for(key)` says how long is left. Advice is advisory: while Redis is unreachable,
    `pause` does nothing and `paused_for` answers 0, so each process falls back on what it
    saw itself.
    """

    __slots__ = ("_client", "_own_client", "_pause", "_prefix", "_throttled", "target")

    def __init__(self, *, redis: str | RedisLike, prefix: str = "tether") -> None:
        self._client, self.target, self._own_client = connect(redis)
        self._prefix = f"{key_prefix(prefix)}:advice"
        self._pause = self._client.register_script(_PAUSE)
        self._throttled = Throttled()

    def redis_key(self, key: str) -> str:
        """The Redis key holding the pause for `key` (a digest: hosts may carry user info)."""
        return f"{{{self._prefix}:{digest(key)}}}"

    async def pause(self, key: str, seconds: float) -> float:
        """Pause every process for `key` at least `seconds`; returns the pause now in force
        (longer when another process already had a longer one), or 0 when Redis is away.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ConfigError(f"a pause must be a number of seconds, got {seconds!r}")
        if not seconds > 0:  # NaN and zero pause nothing
            return 0.0
        ms = math.ceil(min(seconds, _LONGEST) * 1000)
        try:
            left = await self._pause(keys=[self.redis_key(key)], args=[ms])
        except REDIS_ERRORS as error:
            self._warn(error)
            return 0.0
        return int(left) / 1000

    async def paused_for(self, key: str) -> float:
        """Seconds left of the shared pause for `key`; 0 when none (or Redis is away)."""
        try:
            left = await self._client.pttl(self.redis_key(key))
        except REDIS_ERRORS as error:
            self._warn(error)
            return 0.0
        return max(0, int(left)) / 1000

    async def clear(self, key: str) -> None:
        """End the pause for `key` early (the server answered again)."""
        try:
            await self._client.delete(self.redis_key(key))
        except REDIS_ERRORS as error:
            self._warn(error)

    def _warn(self, error: BaseException) -> None:
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
