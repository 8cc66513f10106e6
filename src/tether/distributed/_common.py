"""What every Redis-backed piece shares: the connection, key names and error handling."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions

from tether._errors import ConfigError, TetherError

__all__ = [
    "REDIS_ERRORS",
    "RedisLike",
    "SharedStateUnavailable",
    "connect",
    "digest",
    "key_prefix",
    "safe_target",
]

log = logging.getLogger("tether.distributed")

#: A `redis.asyncio` client (or cluster client): anything with `evalsha`/`eval`.
RedisLike: TypeAlias = Any

#: Failures that mean "Redis cannot answer now", as opposed to a bug in a script or a call.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    ConnectionError,
    TimeoutError,
    OSError,
)

#: Short socket timeouts for clients built from a URL: a limiter that waits 30 s for a dead
#: Redis holds every request that long, and the failure policy exists to decide sooner.
_SOCKET_TIMEOUT = 1.0


class SharedStateUnavailable(TetherError):
    """Redis could not be reached and the configured policy is to refuse (fail closed).

    Nothing was sent; the message names the Redis host but never its password.
    """


def safe_target(url: str) -> str:
    """`host:port/db` of a Redis URL: what may appear in logs and errors (no credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    return f"{parts.scheme}://{host}:{port}{parts.path or ''}"


def connect(redis: str | RedisLike) -> tuple[RedisLike, str, bool]:
    """The client to use, a printable name for it, and whether we own (and must close) it."""
    if isinstance(redis, str):
        if not redis.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "redis must be a redis://, rediss:// or unix:// URL or a redis.asyncio client"
            )
        client = aioredis.Redis.from_url(
            redis,
            socket_timeout=_SOCKET_TIMEOUT,
            socket_connect_timeout=_SOCKET_TIMEOUT,
            health_check_interval=0,
        )
        return client, safe_target(redis), True
    if not hasattr(redis, "evalsha"):
        raise ConfigError(f"redis must be a URL or a redis.asyncio client, got {type(redis)!r}")
    kwargs = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {})
    name = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    return redis, name, False


def digest(value: str) -> str:
    """A short stable name for a scope key or token key: URLs and credential digests can be
    long, and a key name is visible to anyone who can run `SCAN`.
    """
    return hashlib.sha256(value.encode()).hexdigest()[:24]


def key_prefix(prefix: str) -> str:
    checked: object = prefix  # callers may pass anything at run time
    if not isinstance(checked, str) or not checked or "{" in checked or "}" in checked:
        raise ConfigError(f"prefix must be a non-empty string without braces, got {prefix!r}")
    return prefix


class Throttled:
    """Logs a recurring problem at most once per `every` seconds, so an outage is visible
    without one log line per request.
    """

    __slots__ = ("_every", "_next")

    def __init__(self, every: float = 30.0) -> None:
        self._every = every
        self._next = 0.0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every
            log.warning(message, *args)
