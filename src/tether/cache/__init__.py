"""Storage for tether's HTTP cache: `MemoryCache`, `SQLiteCache`, or your own `CacheBackend`.

Enable the cache on a client with `cache=tether.Cache(backend=...)`; see docs/caching.md.
"""

from tether.cache._base import CacheBackend, StoredResponse
from tether.cache._memory import MemoryCache
from tether.cache._sqlite import SQLiteCache

__all__ = ["CacheBackend", "MemoryCache", "SQLiteCache", "StoredResponse"]
