"""Storage for tether's HTTP cache: `MemoryCache`, `SQLiteCache`, or your own `CacheBackend`.

Enable the cache on a client with `cache=tether.Cache(backend=...)`; see docs/caching.md.
"""

from tether.cache._base import CacheBackend, StoredResponse
from tether.cache._memory import MemoryCache
from tether.cache._sqlite import SQLiteCache

__all__ = ["CacheBackend", "MemoryCache", "RedisCache", "SQLiteCache", "StoredResponse"]


def __getattr__(name: str) -> object:
    # redis is an optional extra: RedisCache is imported only when asked for.
    if name == "RedisCache":
        from tether.cache._redis import RedisCache  # noqa: PLC0415

        return RedisCache
    raise AttributeError(f"module 'tether.cache' has no attribute {name!r}")
