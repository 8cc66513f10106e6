"""Resource collections for the mock API, paginated the ways real APIs paginate.

Styles: a cursor with `has_more` (Stripe), offset/limit, page numbers, an RFC 8288 `Link`
header with rel="next" (GitHub), and a next URL in the body (Django REST framework). Each can
be given the quirks that break naive paginators: an empty page that still points to a next one,
items repeated across pages, and cursors that expire mid-walk.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json as jsonlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tether._errors import ConfigError
from tether.testing._faults import check_count
from tether.testing._reply import Reply

if TYPE_CHECKING:
    from tether.testing._match import MockRequest
    from tether.testing._mockapi import MockAPI

__all__ = [
    "Collection",
    "CursorPages",
    "LinkHeaderPages",
    "NextUrlPages",
    "OffsetPages",
    "PageNumberPages",
    "PageQuirks",
    "Pagination",
]


def _count(name: str, value: object, *, minimum: int = 1) -> None:
    check_count(name, value, minimum=minimum)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageQuirks:
    """Edge cases a paginator must survive.

    Args:
        empty_pages: Positions in the walk (0 is the first page) that come back empty yet
            still point to a next page.
        overlap: Each page after the first starts with the previous page's last `overlap`
            items again, as APIs do when items are inserted during a walk.
        cursor_ttl: Seconds (on the mock's clock) after which a cursor is refused.
        expired_status: The status of that refusal (400 by default; some APIs use 410).
    """

    empty_pages: tuple[int, ...] = ()
    overlap: int = 0
    cursor_ttl: float | None = None
    expired_status: int = 400

    def __post_init__(self) -> None:
        object.__setattr__(self, "empty_pages", tuple(self.empty_pages))
        for position in self.empty_pages:
            _count("PageQuirks.empty_pages entries", position, minimum=0)
        _count("PageQuirks.overlap", self.overlap, minimum=0)
        ttl: object = self.cursor_ttl
        if ttl is not None and (
            isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0
        ):
            raise ConfigError(f"PageQuirks.cursor_ttl must be > 0, got {self.cursor_ttl!r}")
        if not 400 <= self.expired_status <= 499:
            raise ConfigError("PageQuirks.expired_status must be a 4xx status")


@dataclass(frozen=True, slots=True, kw_only=True)
class CursorPages:
    """`?cursor=...&limit=n` -> `{"data": [...], "has_more": true, "next_cursor": "..."}`."""

    page_size: int = 10
    max_page_size: int = 100
    cursor_param: str = "cursor"
    limit_param: str = "limit"
    items_field: str = "data"
    cursor_field: str = "next_cursor"
    has_more_field: str = "has_more"

    uses_cursor = True


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetPages:
    """`?offset=20&limit=10` -> `{"data": [...], "total": 95, "offset": 20, "limit": 10}`."""

    page_size: int = 10
    max_page_size: int = 100
    offset_param: str = "offset"
    limit_param: str = "limit"
    items_field: str = "data"
    total_field: str = "total"

    uses_cursor = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PageNumberPages:
    """`?page=2&per_page=10` -> `{"data": [...], "page": 2, "total_pages": 10, ...}`."""

    page_size: int = 10
    max_page_size: int = 100
    page_param: str = "page"
    size_param: str = "per_page"
    first_page: int = 1
    items_field: str = "data"
    total_pages_field: str = "total_pages"

    uses_cursor = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkHeaderPages:
    """A bare JSON array, with `Link: <...?page=3>; rel="next"` (RFC 8288) while more remain."""

    page_size: int = 10
    max_page_size: int = 100
    page_param: str = "page"
    size_param: str = "per_page"
    first_page: int = 1

    uses_cursor = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NextUrlPages:
    """`{"results": [...], "next": "http://host/items?cursor=..."}`; `next` is null at the end."""

    page_size: int = 10
    max_page_size: int = 100
    cursor_param: str = "cursor"
    size_param: str = "page_size"
    items_field: str = "results"
    next_field: str = "next"

    uses_cursor = True


Pagination = CursorPages | OffsetPages | PageNumberPages | LinkHeaderPages | NextUrlPages


def _layout(data_pages: int, empty: frozenset[int]) -> list[int | None]:
    """The walk: each position holds a data page index, or None for an injected empty page."""
    layout: list[int | None] = []
    page = 0
    while page < data_pages:
        if len(layout) in empty:
            layout.append(None)
        else:
            layout.append(page)
            page += 1
    return layout


def _error(status: int, code: str, detail: str) -> Reply:
    return Reply(status, json={"error": code, "detail": detail})


class _BadRequest(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply)
        self.reply = reply


class Collection:
    """Items at `path`, served with CRUD and pagination; reset restores the initial items."""

    def __init__(
        self,
        api: MockAPI,
        path: str,
        *,
        items: Iterable[Mapping[str, Any]],
        id_field: str,
        pagination: Pagination | None,
        quirks: PageQuirks | None,
        name: str,
    ) -> None:
        if not path.startswith("/"):
            raise ConfigError(f"a collection path must start with '/', got {path!r}")
        self.name = name
        self.path = path.rstrip("/") or "/"
        self.id_field = id_field
        self.pagination: Pagination = pagination or CursorPages()
        self.quirks = quirks or PageQuirks()
        _count("page_size", self.pagination.page_size)
        _count("max_page_size", self.pagination.max_page_size)
        if self.quirks.cursor_ttl is not None and not self.pagination.uses_cursor:
            raise ConfigError(
                f"cursor_ttl needs a cursor style; {type(self.pagination).__name__} has none"
            )
        self._api = api
        self._initial = [dict(item) for item in items]
        for item in self._initial:
            if id_field not in item:
                raise ConfigError(f"every initial item needs its {id_field!r} field: {item!r}")
        self._items: list[dict[str, Any]] = []
        self._next_id = 1
        self.reset()

    # -- direct access ------------------------------------------------------------------------

    @property
    def items(self) -> list[dict[str, Any]]:
        """A copy of the current items, in order."""
        return copy.deepcopy(self._items)

    def get(self, item_id: object) -> dict[str, Any] | None:
        found = self._find(str(item_id))
        return None if found is None else copy.deepcopy(self._items[found])

    def add(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """Insert an item as if POSTed, and return it with its id."""
        return copy.deepcopy(self._create(dict(item)))

    def reset(self) -> None:
        self._items = copy.deepcopy(self._initial)
        numeric = [i[self.id_field] for i in self._items if isinstance(i[self.id_field], int)]
        self._next_id = max(numeric, default=0) + 1

    def _find(self, item_id: str) -> int | None:
        for index, item in enumerate(self._items):
            if str(item.get(self.id_field)) == item_id:
                return index
        return None

    def _create(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.id_field in item:
            if self._find(str(item[self.id_field])) is not None:
                raise _BadRequest(
                    _error(409, "conflict", f"{self.id_field} {item[self.id_field]!r} exists")
                )
        else:
            item[self.id_field] = self._next_id
        if isinstance(item[self.id_field], int):
            self._next_id = max(self._next_id, item[self.id_field] + 1)
        self._items.append(item)
        return item

    # -- HTTP ---------------------------------------------------------------------------------

    async def respond(self, request: MockRequest) -> Reply | None:
        path = request.path.rstrip("/") or "/"
        try:
            if path == self.path:
                if request.method in ("GET", "HEAD"):
                    return self._list(request)
                if request.method == "POST":
                    item = self._create(self._object_body(request))
                    location = f"{self.path}/{item[self.id_field]}"
                    return Reply(201, json=item, headers={"Location": location})
                return _error(405, "method_not_allowed", f"{request.method} {self.path}")
            prefix = self.path.rstrip("/") + "/"
            if not path.startswith(prefix) or "/" in path[len(prefix) :]:
                return None
            return self._one(request, path[len(prefix) :])
        except _BadRequest as bad:
            return bad.reply

    def _object_body(self, request: MockRequest) -> dict[str, Any]:
        try:
            value = request.json()
        except ValueError:
            raise _BadRequest(_error(400, "invalid_json", "the body is not JSON")) from None
        if not isinstance(value, dict):
            raise _BadRequest(_error(422, "invalid_body", "the body must be a JSON object"))
        return value

    def _one(self, request: MockRequest, item_id: str) -> Reply:
        index = self._find(item_id)
        if index is None:
            return _error(404, "not_found", f"no item {item_id!r} in {self.path}")
        item = self._items[index]
        method = request.method
        if method in ("GET", "HEAD"):
            return Reply(json=item)
        if method == "DELETE":
            del self._items[index]
            return Reply(204)
        if method == "PUT":
            replacement = self._object_body(request)
            replacement[self.id_field] = item[self.id_field]
            self._items[index] = replacement
            return Reply(json=replacement)
        if method == "PATCH":
            patched = _merge_patch(item, self._object_body(request))
            patched[self.id_field] = item[self.id_field]
            self._items[index] = patched
            return Reply(json=patched)
        return _error(405, "method_not_allowed", f"{method} {self.path}/{{id}}")

    def _list(self, request: MockRequest) -> Reply:
        style = self.pagination
        reserved = {
            getattr(style, attr)
            for attr in ("cursor_param", "limit_param", "offset_param", "page_param", "size_param")
            if hasattr(style, attr)
        }
        items = [
            item
            for item in self._items
            if all(
                str(item.get(name)) == value
                for name, value in request.query.items()
                if name not in reserved and name in item
            )
        ]
        if isinstance(style, OffsetPages):
            return self._offset_page(request, style, items)
        if isinstance(style, CursorPages | NextUrlPages):
            return self._cursor_page(request, style, items)
        return self._numbered_page(request, style, items)

    def _size(self, request: MockRequest, param: str, default: int, maximum: int) -> int:
        raw = request.query.get(param)
        if raw is None:
            return default
        try:
            size = int(raw)
        except ValueError:
            raise _BadRequest(
                _error(400, "invalid_parameter", f"{param} must be an integer")
            ) from None
        if size < 1:
            raise _BadRequest(_error(400, "invalid_parameter", f"{param} must be >= 1"))
        return min(size, maximum)

    def _slice(self, items: list[dict[str, Any]], page: int, size: int) -> list[dict[str, Any]]:
        start = page * size - (self.quirks.overlap if page > 0 else 0)
        return copy.deepcopy(items[max(0, start) : (page + 1) * size])

    def _walk(self, count: int, size: int) -> list[int | None]:
        return _layout(max(1, math.ceil(count / size)), frozenset(self.quirks.empty_pages))

    def _offset_page(
        self, request: MockRequest, style: OffsetPages, items: list[dict[str, Any]]
    ) -> Reply:
        limit = self._size(request, style.limit_param, style.page_size, style.max_page_size)
        raw = request.query.get(style.offset_param, "0")
        try:
            offset = int(raw)
        except ValueError:
            raise _BadRequest(
                _error(400, "invalid_parameter", f"{style.offset_param} must be an integer")
            ) from None
        if offset < 0:
            raise _BadRequest(_error(400, "invalid_parameter", f"{style.offset_param} < 0"))
        if offset // limit in self.quirks.empty_pages:
            page: list[dict[str, Any]] = []
        else:
            start = offset - self.quirks.overlap if offset > 0 else 0
            page = copy.deepcopy(items[max(0, start) : offset + limit])
        return Reply(
            json={
                style.items_field: page,
                style.total_field: len(items),
                style.offset_param: offset,
                style.limit_param: limit,
            }
        )

    # Cursors are opaque to clients but plain to us: base64url JSON of the walk position, the
    # page size and the issue time, so expiry needs no server-side table.
    def _encode(self, position: int, size: int) -> str:
        raw = jsonlib.dumps({"p": position, "s": size, "t": self._api.clock.monotonic()})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _decode(self, cursor: str) -> tuple[int, int]:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            data = jsonlib.loads(base64.urlsafe_b64decode(padded.encode()))
            position, size, issued = int(data["p"]), int(data["s"]), float(data["t"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise _BadRequest(_error(400, "invalid_cursor", "the cursor is not valid")) from None
        ttl = self.quirks.cursor_ttl
        if ttl is not None and self._api.clock.monotonic() - issued > ttl:
            raise _BadRequest(
                _error(
                    self.quirks.expired_status,
                    "cursor_expired",
                    f"the cursor expired; cursors live {ttl:g} s",
                )
            )
        if position < 0 or size < 1:
            raise _BadRequest(_error(400, "invalid_cursor", "the cursor is not valid"))
        return position, size

    def _cursor_page(
        self, request: MockRequest, style: CursorPages | NextUrlPages, items: list[dict[str, Any]]
    ) -> Reply:
        size_param = style.limit_param if isinstance(style, CursorPages) else style.size_param
        cursor = request.query.get(style.cursor_param)
        if cursor:
            position, size = self._decode(cursor)
            size = self._size(request, size_param, size, style.max_page_size)
        else:
            position = 0
            size = self._size(request, size_param, style.page_size, style.max_page_size)
        walk = self._walk(len(items), size)
        page_index = walk[position] if position < len(walk) else None
        page = [] if page_index is None else self._slice(items, page_index, size)
        more = position + 1 < len(walk)
        next_cursor = self._encode(position + 1, size) if more else None
        if isinstance(style, CursorPages):
            return Reply(
                json={
                    style.items_field: page,
                    style.has_more_field: more,
                    style.cursor_field: next_cursor,
                }
            )
        next_url = (
            _with_query(request.url, {style.cursor_param: next_cursor, size_param: str(size)})
            if next_cursor is not None
            else None
        )
        return Reply(json={style.items_field: page, style.next_field: next_url})

    def _numbered_page(
        self,
        request: MockRequest,
        style: PageNumberPages | LinkHeaderPages,
        items: list[dict[str, Any]],
    ) -> Reply:
        size = self._size(request, style.size_param, style.page_size, style.max_page_size)
        raw = request.query.get(style.page_param, str(style.first_page))
        try:
            number = int(raw)
        except ValueError:
            raise _BadRequest(
                _error(400, "invalid_parameter", f"{style.page_param} must be an integer")
            ) from None
        position = number - style.first_page
        if position < 0:
            raise _BadRequest(_error(400, "invalid_parameter", f"{style.page_param} too small"))
        walk = self._walk(len(items), size)
        page_index = walk[position] if position < len(walk) else None
        page = [] if page_index is None else self._slice(items, page_index, size)
        if isinstance(style, PageNumberPages):
            return Reply(
                json={
                    style.items_field: page,
                    style.page_param: number,
                    style.size_param: size,
                    style.total_pages_field: len(walk),
                    "total": len(items),
                }
            )
        links = []

        def link(target: int, rel: str) -> str:
            url = _with_query(
                request.url, {style.page_param: str(target), style.size_param: str(size)}
            )
            return f'<{url}>; rel="{rel}"'

        if position + 1 < len(walk):
            links.append(link(number + 1, "next"))
        if position > 0:
            links.append(link(number - 1, "prev"))
        links.append(link(style.first_page, "first"))
        links.append(link(style.first_page + len(walk) - 1, "last"))
        return Reply(json=page, headers={"Link": ", ".join(links)})

    def __repr__(self) -> str:
        return f"<Collection {self.path} items={len(self._items)} {type(self.pagination).__name__}>"


def _with_query(url: str, changes: Mapping[str, str | None]) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in changes]
    query.extend((k, v) for k, v in changes.items() if v is not None)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge recursively, null removes a member."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result
