"""A bounded window of recently seen message ids, for at-least-once streams. Pure."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

__all__ = ["DedupeWindow"]


class DedupeWindow:
    """Remembers the last `size` keys; a key seen again inside the window is a duplicate.

    Bounded on purpose: a stream runs for weeks, so an exact "seen ever" set would grow without
    limit. A duplicate older than the window is not caught, which is why the window should be
    larger than what a server replays after a reconnect.
    """

    __slots__ = ("_order", "_seen", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a dedupe window holds at least one key")
        self.size = size
        self._seen: set[Hashable] = set()
        self._order: deque[Hashable] = deque()

    def seen(self, key: Hashable) -> bool:
        """Whether `key` is a duplicate; if not, it is remembered (evicting the oldest)."""
        if key in self._seen:
            return True
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self.size:
            self._seen.discard(self._order.popleft())
        return False

    def __len__(self) -> int:
        return len(self._order)
