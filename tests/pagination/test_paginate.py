"""Pagination against a real loopback API: every style, every stop rule, prefetch, models."""

from __future__ import annotations

import asyncio
import logging

import pydantic
import pytest
from aiohttp import web

import tether
from tests.conftest import LoopbackServer, ThreadServerFactory
from tether.pagination import Cursor, LinkHeader, NextURL, Offset, PageNumber, StopReason
from tether.testing import no_wait

ITEMS = [{"id": n, "name": f"item {n}"} for n in range(1, 8)]  # 7 items


def chunk(start: int, size: int = 3) -> list[dict[str, object]]:
    return ITEMS[start : start + size]


async def collect(paginated: tether.pagination.Paginated[object]) -> list[object]:
    return [item async for item in paginated]


def ids(items: list[object]) -> list[object]:
    return [item["id"] if isinstance(item, dict) else item.id for item in items]  # type: ignore[attr-defined]


class TestStyles:
    async def test_cursor_in_body(self, server: LoopbackServer) -> None:
        """A body cursor is sent back as ?cursor= until the server stops sending one."""

        async def handler(request: web.Request) -> web.Response:
            start = int(request.query.get("cursor", "0"))
            following = start + 3 if start + 3 < len(ITEMS) else None
            return web.json_response({"data": chunk(start), "next_cursor": following})

        server.route("GET", "/items", handler)
        async with tether.Client(server.url) as client:
            paginated = client.paginate("/items", paginator=Cursor("next_cursor"))
            items = await collect(paginated)
        assert ids(items) == [1, 2, 3, 4, 5, 6, 7]
        assert [s.query.get("cursor") for s in server.seen] == [None, "3", "6"]
        assert paginated.stop_reason is StopReason.NO_NEXT

    async def test_slack_style_nested_cursor(self, server: LoopbackServer) -> None:
        """Slack's response_metadata.next_cursor; an empty string ends the walk."""

        async def handler(request: web.Request) -> web.Response:
            start = int(request.query.get("cursor", "0"))
            following = str(start + 3) if start + 3 < len(ITEMS) else ""
            return web.json_response(
                {"members": chunk(start), "response_metadata": {"next_cursor": following}}
            )

        server.route("GET", "/users.list", handler)
        paginator = Cursor("response_metadata.next_cursor", items="members", page_size=3)
        async with tether.Client(server.url) as client:
            items = await collect(client.paginate("/users.list", paginator=paginator))
        assert ids(items) == [1, 2, 3, 4, 5, 6, 7]
        assert all(s.query["limit"] == "3" for s in server.seen)

    async def test_stripe_style_last_item(self, server: LoopbackServer) -> None:
        """Stripe's has_more with starting_after=<last id>."""

        async def handler(request: web.Request) -> web.Response:
            after = int(request.query.get("starting_after", "0"))
            page = [item for item in ITEMS if int(item["id"]) > after][:3]  # type: ignore[call-overload]
            has_more = bool(page) and page[-1]["id"] != ITEMS[-1]["id"]
            return web.json_response({"object": "list", "data": page, "has_more": has_more})

        server.route("GET", "/v1/customers", handler)
        paginator = Cursor(None, from_last_item="id", param="starting_after", has_more="has_more")
        async with tether.Client(server.url) as client:
            paginated = client.paginate("/v1/customers", paginator=paginator)
            items = await collect(paginated)
        assert ids(items) == [1, 2, 3, 4, 5, 6, 7]
        assert paginated.stop_reason is StopReason.NO_MORE
        assert server.count("/v1/customers") == 3

    @pytest.mark.parametrize("location", ["header", "json"])
    async def test_cursor_in_header_or_json_body(
        self, server: LoopbackServer, location: str
    ) -> None:
        """The cursor can travel in a header or in the JSON body of a POST search."""

        async def handler(request: web.Request) -> web.Response:
            if location == "header":
                start = int(request.headers.get("X-Cursor", "0"))
            else:
                start = int((await request.json()).get("start_cursor") or 0)
            following = start + 3 if start + 3 < len(ITEMS) else None
            return web.json_response({"results": chunk(start), "next": following})

        server.route("POST", "/search", handler)
        param = "X-Cursor" if location == "header" else "start_cursor"
        paginator = Cursor("next", param=param, location=location, items="results")  # type: ignore[arg-type]
        async with tether.Client(server.url) as client:
            paginated = client.paginate(
                "/search", paginator=paginator, method="POST", json={"query": "x"}
            )
            items = await collect(paginated)
        assert ids(items) == [1, 2, 3, 4, 5, 6, 7]
        if location == "json":
            import json

            assert [json.loads(s.body) for s in server.seen][1] == {"query": "x", "start_cursor": 3}

    async def test_offset_with_total(self, server: LoopbackServer) -> None:
        """Offset/limit advances by the items received and stops at the advertised total."""

        async def handler(request: web.Request) -> web.Response:
            offset, limit = int(request.query["offset"]), int(request.query["limit"])
            return web.json_response({"data": chunk(offset, limit), "total": len(ITEMS)})

        server.route("GET", "/records", handler)
        async with tether.Client(server.url) as client:
            paginated = client.paginate("/records", paginator=Offset(limit=3, total="total"))
            items = await collect(paginated)
        assert ids(items) == [1, 2, 3, 4, 5, 6, 7]
        assert [s.query["offset"] for s in server.seen] == ["0", "3", "6"]
        assert paginated.stop_reason is StopReason.TOTAL_REACHED

    async def test_page_numbers_with_total_pages(self, server: LoopbackServer) -> None:
        """?page=N&per_page=M until total_pages says it was the last."""

        async def handler(request: web.Request) -> web.Response:
            page = int(request.query["page"])
            return web.json_response({"data": chunk((page - 1) * 3), "total_pages": 3})

        server.route("GET", "/list", handler)
        paginator = PageNumber(size=3, total_pages="total_pages")
        async with tether.Client(server.url) as client:
            paginated = client.paginate("/list", paginator=paginator)
            items = await collect(paginated)
        assert ids(items) == [1, 2, 3, 4, 5, 6, 7]
        assert [s.query["page"] for s in server.seen] == ["1", "2", "3"]

    async def test_link_header(self, server: LoopbackServer) -> None:
        """GitHub-style Link headers (RFC 8288), relative or absolute, among other relations."""

        async def handler(request: web.Request) -> web.Response:
            page = int(request.query.get("page", "1"))
            links = [f'<{server.url}/repos?page=1>; rel="first"']
            if page < 3:
                links.append(f'</repos?page={page + 1}&per_page=3>; rel="next"')
            return web.json_response(chunk((page - 1) * 3), headers={"Link": ", ".join(links)})

        server.route("GET", "/repos", handler)
        async with tether.Client(server.url) as client:
            items = await collect(client.paginate("/repos", paginator=LinkHeader()))
        assert ids(items) == [1, 2, 3, 4, 5, 6, 7]

    async def test_next_url_in_body(self, server: LoopbackServer) -> None:
        """Django REST framework's "next" URL, followed until it is null."""

        async def handler(request: web.Request) -> web.Response:
            page = int(request.query.get("page", "1"))
            following = f"{server.url}/api/things?page={page + 1}" if page < 3 else None
            return web.json_response({"results": chunk((page - 1) * 3), "next": following})

        server.route("GET", "/api/things", handler)
        async with tether.Client(server.url) as client:
            items = await collect(client.paginate("/api/things", paginator=NextURL()))
        assert ids(items) == [1, 2, 3, 4, 5, 6, 7]


class TestStopRules:
    @pytest.fixture
    def endless(self, server: LoopbackServer) -> LoopbackServer:
        """An API that always offers another page."""

        async def handler(request: web.Request) -> web.Response:
            n = int(request.query.get("cursor", "0"))
            return web.json_response({"data": [{"id": n}, {"id": n + 1}], "next_cursor": n + 2})

        server.route("GET", "/endless", handler)
        return server

    async def test_max_pages(self, endless: LoopbackServer) -> None:
        """max_pages ends an endless walk."""
        async with tether.Client(endless.url) as client:
            paginated = client.paginate("/endless", paginator=Cursor(), max_pages=3)
            items = await collect(paginated)
        assert len(items) == 6
        assert paginated.stop_reason is StopReason.MAX_PAGES
        assert endless.count("/endless") == 3

    async def test_max_items_truncates(self, endless: LoopbackServer) -> None:
        """max_items hands out exactly that many items, even mid-page."""
        async with tether.Client(endless.url) as client:
            paginated = client.paginate("/endless", paginator=Cursor(), max_items=5)
            items = await collect(paginated)
        assert ids(items) == [0, 1, 2, 3, 4]
        assert paginated.stop_reason is StopReason.MAX_ITEMS

    async def test_empty_page_stops(self, server: LoopbackServer) -> None:
        """An empty page ends the walk even when it carries a cursor."""
        server.script("GET", "/x", lambda: web.json_response({"data": [], "next_cursor": "again"}))
        async with tether.Client(server.url) as client:
            paginated = client.paginate("/x", paginator=Cursor())
            assert await collect(paginated) == []
        assert paginated.stop_reason is StopReason.EMPTY_PAGE

    async def test_empty_page_with_has_more_continues(self, server: LoopbackServer) -> None:
        """An empty page the server marks has_more=true is walked past (filtered scans)."""
        server.script(
            "GET",
            "/scan",
            lambda: web.json_response({"data": [], "has_more": True, "next_cursor": "2"}),
            lambda: web.json_response({"data": [{"id": 9}], "has_more": False}),
        )
        async with tether.Client(server.url) as client:
            items = await collect(client.paginate("/scan", paginator=Cursor(has_more="has_more")))
        assert ids(items) == [9]

    async def test_no_content_is_an_empty_page(self, server: LoopbackServer) -> None:
        """A 204 No Content page (no records) ends the walk as an empty page, not an error."""
        server.script(
            "GET",
            "/records",
            lambda: web.json_response({"data": chunk(0), "next_cursor": "2"}),
            lambda: web.Response(status=204),
        )
        async with tether.Client(server.url) as client:
            paginated = client.paginate("/records", paginator=Cursor())
            items = await collect(paginated)
        assert ids(items) == [1, 2, 3]
        assert paginated.stop_reason is StopReason.EMPTY_PAGE

    async def test_repeated_cursor_stops(
        self, server: LoopbackServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A server that hands out the same cursor again is not followed around in a circle."""
        pages = iter([("a", [1]), ("b", [2]), ("a", [3]), ("b", [4])])

        async def handler(_: web.Request) -> web.Response:
            cursor, numbers = next(pages)
            return web.json_response({"data": [{"id": n} for n in numbers], "next_cursor": cursor})

        server.route("GET", "/loop", handler)
        with caplog.at_level(logging.WARNING, logger="tether"):
            async with tether.Client(server.url) as client:
                paginated = client.paginate("/loop", paginator=Cursor())
                items = await collect(paginated)
        assert ids(items) == [1, 2, 3]
        assert paginated.stop_reason is StopReason.REPEATED_CURSOR
        assert "cursor it had sent before" in caplog.text

    async def test_repeated_page_stops_without_duplicates(self, server: LoopbackServer) -> None:
        """A server that ignores the cursor and repeats a page: stop, and never yield it twice."""
        count = iter(range(100))

        async def handler(_: web.Request) -> web.Response:
            return web.json_response({"data": chunk(0), "next_cursor": f"c{next(count)}"})

        server.route("GET", "/stuck", handler)
        async with tether.Client(server.url) as client:
            paginated = client.paginate("/stuck", paginator=Cursor())
            items = await collect(paginated)
        assert ids(items) == [1, 2, 3]
        assert paginated.stop_reason is StopReason.REPEATED_PAGE

    async def test_dedupe_across_pages(self, server: LoopbackServer) -> None:
        """dedupe=True drops items that reappear on a later page (a shifting offset)."""
        server.script(
            "GET",
            "/shifting",
            lambda: web.json_response({"data": chunk(0), "next_cursor": "2"}),
            lambda: web.json_response({"data": chunk(2), "next_cursor": None}),
        )
        async with tether.Client(server.url) as client:
            items = await collect(client.paginate("/shifting", paginator=Cursor(), dedupe=True))
        assert ids(items) == [1, 2, 3, 4, 5]

    def test_bad_options(self) -> None:
        """Nonsense limits and a missing cursor source are ConfigErrors."""
        client = tether.Client("https://api.example.com")
        with pytest.raises(tether.ConfigError):
            client.paginate("/x", paginator=Cursor(), max_pages=0)
        with pytest.raises(tether.ConfigError):
            Cursor(None)
        with pytest.raises(tether.ConfigError):
            client.paginate("/x", paginator="cursor")  # type: ignore[arg-type]


class Item(pydantic.BaseModel):
    id: int
    name: str


async def test_items_are_validated(server: LoopbackServer) -> None:
    """With model=, every item is validated; a bad item names its page and field."""
    server.script(
        "GET",
        "/typed",
        lambda: web.json_response({"data": chunk(0), "next_cursor": "x"}),
        lambda: web.json_response({"data": [{"id": "nope", "name": "n"}], "next_cursor": None}),
    )
    async with tether.Client(server.url) as client:
        pages = client.paginate("/typed", paginator=Cursor(), model=Item).pages()
        first = await anext(pages)
        with pytest.raises(tether.ResponseValidationError, match=r"page 2.*Item.*id"):
            await anext(pages)
    assert first.items == [
        Item(id=1, name="item 1"),
        Item(id=2, name="item 2"),
        Item(id=3, name="item 3"),
    ]


async def test_next_page_is_fetched_while_this_one_is_consumed(server: LoopbackServer) -> None:
    """Page 2 is requested before the caller has finished with page 1."""
    second_requested = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.query.get("cursor") == "2":
            second_requested.set()
            return web.json_response({"data": chunk(3), "next_cursor": None})
        return web.json_response({"data": chunk(0), "next_cursor": "2"})

    server.route("GET", "/prefetch", handler)
    async with tether.Client(server.url) as client:
        pages = client.paginate("/prefetch", paginator=Cursor()).pages()
        first = await anext(pages)
        await asyncio.wait_for(second_requested.wait(), 5)
        assert ids(first.items) == [1, 2, 3]
        second = await anext(pages)
        assert ids(second.items) == [4, 5, 6]
        await pages.aclose()


async def test_breaking_early_cancels_the_prefetch(server: LoopbackServer) -> None:
    """Leaving the loop early cancels the page being fetched; nothing is left running."""
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.query.get("cursor"):
            await release.wait()
        return web.json_response({"data": chunk(0), "next_cursor": "2"})

    server.route("GET", "/early", handler)
    async with tether.Client(server.url) as client:
        paginated = client.paginate("/early", paginator=Cursor())
        async for _ in paginated:
            break
        await paginated.pages().aclose()
    release.set()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not [t for t in tasks if "_fetch" in repr(t.get_coro())]


async def test_each_page_is_retried(server: LoopbackServer) -> None:
    """Every page goes through the pipeline: a 503 on page 2 is retried."""
    server.script(
        "GET",
        "/flaky",
        lambda: web.json_response({"data": chunk(0), "next_cursor": "2"}),
        lambda: web.json_response({}, status=503),
        lambda: web.json_response({"data": chunk(3), "next_cursor": None}),
    )
    with no_wait():
        async with tether.Client(server.url) as client:
            items = await collect(client.paginate("/flaky", paginator=Cursor()))
    assert ids(items) == [1, 2, 3, 4, 5, 6]


def test_sync_client_paginates(sync_server: str) -> None:
    """SyncClient.paginate yields items and pages, blocking."""
    with tether.SyncClient(sync_server) as client:
        items = list(client.paginate("/items", paginator=Cursor()))
        pages = list(client.paginate("/items", paginator=Cursor()).pages())
    assert ids(items) == [1, 2, 3, 4, 5, 6, 7]
    assert [len(p.items) for p in pages] == [3, 3, 1]


@pytest.fixture
def sync_server(thread_server: ThreadServerFactory) -> str:
    async def handler(request: web.Request) -> web.Response:
        start = int(request.query.get("cursor", "0"))
        following = start + 3 if start + 3 < len(ITEMS) else None
        return web.json_response({"data": chunk(start), "next_cursor": following})

    return thread_server({"/items": handler})
