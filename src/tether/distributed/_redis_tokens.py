"""Token sets in Redis, for processes on several machines that share one OAuth grant.

Compare-and-swap is one Lua script on the stored version. The refresh lock is a lease (`SET NX
PX`) whose value is a fencing token from a per-key counter: a process whose lease ran out
while it was refreshing (a long pause, a stalled network) finds its token superseded and its
save refused, instead of overwriting the token the next lock holder rotated.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import time
from collections.abc import AsyncIterator

from tether._core._oauth import TokenSet
from tether._errors import AuthError, ConfigError
from tether.auth._stores import DEFAULT_LOCK_TIMEOUT, TokenStore, _decode
from tether.distributed._common import REDIS_ERRORS, RedisLike, connect, digest, key_prefix

__all__ = ["RedisTokenStore"]

# KEYS: token hash, lock key. ARGV: expected version ('' for none), new version, data, fence
# ('' when the caller holds no lock). Returns 1 saved, 0 version mismatch, -1 lease lost.
_SAVE = """
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[4] then
  return -1
end
local stored = redis.call('HGET', KEYS[1], 'v')
if stored then
  if stored ~= ARGV[1] then return 0 end
elseif ARGV[1] ~= '' and ARGV[1] ~= '0' then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
return 1
"""

# KEYS: lock key, fence counter. ARGV: lease in ms. Returns the fencing token, or false.
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], fence, 'PX', ARGV[1])
return fence
"""

# Deletes the lock only if it still holds our fencing token (a lease that ran out and was
# taken by someone else is theirs now).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_POLL = 0.02

#: The fencing token of the lease this task holds, per (store, key).
_held: contextvars.ContextVar[dict[tuple[str, str], str] | None] = contextvars.ContextVar(
    "tether_redis_token_leases", default=None
)


class RedisTokenStore(TokenStore):
    """Token sets in Redis: compare-and-swap on the version, and a fenced refresh lease.

    Args:
        redis: A `redis://` URL or a `redis.asyncio` client.
        prefix: First part of every key name.
        lock_timeout: How long a process waits for the refresh lock, and how long a lease
            lasts; longer than one refresh can take.

    Durability is Redis's: run it with `appendonly yes` and `appendfsync always` when a
    rotated refresh token must survive a Redis crash (a lost one forces a new sign-in).
    """

    def __init__(
        self,
        *,
        redis: str | RedisLike,
        prefix: str = "tether",
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float):
            raise ConfigError(f"lock_timeout must be a number of seconds, got {lock_timeout!r}")
        if not lock_timeout > 0:
            raise ConfigError(f"lock_timeout must be > 0, got {lock_timeout!r}")
        self._client, self.target, self._own_client = connect(redis)
        self._prefix = f"{key_prefix(prefix)}:tok"
        self._lock_timeout = float(lock_timeout)
        self._save = self._client.register_script(_SAVE)
        self._take = self._client.register_script(_TAKE)
        self._release = self._client.register_script(_RELEASE)
        self._id = f"redis:{self.target}:{self._prefix}"

    @property
    def identity(self) -> str:
        return self._id

    def _keys(self, key: str) -> tuple[str, str, str]:
        # One hash tag for the token, its lock and its fence counter: a cluster keeps them
        # on one node, so the scripts may touch all three.
        tag = f"{{{self._prefix}:{digest(key)}}}"
        return tag, f"{tag}:lock", f"{tag}:fence"

    def _failed(self, error: BaseException, doing: str) -> AuthError:
        return AuthError(
            f"token store Redis {self.target} unreachable while {doing} ({type(error).__name__})"
        )

    async def load(self, key: str) -> TokenSet | None:
        try:
            data = await self._client.hget(self._keys(key)[0], "d")
        except REDIS_ERRORS as error:
            raise self._failed(error, "loading a token") from None
        return _decode(data, f"Redis {self.target}")

    async def save(self, key: str, token: TokenSet, *, expected_version: int | None) -> bool:
        token_key, lock_key, _ = self._keys(key)
        fence = (_held.get() or {}).get((self._id, key), "")
        data = json.dumps(token.to_json(), separators=(",", ":"))
        expected = "" if expected_version is None else str(expected_version)
        try:
            result = await self._save(
                keys=[token_key, lock_key], args=[expected, str(token.version), data, fence]
            )
        except REDIS_ERRORS as error:
            raise self._failed(error, "saving a token") from None
        return int(result) == 1

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete(self._keys(key)[0])
        except REDIS_ERRORS as error:
            raise self._failed(error, "deleting a token") from None

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        _, lock_key, fence_key = self._keys(key)
        lease_ms = max(1, int(self._lock_timeout * 1000))
        deadline = time.monotonic() + self._lock_timeout
        while True:
            try:
                fence = await self._take(keys=[lock_key, fence_key], args=[lease_ms])
            except REDIS_ERRORS as error:
                raise self._failed(error, "taking the refresh lock") from None
            if fence is not None:
                break
            if time.monotonic() >= deadline:
                raise AuthError(
                    f"timed out after {self._lock_timeout:g} s waiting for the token store lock"
                )
            await asyncio.sleep(_POLL)
        token = str(int(fence))
        held = dict(_held.get() or {})
        held[(self._id, key)] = token
        reset = _held.set(held)
        try:
            yield
        finally:
            _held.reset(reset)
            with contextlib.suppress(*REDIS_ERRORS):
                # Unreleased, the lease simply runs out.
                await self._release(keys=[lock_key], args=[token])

    async def aclose(self) -> None:
        """Close the connection pool if this store opened it (from a URL)."""
        if self._own_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"RedisTokenStore(redis={self.target!r}, prefix={self._prefix!r})"
