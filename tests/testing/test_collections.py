"""Built-in collections: CRUD, every pagination style, and the quirks that break paginators."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

import tether
from tests.testing.conftest import connect
from tether.testing import (
    CursorPages,
    FakeClock,
    LinkHeaderPages,
    MockAPI,
    NextUrlPages,
    OffsetPages,
    PageNumberPages,
    PageQuirks,
    Pagination,
)

ITEMS = [{"id": i, "name": f"item-{i}", "colour": "red" if i % 2 else "blue"} for i in range(1, 8)]


def _next_link(header: str | None) -> str | None:
    # RFC 8288: `<url>; rel="next"`, possibly among other links.
    for part in (header or "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params:
            return url.strip().strip("<>")
    return None


async def walk(client: tether.Client, style: Pagination, path: str = "/items") -> list[list[Any]]:
    """Every page a straightforward paginator for `style` would fetch, in order."""
    pages: list[list[Any]] = []
    if isinstance(style, CursorPages):
        params: dict[str, Any] = {}
        while True:
            body = (await client.get(path, params=params)).json()
            pages.append(body["data"])
            if not body["has_more"]:
                return pages
            params = {"cursor": body["next_cursor"]}
    if isinstance(style, OffsetPages):
        offset = 0
        while True:
            body = (await client.get(path, params={"offset": offset})).json()
            pages.append(body["data"])
            offset += body["limit"]
            if offset >= body["total"]:
                return pages
    if isinstance(style, PageNumberPages):
        page = 1
        while True:
            body = (await client.get(path, params={"page": page})).json()
            pages.append(body["data"])
            if page >= body["total_pages"]:
                return pages
            page += 1
    url: str | None = path
    while url is not None:
        response = await client.get(url)
        if isinstance(style, LinkHeaderPages):
            pages.append(response.json())
            url = _next_link(response.headers.get("Link"))
        else:
            body = response.json()
            pages.append(body["results"])
            url = body["next"]
    return pages


STYLES: list[Pagination] = [
    CursorPages(page_size=3),
    OffsetPages(page_size=3),
    PageNumberPages(page_size=3),
    LinkHeaderPages(page_size=3),
    NextUrlPages(page_size=3),
]


@pytest.mark.parametrize("style", STYLES, ids=lambda s: type(s).__name__)
async def test_every_style_walks_all_items_once(mode: str, style: Pagination) -> None:
    """Following each style's own next pointer visits every item exactly once."""
    api = MockAPI(clock=FakeClock())
    api.collection("/items", items=ITEMS, pagination=style)
    async with connect(api, mode) as client:
        pages = await walk(client, style)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [item["id"] for page in pages for item in page] == list(range(1, 8))


async def test_link_header_lists_next_prev_first_last() -> None:
    """A middle page of the Link style names next, prev, first and last (RFC 8288)."""
    api = MockAPI(clock=FakeClock())
    api.collection("/items", items=ITEMS, pagination=LinkHeaderPages(page_size=3))
    async with api.client() as client:
        response = await client.get("/items", params={"page": 2})
    links = response.headers["Link"]
    for rel, page in [("next", "3"), ("prev", "1"), ("first", "1"), ("last", "3")]:
        entry = next(p for p in links.split(",") if f'rel="{rel}"' in p)
        assert f"page={page}" in entry


async def test_next_url_is_absolute_and_keeps_the_host(mode: str) -> None:
    """The body's next URL points back at the same server, whichever way it runs."""
    api = MockAPI(clock=FakeClock())
    api.collection("/items", items=ITEMS, pagination=NextUrlPages(page_size=3))
    async with connect(api, mode) as client:
        response = await client.get("/items")
    next_url = response.json()["next"]
    assert urlsplit(next_url).netloc == urlsplit(response.url).netloc


async def test_empty_page_still_points_to_the_next_one() -> None:
    """An injected empty page has has_more and a cursor: stopping on empty loses items."""
    style = CursorPages(page_size=3)
    api = MockAPI(clock=FakeClock())
    api.collection("/items", items=ITEMS, pagination=style, quirks=PageQuirks(empty_pages=(1,)))
    async with api.client() as client:
        pages = await walk(client, style)
    assert [len(page) for page in pages] == [3, 0, 3, 1]
    assert [item["id"] for page in pages for item in page] == list(range(1, 8))


async def test_overlap_repeats_items_across_pages() -> None:
    """With overlap, each later page starts with the previous page's last item again."""
    style = PageNumberPages(page_size=3)
    api = MockAPI(clock=FakeClock())
    api.collection("/items", items=ITEMS, pagination=style, quirks=PageQuirks(overlap=1))
    async with api.client() as client:
        pages = await walk(client, style)
    ids = [item["id"] for page in pages for item in page]
    assert ids == [1, 2, 3, 3, 4, 5, 6, 6, 7]
    assert sorted(set(ids)) == list(range(1, 8))


async def test_cursor_expires_on_the_mocks_clock() -> None:
    """A cursor older than cursor_ttl is refused with cursor_expired; a fresh walk works."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.collection(
        "/items",
        items=ITEMS,
        pagination=CursorPages(page_size=3),
        quirks=PageQuirks(cursor_ttl=30, expired_status=410),
    )
    async with api.client(raise_for_status=False) as client:
        first = (await client.get("/items")).json()
        clock.advance(31)
        expired = await client.get("/items", params={"cursor": first["next_cursor"]})
        fresh = (await client.get("/items")).json()
        clock.advance(29)
        fine = await client.get("/items", params={"cursor": fresh["next_cursor"]})
    assert expired.status == 410
    assert expired.json()["error"] == "cursor_expired"
    assert fine.status == 200


async def test_forged_cursor_is_a_clear_400() -> None:
    """A cursor the mock did not issue gets 400 invalid_cursor, not a crash."""
    api = MockAPI(clock=FakeClock())
    api.collection("/items", items=ITEMS)
    async with api.client(raise_for_status=False) as client:
        response = await client.get("/items", params={"cursor": "not-a-cursor!"})
    assert response.status == 400
    assert response.json()["error"] == "invalid_cursor"


async def test_limit_is_capped_and_validated() -> None:
    """limit above max_page_size is capped; a non-number is a 400."""
    api = MockAPI(clock=FakeClock())
    api.collection("/items", items=ITEMS, pagination=CursorPages(page_size=2, max_page_size=4))
    async with api.client(raise_for_status=False) as client:
        capped = (await client.get("/items", params={"limit": 100})).json()
        bad = await client.get("/items", params={"limit": "many"})
    assert len(capped["data"]) == 4
    assert bad.status == 400


async def test_other_query_parameters_filter_items() -> None:
    """A query parameter named like an item field keeps only the items with that value."""
    api = MockAPI(clock=FakeClock())
    api.collection("/items", items=ITEMS, pagination=OffsetPages(page_size=10))
    async with api.client() as client:
        body = (await client.get("/items", params={"colour": "blue"})).json()
    assert [item["id"] for item in body["data"]] == [2, 4, 6]
    assert body["total"] == 3


async def test_crud_round_trip(mode: str) -> None:
    """POST creates with an id and Location, GET reads, PATCH merges, PUT replaces, DELETE
    removes; the collection's state is visible to the test."""
    api = MockAPI(clock=FakeClock())
    things = api.collection("/things", items=[{"id": 1, "name": "one"}])
    async with connect(api, mode) as client:
        created = await client.post("/things", json={"name": "two", "tags": {"a": 1, "b": 2}})
        assert created.status == 201
        assert created.headers["Location"] == "/things/2"
        assert created.json()["id"] == 2
        assert (await client.get("/things/2")).json()["name"] == "two"
        patched = await client.patch("/things/2", json={"name": "deux", "tags": {"b": None}})
        assert patched.json() == {"id": 2, "name": "deux", "tags": {"a": 1}}
        replaced = await client.put("/things/1", json={"label": "uno", "id": 99})
        assert replaced.json() == {"label": "uno", "id": 1}
        assert (await client.delete("/things/1")).status == 204
    assert things.items == [{"id": 2, "name": "deux", "tags": {"a": 1}}]


async def test_crud_errors_are_clear() -> None:
    """Missing items are 404, duplicate ids 409, bad bodies 400 or 422, odd methods 405."""
    api = MockAPI(clock=FakeClock())
    api.collection("/things", items=[{"id": "a"}])
    async with api.client(raise_for_status=False) as client:
        assert (await client.get("/things/zzz")).status == 404
        assert (await client.post("/things", json={"id": "a"})).status == 409
        assert (await client.post("/things", content=b"{nope")).status == 400
        assert (await client.post("/things", json=[1, 2])).status == 422
        assert (await client.put("/things", json={})).status == 405
        assert (await client.get("/things/a/deeper")).status == 404
    assert [u.request.path for u in api.unmatched] == ["/things/a/deeper"]


async def test_reset_restores_the_initial_items() -> None:
    """reset() puts the collection back as it was defined, id counter included."""
    api = MockAPI(clock=FakeClock())
    things = api.collection("/things", items=[{"id": 1}])
    async with api.client() as client:
        await client.post("/things", json={})
        api.reset()
        created = (await client.post("/things", json={})).json()
    assert created["id"] == 2
    assert [t["id"] for t in things.items] == [1, 2]


def test_collection_configuration_is_checked() -> None:
    """Items without ids, TTLs on styles without cursors and bad sizes are ConfigErrors."""
    api = MockAPI()
    with pytest.raises(tether.ConfigError, match="'id' field"):
        api.collection("/a", items=[{"name": "no id"}])
    with pytest.raises(tether.ConfigError, match="needs a cursor style"):
        api.collection("/b", pagination=OffsetPages(), quirks=PageQuirks(cursor_ttl=5))
    with pytest.raises(tether.ConfigError, match="page_size"):
        api.collection("/c", pagination=CursorPages(page_size=0))
    with pytest.raises(tether.ConfigError, match="4xx"):
        PageQuirks(expired_status=500)
