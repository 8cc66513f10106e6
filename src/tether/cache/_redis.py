"""An HTTP cache backend on Redis, shared by every process that points at it.

All of one cache's keys share a hash tag, so the scripts that keep the byte budget and the
least-recently-used order can touch them atomically; in a cluster the cache lives on one node.
Stored values are framed bytes (metadata JSON, partition, body), never pickles.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any

from tether.cache._base import StoredResponse, decode_entry, encode_entry, positive_bytes
from tether.distributed._common import REDIS_ERRORS, Throttled, connect, key_prefix

__all__ = ["RedisCache"]

log = logging.getLogger("tether.cache")

# KEYS: data, sizes, lru, index, bytes, tick. Members are "<key>\n<variant>"; the index is a
# zero-score sorted set, so one key's variants are a lexicographic range.
_GET = """
local found = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. ARGV[1] .. '\\n', '(' .. ARGV[1] .. '\\11')
if #found == 0 then return {} end
local tick = redis.call('INCR', KEYS[6])
local out = {}
for _, member in ipairs(found) do
  local blob = redis.call('HGET', KEYS[1], member)
  if blob then
    redis.call('ZADD', KEYS[3], tick, member)
    out[#out + 1] = blob
  end
end
return out
"""

# ARGV: key, variant, blob, size, max_bytes. Replaces the variant, then evicts the least
# recently used variants until the new one fits. Returns 1 stored, 0 too large for the cache.
_SET = """
local member = ARGV[1] .. '\\n' .. ARGV[2]
local function drop(m)
  local size = redis.call('HGET', KEYS[2], m)
  if size then
    redis.call('DECRBY', KEYS[5], size)
    redis.call('HDEL', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
    redis.call('ZREM', KEYS[3], m)
    redis.call('ZREM', KEYS[4], m)
  end
end
drop(member)
local size = tonumber(ARGV[4])
local budget = tonumber(ARGV[5])
if size > budget then return 0 end
local total = tonumber(redis.call('GET', KEYS[5]) or '0')
while total + size > budget do
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0)
  if #oldest == 0 then break end
  drop(oldest[1])
  total = tonumber(redis.call('GET', KEYS[5]) or '0')
end
local tick = redis.call('INCR', KEYS[6])
redis.call('HSET', KEYS[1], member, ARGV[3])
redis.call('HSET', KEYS[2], member, size)
redis.call('ZADD', KEYS[3], tick, member)
redis.call('ZADD', KEYS[4], 0, member)
redis.call('INCRBY', KEYS[5], size)
return 1
"""

_DELETE = """
local found = redis.call('ZRANGEBYLEX', KEYS[4], '[' .. ARGV[1] .. '\\n', '(' .. ARGV[1] .. '\\11')
for _, m in ipairs(found) do
  local size = redis.call('HGET', KEYS[2], m)
  if size then redis.call('DECRBY', KEYS[5], size) end
  redis.call('HDEL', KEYS[1], m)
  redis.call('HDEL', KEYS[2], m)
  redis.call('ZREM', KEYS[3], m)
  redis.call('ZREM', KEYS[4], m)
end
return #found
"""

_HEAD = struct.Struct(">II")


def _frame(response: StoredResponse) -> bytes:
    meta = encode_entry(response.entry).encode()
    partition = response.partition.encode()
    return _HEAD.pack(len(meta), len(partition)) + meta + partition + response.body


def _unframe(blob: bytes) -> StoredResponse | None:
    if len(blob) < _HEAD.size:
        return None
    meta_len, partition_len = _HEAD.unpack_from(blob)
    start = _HEAD.size
    entry = decode_entry(blob[start : start + meta_len])
    if entry is None:
        return None
    start += meta_len
    partition = blob[start : start + partition_len].decode(errors="replace")
    return StoredResponse(entry=entry, body=blob[start + partition_len :], partition=partition)


class RedisCache:
    """Stores responses in Redis, up to `max_bytes`, least recently used first out.

    Args:
        redis: A `redis://` URL or a `redis.asyncio` client.
        max_bytes: The byte budget of bodies and fields, across every process.
        name: Which cache on that Redis (several clients may keep separate caches).
        prefix: First part of every key name.

    The cache is an optimisation: while Redis is unreachable, lookups miss and stores are
    skipped (logged at most every 30 s), and requests go to the origin.
    """

    __slots__ = ("_client", "_keys", "_own_client", "_scripts", "_throttled", "max_bytes", "target")

    def __init__(
        self,
        *,
        redis: str | Any,
        max_bytes: int = 64 * 2**20,
        name: str = "default",
        prefix: str = "tether",
    ) -> None:
        self.max_bytes = positive_bytes("RedisCache", max_bytes)
        self._client, self.target, self._own_client = connect(redis)
        tag = f"{{{key_prefix(prefix)}:cache:{key_prefix(name)}}}"
        self._keys = [
            f"{tag}:{part}" for part in ("data", "sizes", "lru", "index", "bytes", "tick")
        ]
        self._scripts = tuple(
            self._client.register_script(script) for script in (_GET, _SET, _DELETE)
        )
        self._throttled = Throttled()

    def _warn(self, error: BaseException) -> None:
        self._throttled.warning(
            "RedisCache: Redis %s unreachable (%s); caching is off until it answers",
            self.target,
            type(error).__name__,
        )

    async def get(self, key: str) -> Sequence[StoredResponse]:
        try:
            blobs = await self._scripts[0](keys=self._keys, args=[key])
        except REDIS_ERRORS as error:
            self._warn(error)
            return ()
        found = [_unframe(blob) for blob in blobs]
        return [item for item in found if item is not None]

    async def set(self, key: str, response: StoredResponse) -> None:
        try:
            await self._scripts[1](
                keys=self._keys,
                args=[key, response.variant, _frame(response), response.size, self.max_bytes],
            )
        except REDIS_ERRORS as error:
            self._warn(error)

    async def delete(self, key: str) -> None:
        try:
            await self._scripts[2](keys=self._keys, args=[key])
        except REDIS_ERRORS as error:
            self._warn(error)

    async def clear(self) -> None:
        try:
            await self._client.delete(*self._keys)
        except REDIS_ERRORS as error:
            self._warn(error)

    async def size(self) -> int:
        """Bytes charged against `max_bytes` now."""
        return int(await self._client.get(self._keys[4]) or 0)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"RedisCache(redis={self.target!r}, max_bytes={self.max_bytes})"
