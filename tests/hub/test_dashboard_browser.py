"""The hub's dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Each test runs a real Hub on uvicorn against the demo sandbox: the `weather` integration, its
pollers, the device stream, alerts posted to the inbox, and an extra outbox endpoint that
fails once, so a dead letter appears and can be replayed from the page.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

import tether.spec
from tests.hub.helpers import serve_api, until
from tether import webhooks
from tether.hub import Hub
from tether.hub._demo import DEMO_ALERTS_SECRET, DemoSandbox
from tether.testing import Reply
from tether.webhooks import OutboxPolicy

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Bounds for what the page shows after real I/O (a poll, a refresh, a replay).
WAIT_MS = 20_000
HUB_TOKEN = "dashboard-test-token"

BROKEN_ENDPOINT = """
[outbox.endpoints.broken]
url = "{url}"
event_types = ["data.oslo"]
"""


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (it is in the test extra)"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Chromium, headless; under CI=true a missing one fails the test instead of skipping it."""
    missing = _missing_browser()
    if missing is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class RunningHub:
    sandbox: DemoSandbox
    hub: Hub
    url: str
    http: aiohttp.ClientSession
    token: str | None = None

    async def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.get(self.url + path, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()


@asynccontextmanager
async def running_hub(tmp_path: Path, *, token: str | None = None) -> AsyncIterator[RunningHub]:
    """The demo config on a real hub, plus an endpoint that answers 500 once, then 204."""
    async with DemoSandbox(seed=0) as sandbox:
        sandbox.api.stub("POST", "/broken", Reply(500, times=1), Reply(204), name="broken")
        text = sandbox.config("http://127.0.0.1:0") + BROKEN_ENDPOINT.format(
            url=f"{sandbox.base_url}/broken"
        )
        path = tmp_path / "tether.toml"
        path.write_text(text, encoding="utf-8")
        spec = tether.spec.load(path, environ={})
        hub = Hub(
            spec,
            store=str(tmp_path / "hub.db"),
            environ={},
            # No retries: the first failed attempt makes the delivery dead at once.
            outbox_policy=OutboxPolicy(schedule=(), poll_interval=0.2),
        )
        async with hub, serve_api(hub, token=token) as url, aiohttp.ClientSession() as http:
            await sandbox.send_webhooks(f"{url}/webhooks/weather/alerts", every=1.0)
            yield RunningHub(sandbox, hub, url, http, token)


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path) as running:
        yield running


async def _open(browser: Browser, url: str, errors: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1366, "height": 900})
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(url)
    return page


async def _dead_outbox(demo: RunningHub) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        dead = (await demo.get("/dead"))["dead"]
        return next((d for d in dead if d["kind"] == "outbox" and d["name"] == "broken"), {})

    return await until(probe, timeout=30)


async def _a_newer_event_arrives(page: Page) -> int:
    """Until the events list shows an event newer than the newest it shows now; that id."""
    newest = await page.evaluate(
        "Math.max(0, ...[...document.querySelectorAll('#events-list li[data-id]')]"
        ".map((li) => Number(li.dataset.id)))"
    )
    await page.wait_for_function(
        "(id) => [...document.querySelectorAll('#events-list li[data-id]')]"
        ".some((li) => Number(li.dataset.id) > id)",
        arg=newest,
        timeout=WAIT_MS,
    )
    return int(newest)


def decode_png(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """Width, height and pixels of an 8-bit, non-interlaced RGB or RGBA PNG (as Chromium
    writes screenshots), undoing the five scanline filters of PNG section 9."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, compressed, header = 8, bytearray(), b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0)
    assert colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(compressed))
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                nearest = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + nearest) & 0xFF
        pixels.extend(tuple(line[x : x + 3]) for x in range(0, stride, channels))
        previous = line
    return width, height, pixels


def _css_rgb(value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", value)[:3])


async def test_dashboard_shows_health_data_events_and_replays_a_dead_letter(
    demo: RunningHub, browser: Browser, tmp_path: Path
) -> None:
    """Against a running hub, the page shows the integration with its status, breaker and
    rate-limit gauge, the poller's data, a live event arriving, and the dead letter, whose
    Replay button (focused across a refresh, pressed by keyboard) makes the hub deliver it;
    a screenshot shows all of it painted."""
    dead = await _dead_outbox(demo)
    await until(lambda: _has_data(demo, "oslo"), timeout=30)
    errors: list[str] = []
    page = await _open(browser, demo.url + "/", errors)
    from playwright.async_api import expect

    weather = page.locator("#integrations-body tr[data-name='weather']")
    await expect(weather.locator(".badge").first).to_have_text(
        re.compile(r"^(ok|degraded|down)$"), timeout=WAIT_MS
    )
    await expect(weather.get_by_role("meter")).to_have_attribute(
        "aria-label", re.compile(r"^weather: [\d.]+ of \d+ free now \(limit 5/s\)$")
    )

    async def page_agrees_with_api() -> bool:
        row = next(
            r for r in (await demo.get("/integrations"))["integrations"] if r["name"] == "weather"
        )
        cells = await weather.locator("td").all_inner_texts()
        breaker = (row["breaker"] or "none").replace("_", " ")
        return cells[1].strip() == row["status"] and cells[2].strip() == breaker

    await until(page_agrees_with_api, timeout=30)

    oslo = page.locator("#pollers-body tr[data-name='oslo']")
    await expect(oslo).to_contain_text('"city":"Oslo"', timeout=WAIT_MS)
    await expect(oslo).to_contain_text("available")

    await expect(page.locator("#live")).to_have_attribute("data-mode", "live", timeout=WAIT_MS)
    newest = await _a_newer_event_arrives(page)
    arrived = await page.locator("#events-list li[data-id]").first.get_attribute("data-type")
    assert arrived
    assert any(e["type"] == arrived for e in (await demo.get(f"/events?since={newest}"))["events"])

    dead_row = page.locator(f"#dead-body tr[data-kind='outbox'][data-id='{dead['id']}']")
    await expect(dead_row).to_contain_text("broken", timeout=WAIT_MS)
    await expect(dead_row).to_contain_text("data.oslo")
    await expect(page.locator("#sum-dead")).not_to_have_text("0")

    viewport_png = await page.screenshot()
    (tmp_path / "dashboard.png").write_bytes(viewport_png)
    table_png = await page.locator("#integrations table").screenshot()
    (tmp_path / "integrations.png").write_bytes(table_png)
    badge = weather.locator(".badge").first
    badge_colour = _css_rgb(await badge.evaluate("(b) => getComputedStyle(b).backgroundColor"))

    # By keyboard, and after a refresh: rows are kept between refreshes, so focus stays put.
    replay = page.get_by_role("button", name=f"Replay outbox broken #{dead['id']}")
    await replay.focus()
    updated = page.locator("#updated")
    await expect(updated).not_to_have_text(await updated.inner_text(), timeout=WAIT_MS)
    await expect(replay).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#replay-status")).to_have_text(
        f"Replayed outbox #{dead['id']}.", timeout=WAIT_MS
    )

    async def delivered() -> bool:
        found = (await demo.get("/outbox?endpoint=broken"))["deliveries"]
        return any(d["id"] == dead["id"] and d["status"] == "delivered" for d in found)

    await until(delivered, timeout=30)
    await expect(dead_row).to_have_count(0, timeout=WAIT_MS)
    assert errors == []

    width, height, pixels = decode_png(viewport_png)
    assert (width, height) == (1366, 900)
    colours = Counter(pixels)
    _, count = colours.most_common(1)[0]
    assert len(colours) > 200, "the page looks blank"
    assert count < 0.9 * len(pixels), "almost everything is one colour"
    _, _, table = decode_png(table_png)
    table_colours = Counter(table)
    assert len(table_colours) > 40, "the integrations table looks blank"
    assert table_colours.most_common(1)[0][1] < 0.95 * len(table)
    # The status badge's own colour is painted over an area of badge size.
    assert table_colours[badge_colour] > 150, "the status badge is not painted"


async def _has_data(demo: RunningHub, poller: str) -> bool:
    return "data" in await demo.get(f"/data/{poller}")


async def test_events_fall_back_to_polling_without_a_stream(
    demo: RunningHub, browser: Browser
) -> None:
    """When /events does not answer as a stream, the page polls `GET /events?since=` and new
    events still appear."""
    from playwright.async_api import Route, expect

    async def no_stream(route: Route) -> None:
        if "text/event-stream" in route.request.headers.get("accept", ""):
            await route.fulfill(status=200, content_type="application/json", body='{"events": []}')
        else:
            await route.continue_()

    errors: list[str] = []
    page = await browser.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.route(re.compile(r".*/events(\?.*)?$"), no_stream)
    await page.goto(demo.url + "/")
    await expect(page.locator("#live")).to_have_attribute("data-mode", "polling", timeout=WAIT_MS)
    await _a_newer_event_arrives(page)
    assert errors == []


async def test_markup_in_data_is_shown_as_text(demo: RunningHub, browser: Browser) -> None:
    """A webhook whose payload holds HTML shows up as that text; nothing in it runs."""
    from playwright.async_api import expect

    # No quotes in it, so the page's JSON preview shows it verbatim.
    payload = "<img src=x onerror=window.hacked=1>"
    body = json.dumps({"type": "alert.created", "data": {"note": payload}}).encode()
    headers = webhooks.sign("standard", secret=DEMO_ALERTS_SECRET, body=body, msg_id="msg_markup")
    headers["Content-Type"] = "application/json"
    async with demo.http.post(
        f"{demo.url}/webhooks/weather/alerts", data=body, headers=headers
    ) as response:
        assert response.status == 200
    page = await browser.new_page()
    await page.goto(demo.url + "/")
    events = page.locator("#events-list")
    await expect(events).to_contain_text(payload, timeout=WAIT_MS)
    assert await page.locator("#events-list img").count() == 0
    assert await page.evaluate("window.hacked === undefined")


async def test_a_token_protected_hub_signs_in_by_cookie(tmp_path: Path, browser: Browser) -> None:
    """Behind a token, `/?token=` sets the cookie and the page loads the hub's data; once the
    cookie is gone, the page says how to sign in again."""
    from playwright.async_api import expect

    async with running_hub(tmp_path, token=HUB_TOKEN) as protected:
        page = await browser.new_page()
        try:
            refused = await page.goto(protected.url + "/")
            assert refused is not None
            assert refused.status == 401
            await page.goto(f"{protected.url}/?token={HUB_TOKEN}")
            assert page.url == protected.url + "/"
            weather = page.locator("#integrations-body tr[data-name='weather']")
            await expect(weather).to_be_visible(timeout=WAIT_MS)
            await expect(page.locator("#auth-banner")).to_be_hidden()
            assert HUB_TOKEN not in await page.content()
            await page.context.clear_cookies()
            await expect(page.locator("#auth-banner")).to_be_visible(timeout=WAIT_MS)
        finally:
            # Its event stream is open: the server would wait for it when stopping.
            await page.close()


def test_page_is_self_contained_and_inserts_no_markup() -> None:
    """The shipped page loads nothing from elsewhere (it works offline) and never parses data
    as HTML."""
    page = (importlib.resources.files("tether.hub") / "_dashboard.html").read_text("utf-8")
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page)
    assert not re.search(r"url\(\s*[\"']?(?:https?:)?//", page)
    assert "@import" not in page
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in page
