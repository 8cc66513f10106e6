"""What a cache backend stores, and the protocol every backend implements."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tether._core._cache import CacheEntry
from tether._errors import ConfigError

__all__ = [
    "CacheBackend",
    "StoredResponse",
    "decode_entry",
    "encode_entry",
    "positive_bytes",
]

# Bytes charged per stored response beyond its body and fields: the entry's own bookkeeping.
# A rough figure; it keeps a flood of empty responses from counting as free.
_OVERHEAD = 256
_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredResponse:
    """One stored response: its RFC 9111 metadata and its body.

    Responses are filed under a key (a digest of method and URL, never the URL itself); one
    key may hold several variants, told apart by `variant` (RFC 9111 §4.1).
    """

    entry: CacheEntry
    body: bytes
    #: A digest of the credentials the request carried when it reached the cache ("" for
    #: none), so a response fetched with one caller's credentials never answers another's.
    partition: str = ""
    #: Freshness facts the cache policy derives once per forced ttl, so a hit on an object a
    #: backend keeps in memory does not parse the same header fields again. Never stored.
    memo: dict[float | None, tuple[float, float] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def variant(self) -> str:
        """Which of a key's variants this is: the same Vary'd request values (§4.1) and the
        same partition replace each other; different ones live side by side.
        """
        if not self.entry.vary_values and not self.partition:
            return ""
        material = json.dumps([self.partition, self.entry.vary_values], separators=(",", ":"))
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    @property
    def size(self) -> int:
        """Bytes this response is charged against a backend's `max_bytes`."""
        fields = sum(len(name) + len(value) for name, value in self.entry.headers)
        vary = sum(len(name) + len(value or "") for name, value in self.entry.vary_values)
        return len(self.body) + fields + vary + _OVERHEAD


@runtime_checkable
class CacheBackend(Protocol):
    """Storage for the HTTP cache. Methods are async so that a backend on a file or a network
    never blocks the event loop; each must be safe to call concurrently from one loop.

    Backends store what they are given and evict as they must; the cache policy makes every
    RFC 9111 decision. `aclose` releases resources, but a backend used after `aclose` opens
    them again, so one backend may outlive the client that closed it.
    """

    async def get(self, key: str) -> Sequence[StoredResponse]:
        """Every stored variant under `key` (empty when none); marks them recently used."""
        ...

    async def set(self, key: str, response: StoredResponse) -> None:
        """Store `response` under `key`, replacing the variant it matches. A response larger
        than the whole cache is not stored, and the variant it would replace is dropped.
        """
        ...

    async def delete(self, key: str) -> None:
        """Drop every variant under `key`."""
        ...

    async def clear(self) -> None:
        """Drop everything."""
        ...

    async def aclose(self) -> None:
        """Release files and connections."""
        ...


def encode_entry(entry: CacheEntry) -> str:
    """A stored entry's metadata as JSON, for backends that keep bytes (SQLite, Redis)."""
    return json.dumps(
        {
            "format": _FORMAT,
            "status": entry.status,
            "headers": entry.headers,
            "vary": entry.vary_values,
            "request_time": entry.request_time,
            "response_time": entry.response_time,
            "method": entry.method,
            "ttl": entry.ttl,
        },
        separators=(",", ":"),
    )


def decode_entry(text: str | bytes) -> CacheEntry | None:
    """The entry `encode_entry` wrote, or None when the data is damaged or from another
    format version (the caller then treats it as absent).
    """
    try:
        data: Any = json.loads(text)
        if data["format"] != _FORMAT:
            return None
        ttl = data["ttl"]
        return CacheEntry(
            status=int(data["status"]),
            headers=tuple((str(name), str(value)) for name, value in data["headers"]),
            vary_values=tuple(
                (str(name), None if value is None else str(value)) for name, value in data["vary"]
            ),
            request_time=float(data["request_time"]),
            response_time=float(data["response_time"]),
            method=str(data["method"]),
            ttl=None if ttl is None else float(ttl),
        )
    except (ValueError, TypeError, KeyError):
        return None


def positive_bytes(owner: str, value: object) -> int:
    """`max_bytes` checked: a positive int (bool is not a size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{owner} max_bytes must be a positive int, got {value!r}")
    return value
