"""`tether.Cache`: the HTTP cache option of a client, as a frozen value object."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Literal

from tether._errors import ConfigError
from tether.cache._base import CacheBackend

__all__ = ["Cache"]


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be zero or a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cache:
    """A private HTTP cache for GET and HEAD responses (RFC 9111), shared by one client's calls.

    Args:
        backend: Where responses are kept: `"memory"` (a fresh `tether.cache.MemoryCache()`
            per client), or a backend such as `tether.cache.SQLiteCache(path)`.
        ttl: Seconds to keep every response fresh *whatever the API's headers say*, or a
            mapping of URL-path glob to seconds for groups of endpoints (the first matching
            pattern wins, in the mapping's order); None follows the API's headers. A ttl
            sets aside the response's `no-store`, `no-cache` and `must-revalidate`: it is
            for APIs that send no cache headers, or wrong ones. `0` means "do not cache".
        stale_if_error: Seconds past expiry during which a stored response may stand in for
            a failed call (connection error, timeout, deadline, spent retry budget, open
            circuit, 500/502/503/504), beside any `stale-if-error` the API sent itself.
    """

    backend: CacheBackend | Literal["memory"] = "memory"
    # Not hashed: a mapping is not hashable, and equal objects still hash equal without it.
    ttl: float | Mapping[str, float] | None = field(default=None, hash=False)
    stale_if_error: float | None = None

    def __post_init__(self) -> None:
        if self.backend != "memory" and not isinstance(self.backend, CacheBackend):
            raise ConfigError(
                "Cache backend must be 'memory' or a tether.cache backend "
                f"(MemoryCache, SQLiteCache, ...), got {self.backend!r}"
            )
        ttl = self.ttl
        if isinstance(ttl, Mapping):
            groups: dict[str, float] = {}
            # Typed loosely on purpose: the values come from user code and are checked here.
            items: Iterable[tuple[object, object]] = ttl.items()
            for pattern, seconds in items:
                if not isinstance(pattern, str) or not pattern:
                    raise ConfigError(f"Cache ttl keys must be URL path globs, got {pattern!r}")
                groups[pattern] = _seconds(f"Cache ttl[{pattern!r}]", seconds)
            # A private copy: the caller's dict may change later, this object must not.
            object.__setattr__(self, "ttl", MappingProxyType(groups))
        elif ttl is not None:
            object.__setattr__(self, "ttl", _seconds("Cache ttl", ttl))
        if self.stale_if_error is not None:
            object.__setattr__(
                self, "stale_if_error", _seconds("Cache stale_if_error", self.stale_if_error)
            )

    def ttl_for(self, path: str) -> float | None:
        """The forced freshness lifetime for a URL path, or None to follow the headers."""
        ttl = self.ttl
        if not isinstance(ttl, Mapping):
            return ttl
        for pattern, seconds in ttl.items():
            if fnmatchcase(path, pattern):
                return seconds
        return None
