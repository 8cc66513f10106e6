"""An in-process cache backend: least recently used responses go first, bounded in bytes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from tether.cache._base import StoredResponse, positive_bytes

__all__ = ["MemoryCache"]


class MemoryCache:
    """Keeps responses in this process, up to `max_bytes` of bodies and header fields.

    When a new response would pass the bound, the least recently used ones are dropped until
    it fits. All methods run without awaiting anything, so each is atomic on its event loop.
    """

    __slots__ = ("_bytes", "_entries", "_variants", "max_bytes")

    def __init__(self, *, max_bytes: int = 32 * 2**20) -> None:
        self.max_bytes = positive_bytes("MemoryCache", max_bytes)
        # (key, variant) -> response, least recently used first.
        self._entries: OrderedDict[tuple[str, str], StoredResponse] = OrderedDict()
        # key -> its variants, so a lookup does not scan every entry.
        self._variants: dict[str, set[str]] = {}
        self._bytes = 0

    @property
    def size(self) -> int:
        """Bytes currently charged (see `StoredResponse.size`)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> Sequence[StoredResponse]:
        variants = self._variants.get(key)
        if not variants:
            return ()
        found = []
        for variant in variants:
            slot = (key, variant)
            self._entries.move_to_end(slot)
            found.append(self._entries[slot])
        return found

    async def set(self, key: str, response: StoredResponse) -> None:
        slot = (key, response.variant)
        self._drop(slot)
        size = response.size
        if size > self.max_bytes:
            return
        while self._bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[slot] = response
        self._variants.setdefault(key, set()).add(slot[1])
        self._bytes += size

    async def delete(self, key: str) -> None:
        for variant in list(self._variants.get(key, ())):
            self._drop((key, variant))

    async def clear(self) -> None:
        self._entries.clear()
        self._variants.clear()
        self._bytes = 0

    async def aclose(self) -> None:
        # Nothing to release; entries stay, so a cache shared across clients keeps working.
        return None

    def _drop(self, slot: tuple[str, str]) -> None:
        response = self._entries.pop(slot, None)
        if response is None:
            return
        self._bytes -= response.size
        key, variant = slot
        variants = self._variants[key]
        variants.discard(variant)
        if not variants:
            del self._variants[key]

    def __repr__(self) -> str:
        return f"MemoryCache(max_bytes={self.max_bytes}, entries={len(self._entries)})"
