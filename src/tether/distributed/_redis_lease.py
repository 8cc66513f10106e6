"""Leases in Redis: one Lua script per grant, expiry by the server's clock (`PX`).

Each lease name has two keys under one hash tag: the lease itself (`"<fence> <holder>"`, with
a millisecond expiry) and its fence counter, which never expires, so a re-acquire after a
release or an expiry always gets a larger fence. Scripts run atomically, so of any number of
racing acquirers exactly one is granted.
"""

from __future__ import annotations

from tether.distributed._common import REDIS_ERRORS, RedisLike, connect, digest, key_prefix
from tether.stores._inbox import StoreError
from tether.stores._lease import HeldLease, check_lease, check_lease_args

__all__ = ["RedisLeaseStore"]

# The lease's value is "<fence> <expires at, ms> <holder>": the expiry is kept beside the
# key's own PX so that every reader reports the very expiry that was granted.

# KEYS: lease, fence counter. ARGV: holder, ttl ms. Returns {fence, expires at ms} or {0, 0}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local fence
local held = redis.call('GET', KEYS[1])
if held then
  local holder
  fence, holder = string.match(held, '^(%d+) %d+ (.*)$')
  if holder ~= ARGV[1] then
    return {0, 0}
  end
else
  fence = redis.call('INCR', KEYS[2])
end
redis.call('SET', KEYS[1], string.format('%d %d %s', fence, now + ttl, ARGV[1]), 'PX', ttl)
return {tonumber(fence), now + ttl}
"""

# KEYS: lease. ARGV: fence, holder. Deletes it only if it is still that grant.
_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held then
  local fence, holder = string.match(held, '^(%d+) %d+ (.*)$')
  if fence == ARGV[1] and holder == ARGV[2] then
    return redis.call('DEL', KEYS[1])
  end
end
return 0
"""


class RedisLeaseStore:
    """The `tether.stores.LeaseStore` protocol on Redis.

    Args:
        redis: A `redis://` URL or a `redis.asyncio` client (not closed by `aclose`).
        prefix: First part of every key name.

    Leases are not advisory: while Redis cannot be reached, every call raises
    `tether.stores.StoreError` (whose message names the host, never the password), so a
    holder learns it can no longer renew. Durability is Redis's: with `appendonly yes` a
    restarted Redis keeps its fence counters; without it, counters restart at 1.
    """

    __slots__ = ("_client", "_own_client", "_prefix", "_scripts", "target")

    def __init__(self, *, redis: str | RedisLike, prefix: str = "tether") -> None:
        self._client, self.target, self._own_client = connect(redis)
        self._prefix = f"{key_prefix(prefix)}:lease"
        self._scripts = (
            self._client.register_script(_ACQUIRE),
            self._client.register_script(_RELEASE),
        )

    def redis_keys(self, name: str) -> tuple[str, str]:
        """The lease key and its fence counter's key (digests: names may say too much)."""
        tag = f"{{{self._prefix}:{digest(name)}}}"
        return f"{tag}:held", f"{tag}:fence"

    async def open(self) -> None:
        """Check that Redis answers; the other calls connect on first use anyway."""
        try:
            await self._client.ping()
        except REDIS_ERRORS as error:
            raise self._unreachable(error) from None

    async def acquire(self, name: str, holder: str, ttl: float) -> HeldLease | None:
        ttl = check_lease_args(name, holder, ttl)
        # Whole milliseconds, at least one: PX 0 is an error, not an instant expiry.
        ms = max(1, round(ttl * 1000))
        try:
            fence, expires_ms = await self._scripts[0](
                keys=self.redis_keys(name), args=[holder, ms]
            )
        except REDIS_ERRORS as error:
            raise self._unreachable(error) from None
        if not int(fence):
            return None
        return HeldLease(name, holder, int(fence), int(expires_ms) / 1000)

    async def release(self, lease: HeldLease) -> bool:
        lease = check_lease(lease)
        try:
            deleted = await self._scripts[1](
                keys=self.redis_keys(lease.name)[:1], args=[lease.fence, lease.holder]
            )
        except REDIS_ERRORS as error:
            raise self._unreachable(error) from None
        return bool(int(deleted))

    async def current(self, name: str) -> HeldLease | None:
        try:
            # The key expires on the server's clock, so a GET never sees a lapsed lease.
            held = await self._client.get(self.redis_keys(name)[0])
        except REDIS_ERRORS as error:
            raise self._unreachable(error) from None
        if held is None:
            return None
        text = held.decode() if isinstance(held, bytes) else str(held)
        fence, expires_ms, holder = text.split(" ", 2)
        return HeldLease(name, holder, int(fence), int(expires_ms) / 1000)

    def _unreachable(self, error: BaseException) -> StoreError:
        return StoreError(
            f"the Redis lease store {self.target} is unreachable ({type(error).__name__})"
        )

    async def aclose(self) -> None:
        """Close the connection pool if this store opened it (from a URL)."""
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> RedisLeaseStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"RedisLeaseStore(redis={self.target!r}, prefix={self._prefix!r})"
