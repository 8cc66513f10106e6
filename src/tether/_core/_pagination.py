"""Pagination decisions: where things are in a page, and when to stop.

Stop rules run in a fixed order, so a misbehaving API cannot make a loop endless:
max pages or items, `has_more` false, an empty page, the advertised total reached, a cursor
seen before, a page seen before (by the fingerprint of its item ids).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["MISSING", "StopReason", "StopRules", "fingerprint", "get_path", "item_key"]


class _Missing(enum.Enum):
    token = 0

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing.token


def get_path(document: Any, path: str | None) -> Any:
    """The value at a dotted path (`"response_metadata.next_cursor"`, `"data.0.id"`), or
    MISSING. An empty path or None is the document itself."""
    if not path:
        return document
    current = document
    for part in path.split("."):
        if isinstance(current, dict):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def item_key(item: Any, id_field: str | None) -> str:
    """A stable identity for an item: its id field when it has one, else a hash of its JSON."""
    if id_field and isinstance(item, dict) and item.get(id_field) is not None:
        return f"id:{item[id_field]}"
    encoded = json.dumps(item, sort_keys=True, default=str, separators=(",", ":")).encode()
    return "sha:" + hashlib.blake2b(encoded, digest_size=12).hexdigest()


def fingerprint(items: Sequence[Any], id_field: str | None) -> str:
    """One value for a whole page: equal for pages with the same items in the same order."""
    digest = hashlib.blake2b(digest_size=16)
    for item in items:
        digest.update(item_key(item, id_field).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


class StopReason(enum.StrEnum):
    MAX_PAGES = "max_pages reached"
    MAX_ITEMS = "max_items reached"
    NO_MORE = "the server said there is no more"
    EMPTY_PAGE = "empty page"
    TOTAL_REACHED = "the advertised total was reached"
    REPEATED_CURSOR = "the server sent a cursor it had sent before"
    REPEATED_PAGE = "the server sent a page it had sent before"
    NO_NEXT = "no next page"


class StopRules:
    """Tracks what has been seen and says when to stop, in the documented order."""

    __slots__ = ("_cursors", "_pages", "id_field", "items", "max_items", "max_pages", "pages")

    def __init__(
        self, *, max_pages: int | None, max_items: int | None, id_field: str | None
    ) -> None:
        self.max_pages = max_pages
        self.max_items = max_items
        self.id_field = id_field
        self.pages = 0
        self.items = 0
        self._cursors: set[str] = set()
        self._pages: set[str] = set()

    def repeated_page(self, items: Sequence[Any]) -> bool:
        """Whether this page was seen before (checked before its items are handed out)."""
        if not items:
            return False
        mark = fingerprint(items, self.id_field)
        if mark in self._pages:
            return True
        self._pages.add(mark)
        return False

    def take(self, count: int) -> int:
        """Count a page of `count` items; returns how many of them may be handed out."""
        self.pages += 1
        allowed = count
        if self.max_items is not None:
            allowed = max(0, min(count, self.max_items - self.items))
        self.items += allowed
        return allowed

    def after_page(
        self,
        *,
        count: int,
        has_more: bool | None,
        total: int | None,
        cursor: str | None,
    ) -> StopReason | None:
        """Whether to stop after the page just handed out, and why."""
        if self.max_pages is not None and self.pages >= self.max_pages:
            return StopReason.MAX_PAGES
        if self.max_items is not None and self.items >= self.max_items:
            return StopReason.MAX_ITEMS
        if has_more is False:
            return StopReason.NO_MORE
        # An empty page ends the walk unless the server says outright there is more: some
        # APIs (filtered scans) legitimately return empty pages with a cursor.
        if count == 0 and has_more is not True:
            return StopReason.EMPTY_PAGE
        if total is not None and self.items >= total:
            return StopReason.TOTAL_REACHED
        if cursor is not None:
            if cursor in self._cursors:
                return StopReason.REPEATED_CURSOR
            self._cursors.add(cursor)
        return None
