"""Paginators: how to ask an API for the next page, and when to stop asking.

```python
async for item in client.paginate("/items", paginator=tether.pagination.Cursor("next_cursor")):
    ...
```

Every paginator names where the items are (`items=`, a dotted path into the JSON body) and
how to request the next page. The walk stops, in this order, at `max_pages` / `max_items`,
when the server says there is no more, at an empty page, when the advertised total is reached,
or when the server repeats a cursor or a whole page: a misbehaving API cannot loop forever.
While the items of one page are consumed, the next page is already being fetched.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar
from urllib.parse import urljoin

from pydantic import TypeAdapter, ValidationError

from tether._core._pagination import MISSING, StopReason, StopRules, get_path, item_key
from tether._errors import ConfigError, ResponseValidationError
from tether._models import Response
from tether._types import type_name

if TYPE_CHECKING:
    from tether._client import Client

__all__ = [
    "Cursor",
    "LinkHeader",
    "NextURL",
    "Offset",
    "Page",
    "PageNumber",
    "PageRequest",
    "Paginated",
    "Paginator",
    "StopReason",
]

logger = logging.getLogger("tether")

T = TypeVar("T")

Location = Literal["query", "header", "json"]


@dataclass(frozen=True, slots=True)
class PageRequest:
    """What to change in the request to get a page: parameters, headers, JSON body fields,
    or a whole next URL (which then replaces the URL and the query)."""

    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Mapping[str, Any] = field(default_factory=dict)
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Next:
    """A paginator's reading of a page."""

    request: PageRequest | None
    has_more: bool | None = None
    total: int | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page: its items (validated when a model was given) and the response it came in."""

    number: int
    items: list[T]
    response: Response


def _text(value: Any) -> str | None:
    if value is MISSING or value is None or value == "":
        return None
    return str(value)


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is MISSING:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _place(location: Location, name: str, value: Any) -> PageRequest:
    if location == "query":
        return PageRequest(params={name: str(value)})
    if location == "header":
        return PageRequest(headers={name: str(value)})
    return PageRequest(json={name: value})


class Paginator(abc.ABC):
    """Base of the paginators; subclass it for an API with its own scheme.

    Args:
        items: Dotted path to the list of items in the JSON body; None when the body is the
            list itself.
        id_field: The item field that identifies an item, for spotting repeated pages and for
            `dedupe=True`.
    """

    def __init__(self, *, items: str | None, id_field: str | None = "id") -> None:
        self.items = items
        self.id_field = id_field

    def first(self) -> PageRequest:
        """What the first request adds (a page size, a starting page number)."""
        return PageRequest()

    @abc.abstractmethod
    def follow(self, body: Any, items: list[Any], response: Response, sent: PageRequest) -> Next:
        """Read a page: how to request the next one, and what the page said about the rest."""


class Cursor(Paginator):
    """A cursor from the body (`next_cursor`, Slack's `response_metadata.next_cursor`) or the
    last item's id (Stripe's `starting_after`), sent back as a query parameter, a header or a
    JSON body field.

    Args:
        cursor: Dotted path to the next cursor; None to take it from the last item.
        param: Where the cursor goes in the next request.
        has_more: Dotted path to a boolean "more pages" flag, if the API has one.
        from_last_item: Item field whose value, on the last item, is the next cursor.
        location: "query", "header" or "json".
        page_size, size_param: Ask for this many items per page.
    """

    def __init__(
        self,
        cursor: str | None = "next_cursor",
        *,
        param: str = "cursor",
        has_more: str | None = None,
        from_last_item: str | None = None,
        location: Location = "query",
        page_size: int | None = None,
        size_param: str = "limit",
        items: str | None = "data",
        id_field: str | None = "id",
    ) -> None:
        super().__init__(items=items, id_field=id_field)
        if cursor is None and from_last_item is None:
            raise ConfigError("Cursor needs cursor= (a path in the body) or from_last_item=")
        if location not in ("query", "header", "json"):
            raise ConfigError(f"location must be 'query', 'header' or 'json', got {location!r}")
        self.cursor = cursor
        self.param = param
        self.has_more = has_more
        self.from_last_item = from_last_item
        self.location = location
        self.page_size = page_size
        self.size_param = size_param

    def first(self) -> PageRequest:
        if self.page_size is None:
            return PageRequest()
        return _place(self.location, self.size_param, self.page_size)

    def follow(self, body: Any, items: list[Any], response: Response, sent: PageRequest) -> Next:
        has_more = _flag(get_path(body, self.has_more)) if self.has_more else None
        if self.cursor is not None:
            raw = get_path(body, self.cursor)
        else:
            last = items[-1] if items else None
            raw = last.get(self.from_last_item, MISSING) if isinstance(last, dict) else MISSING
        cursor = _text(raw)
        if cursor is None:
            return Next(None, has_more=has_more)
        # In a JSON body the cursor goes back as the server wrote it (a number stays a number).
        request = _place(self.location, self.param, raw if self.location == "json" else cursor)
        if self.page_size is not None:
            size = _place(self.location, self.size_param, self.page_size)
            request = PageRequest(
                params={**size.params, **request.params},
                headers={**size.headers, **request.headers},
                json={**size.json, **request.json},
            )
        return Next(request, has_more=has_more, cursor=cursor)


class Offset(Paginator):
    """`?offset=200&limit=100`: the offset advances by the items received.

    A page shorter than `limit` does not end the walk (many APIs cap the page size below what
    was asked); an empty page or the advertised `total` does.
    """

    def __init__(
        self,
        *,
        limit: int = 100,
        offset_param: str = "offset",
        limit_param: str = "limit",
        total: str | None = None,
        start: int = 0,
        items: str | None = "data",
        id_field: str | None = "id",
    ) -> None:
        super().__init__(items=items, id_field=id_field)
        if limit < 1:
            raise ConfigError("Offset limit must be at least 1")
        self.limit = limit
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.total = total
        self.start = start

    def first(self) -> PageRequest:
        return PageRequest(
            params={self.offset_param: str(self.start), self.limit_param: str(self.limit)}
        )

    def follow(self, body: Any, items: list[Any], response: Response, sent: PageRequest) -> Next:
        offset = int(sent.params.get(self.offset_param, self.start)) + len(items)
        total = _int(get_path(body, self.total)) if self.total else None
        request = PageRequest(
            params={self.offset_param: str(offset), self.limit_param: str(self.limit)}
        )
        return Next(request, total=total)


class PageNumber(Paginator):
    """`?page=3&per_page=50`, optionally with a total page count in the body."""

    def __init__(
        self,
        *,
        param: str = "page",
        start: int = 1,
        size: int | None = None,
        size_param: str = "per_page",
        total_pages: str | None = None,
        total: str | None = None,
        items: str | None = "data",
        id_field: str | None = "id",
    ) -> None:
        super().__init__(items=items, id_field=id_field)
        self.param = param
        self.start = start
        self.size = size
        self.size_param = size_param
        self.total_pages = total_pages
        self.total = total

    def _request(self, number: int) -> PageRequest:
        params = {self.param: str(number)}
        if self.size is not None:
            params[self.size_param] = str(self.size)
        return PageRequest(params=params)

    def first(self) -> PageRequest:
        return self._request(self.start)

    def follow(self, body: Any, items: list[Any], response: Response, sent: PageRequest) -> Next:
        number = int(sent.params.get(self.param, self.start))
        has_more = None
        if self.total_pages:
            pages = _int(get_path(body, self.total_pages))
            if pages is not None:
                has_more = number - self.start + 1 < pages
        total = _int(get_path(body, self.total)) if self.total else None
        return Next(self._request(number + 1), has_more=has_more, total=total)


# RFC 8288 §3: Link: <uri-reference>; param=value; rel="next", possibly several links.
_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_REL = re.compile(r"""rel\s*=\s*(?:"([^"]*)"|([^\s;,"]+))""", re.IGNORECASE)


def next_link(value: str) -> str | None:
    """The target of the `rel="next"` link in a Link header value (RFC 8288), if any."""
    for match in _LINK.finditer(value):
        rel = _REL.search(match.group(2) or "")
        if rel is None:
            continue
        relations = (rel.group(1) or rel.group(2) or "").lower().split()
        if "next" in relations:
            return match.group(1).strip()
    return None


class LinkHeader(Paginator):
    """The next page's URL in the `Link` header (RFC 8288 `rel="next"`), as GitHub sends it."""

    def __init__(self, *, items: str | None = None, id_field: str | None = "id") -> None:
        super().__init__(items=items, id_field=id_field)

    def follow(self, body: Any, items: list[Any], response: Response, sent: PageRequest) -> Next:
        links = ",".join(response.headers.getall("link", []))
        target = next_link(links) if links else None
        if target is None:
            return Next(None, has_more=False)
        url = urljoin(response.url, target)
        return Next(PageRequest(url=url), cursor=url)


class NextURL(Paginator):
    """The next page's URL in the body (`"next": "https://..."`), as Django REST framework and
    many others send it."""

    def __init__(
        self, next: str = "next", *, items: str | None = "results", id_field: str | None = "id"
    ) -> None:
        super().__init__(items=items, id_field=id_field)
        self.next = next

    def follow(self, body: Any, items: list[Any], response: Response, sent: PageRequest) -> Next:
        target = _text(get_path(body, self.next))
        if target is None:
            return Next(None, has_more=False)
        url = urljoin(response.url, target)
        return Next(PageRequest(url=url), cursor=url)


class Paginated(Generic[T]):
    """An async iterator over the items of every page; `.pages()` iterates pages instead.

    After the walk, `stop_reason`, `pages` and `items` say how it ended.
    """

    def __init__(
        self,
        client: Client,
        method: str,
        url: str,
        *,
        paginator: Paginator,
        model: Any = None,
        max_pages: int | None = None,
        max_items: int | None = None,
        dedupe: bool = False,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(paginator, Paginator):
            raise ConfigError(f"paginator must be a tether.pagination.Paginator, got {paginator!r}")
        for name, value in (("max_pages", max_pages), ("max_items", max_items)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value!r}")
        self._client = client
        self._method = method
        self._url = url
        self._paginator = paginator
        self._adapter: TypeAdapter[Any] | None = TypeAdapter(model) if model is not None else None
        self._model = model
        self._max_pages = max_pages
        self._max_items = max_items
        self._dedupe = dedupe
        self._params = dict(params or {})
        self._headers = dict(headers or {})
        self._json = dict(json) if json is not None else None
        self._options = dict(options or {})
        self.stop_reason: StopReason | None = None
        self.pages_seen = 0
        self.items_seen = 0

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def _items(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item

    async def _fetch(self, step: PageRequest) -> Response:
        if step.url is not None:
            url, params = step.url, None
        else:
            url, params = self._url, {**self._params, **step.params}
        body = {**(self._json or {}), **step.json} if self._json is not None or step.json else None
        return await self._client.request(
            self._method,
            url,
            params=params,
            headers={**self._headers, **step.headers} or None,
            json=body,
            **self._options,
        )

    def _validate(self, raw: list[Any], number: int, response: Response) -> list[Any]:
        adapter = self._adapter
        if adapter is None:
            return raw
        try:
            return [adapter.validate_python(item) for item in raw]
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(map(str, first["loc"])) or "<item>"
            raise ResponseValidationError(
                f"page {number}: an item did not match {type_name(self._model)} at {where}: "
                f"{first['msg']}",
                response=response,
            ) from None

    async def pages(self) -> AsyncIterator[Page[T]]:
        """Each page in turn; the next one is fetched while this one is being consumed."""
        paginator = self._paginator
        rules = StopRules(
            max_pages=self._max_pages, max_items=self._max_items, id_field=paginator.id_field
        )
        seen_items: set[str] = set()
        step = paginator.first()
        pending: asyncio.Future[Response] | None = asyncio.ensure_future(self._fetch(step))
        number = 0
        try:
            while pending is not None:
                response = await pending
                pending = None
                number += 1
                try:
                    # 204 No Content is how some APIs (Zoho CRM) say "no records": an empty page.
                    body = {} if response.status == 204 or not response.content else response.json()
                except ValueError:
                    raise ResponseValidationError(
                        f"page {number} is not JSON", response=response
                    ) from None
                raw = get_path(body, paginator.items)
                if body == {} and raw is MISSING:
                    raw = []
                if not isinstance(raw, list):
                    where = paginator.items or "the body"
                    raise ResponseValidationError(
                        f"page {number}: {where} is not a list of items", response=response
                    )
                if rules.repeated_page(raw):
                    self._stop(StopReason.REPEATED_PAGE, number)
                    return
                following = paginator.follow(body, raw, response, step)
                allowed = rules.take(len(raw))
                reason = rules.after_page(
                    count=len(raw),
                    has_more=following.has_more,
                    total=following.total,
                    cursor=following.cursor,
                )
                if reason is None and following.request is None:
                    reason = StopReason.NO_NEXT
                if reason is None and following.request is not None:
                    step = following.request
                    # Ask for the next page now; the caller works through this one meanwhile.
                    pending = asyncio.ensure_future(self._fetch(step))
                items = self._validate(raw[:allowed], number, response)
                if self._dedupe:
                    items = self._unseen(items, raw[:allowed], seen_items)
                self.pages_seen, self.items_seen = rules.pages, rules.items
                yield Page(number=number, items=items, response=response)
                if reason is not None:
                    self._stop(reason, number)
                    return
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending

    def _unseen(self, items: list[Any], raw: list[Any], seen: set[str]) -> list[Any]:
        kept = []
        for item, original in zip(items, raw, strict=True):
            key = item_key(original, self._paginator.id_field)
            if key not in seen:
                seen.add(key)
                kept.append(item)
        return kept

    def _stop(self, reason: StopReason, number: int) -> None:
        self.stop_reason = reason
        if reason in (StopReason.REPEATED_CURSOR, StopReason.REPEATED_PAGE):
            logger.warning("pagination of %s stopped after page %d: %s", self._url, number, reason)


class SyncPaginated(Generic[T]):
    """The blocking twin of `Paginated`, driven on the `SyncClient`'s loop thread."""

    def __init__(self, paginated: Paginated[T], run: Any) -> None:
        self._paginated = paginated
        self._run = run

    @property
    def stop_reason(self) -> StopReason | None:
        return self._paginated.stop_reason

    def _drive(self, iterator: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._run(iterator.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                self._run(closer())

    def __iter__(self) -> Iterator[T]:
        return self._drive(self._paginated.__aiter__())

    def pages(self) -> Iterator[Page[T]]:
        return self._drive(self._paginated.pages())
