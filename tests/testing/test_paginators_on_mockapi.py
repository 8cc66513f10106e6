"""tether's own paginators walk the mock's collections in every style, quirks included."""

from __future__ import annotations

from typing import Any

import pytest

import tether
from tests.testing.conftest import connect
from tether.pagination import Cursor, LinkHeader, NextURL, Offset, PageNumber, Paginator
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
    RateLimited,
    Schedule,
)

ITEMS = [{"id": i} for i in range(1, 8)]

PAIRS: list[tuple[Pagination, Paginator]] = [
    (CursorPages(page_size=3), Cursor("next_cursor", has_more="has_more")),
    (OffsetPages(page_size=3), Offset(limit=3, total="total")),
    (PageNumberPages(page_size=3), PageNumber(size=3, total_pages="total_pages")),
    (LinkHeaderPages(page_size=3), LinkHeader()),
    (NextUrlPages(page_size=3), NextURL()),
]


async def collect(client: tether.Client, paginator: Paginator, **options: Any) -> list[int]:
    return [item["id"] async for item in client.paginate("/items", paginator=paginator, **options)]


@pytest.mark.parametrize(("style", "paginator"), PAIRS, ids=lambda p: type(p).__name__)
async def test_each_paginator_reads_its_style(
    mode: str, style: Pagination, paginator: Paginator
) -> None:
    """The matching paginator collects every item exactly once, in order, in both modes."""
    api = MockAPI(clock=FakeClock())
    api.collection("/items", items=ITEMS, pagination=style)
    async with connect(api, mode) as client:
        assert await collect(client, paginator) == list(range(1, 8))


async def test_cursor_paginator_walks_past_an_empty_page() -> None:
    """An empty page that says has_more does not end the walk early."""
    api = MockAPI(clock=FakeClock())
    api.collection(
        "/items",
        items=ITEMS,
        pagination=CursorPages(page_size=3),
        quirks=PageQuirks(empty_pages=(1,)),
    )
    async with api.client() as client:
        assert await collect(client, PAIRS[0][1]) == list(range(1, 8))


async def test_dedupe_removes_items_repeated_across_pages() -> None:
    """Overlapping pages repeat items; dedupe=True hands each id over once."""
    api = MockAPI(clock=FakeClock())
    api.collection(
        "/items", items=ITEMS, pagination=CursorPages(page_size=3), quirks=PageQuirks(overlap=1)
    )
    async with api.client() as client:
        assert await collect(client, PAIRS[0][1]) == [1, 2, 3, 3, 4, 5, 6, 6, 7]
        assert await collect(client, PAIRS[0][1], dedupe=True) == list(range(1, 8))


async def test_a_long_pause_mid_walk_meets_an_expired_cursor() -> None:
    """A 120 s Retry-After on page two outlives a 60 s cursor: the walk fails with the
    server's cursor_expired, on virtual time."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.collection(
        "/items",
        items=ITEMS,
        pagination=CursorPages(page_size=3),
        quirks=PageQuirks(cursor_ttl=60),
    )
    api.inject(RateLimited(retry_after=120), path="/items", schedule=Schedule(after=1, times=1))
    options = {"retry": tether.Retry(max_retry_after=300, budget=None), "timeout": 600}
    async with api.client(**options) as client:
        with pytest.raises(tether.BadRequestError, match="cursor_expired"):
            await collect(client, PAIRS[0][1])
    assert clock.sleeps == [120.0]
