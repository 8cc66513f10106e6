"""Single-flight and background refresh: concurrent identical misses make one request, its
outcome (answer or exception) is shared, cancellation strands nobody, and stale-while-
revalidate refreshes once per key in a task the policy owns."""

from __future__ import annotations

import asyncio
import logging
from email.utils import formatdate

import pytest
from multidict import CIMultiDict

import tether
from tests.cache.conftest import Rig, RigFactory, reply, validating
from tests.conftest import LoopbackServer
from tether._models import Request, Response
from tether.testing import FakeClock, MockTransport


async def settle() -> None:
    """Let every ready task run up to its next real wait (no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)


class Origin:
    """A scripted origin behind MockTransport: counts calls, can hold answers behind a gate."""

    def __init__(self, clock: FakeClock, headers: dict[str, str] | None = None) -> None:
        self.clock = clock
        self.headers = headers if headers is not None else {"Cache-Control": "max-age=60"}
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.cancelled = 0
        self.error: BaseException | None = None
        self.transport = MockTransport(self.handle)

    async def handle(self, request: Request) -> Response:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.error is not None:
            raise self.error
        accept = request.headers.get("Accept", "")
        return Response(
            200,
            headers={"Date": formatdate(self.clock.time(), usegmt=True), **self.headers},
            content=f"v{self.calls} {accept}".strip().encode(),
        )


def mock_rig(make_rig: RigFactory, origin: Origin, **options: object) -> Rig:
    return make_rig(clock=origin.clock, terminal=lambda _: origin.transport.send, **options)  # type: ignore[arg-type]


# -- single-flight ------------------------------------------------------------------------------


async def test_concurrent_misses_make_one_request(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """Twenty identical concurrent misses: the server sees one request, everyone gets v1."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "max-age=60"}))
    requests = [rig.request() for _ in range(20)]
    responses = await asyncio.gather(*(rig.send(r) for r in requests))
    assert server.count("/x") == 1
    assert {r.text for r in responses} == {"v1"}
    assert len({id(r) for r in responses}) == 20
    assert [r.request for r in responses] == requests


async def test_uncacheable_answer_is_still_shared_by_concurrent_callers(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """A response with no freshness is shared with those who asked at the same moment, but
    not kept for later callers."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1"))
    await asyncio.gather(*(rig.get() for _ in range(5)))
    assert server.count("/x") == 1
    await rig.get()
    assert server.count("/x") == 2


async def test_no_store_answer_is_not_shared(server: LoopbackServer, make_rig: RigFactory) -> None:
    """A no-store response may not be reused at all: each joiner asks for its own."""
    rig = make_rig()
    server.script("GET", "/x", reply(rig.clock, "v1", {"Cache-Control": "no-store"}))
    await asyncio.gather(*(rig.get() for _ in range(4)))
    assert server.count("/x") == 4


async def test_failure_is_shared_as_the_same_exception(make_rig: RigFactory) -> None:
    """When the one request fails, every caller gets that very exception; one attempt made."""
    origin = Origin(FakeClock())
    origin.error = tether.ConnectError("refused")
    rig = mock_rig(make_rig, origin)
    results = await asyncio.gather(*(rig.get() for _ in range(5)), return_exceptions=True)
    assert origin.calls == 1
    assert all(result is origin.error for result in results)


async def test_cancelling_the_leader_does_not_strand_followers(make_rig: RigFactory) -> None:
    """The caller who started the request is cancelled; the others still get its answer."""
    origin = Origin(FakeClock())
    origin.gate = asyncio.Event()
    rig = mock_rig(make_rig, origin)
    leader = asyncio.create_task(rig.get())
    await origin.entered.wait()
    followers = [asyncio.create_task(rig.get()) for _ in range(3)]
    await settle()
    leader.cancel()
    await settle()
    origin.gate.set()
    responses = await asyncio.gather(*followers)
    assert leader.cancelled()
    assert [r.text for r in responses] == ["v1"] * 3
    assert (origin.calls, origin.cancelled) == (1, 0)
    assert (await rig.get()).from_cache  # and the answer was stored


async def test_request_is_cancelled_when_every_caller_is(make_rig: RigFactory) -> None:
    """With nobody left waiting, the shared request is cancelled rather than left running."""
    origin = Origin(FakeClock())
    origin.gate = asyncio.Event()
    rig = mock_rig(make_rig, origin)
    callers = [asyncio.create_task(rig.get()) for _ in range(3)]
    await origin.entered.wait()
    for caller in callers:
        caller.cancel()
    await settle()
    assert origin.cancelled == 1
    origin.gate.set()
    origin.entered.clear()
    assert (await rig.get()).text == "v2"  # a new request, not the abandoned one


async def test_joiner_with_another_vary_value_asks_for_itself(make_rig: RigFactory) -> None:
    """RFC 9111 §4.1: a caller whose Vary'd header differs does not take the shared answer."""
    origin = Origin(FakeClock(), {"Cache-Control": "max-age=60", "Vary": "Accept"})
    origin.gate = asyncio.Event()
    rig = mock_rig(make_rig, origin)
    first = asyncio.create_task(rig.get(headers={"Accept": "a"}))
    same = asyncio.create_task(rig.get(headers={"Accept": "a"}))
    other = asyncio.create_task(rig.get(headers={"Accept": "b"}))
    await origin.entered.wait()
    await settle()
    origin.gate.set()
    texts = [r.text for r in await asyncio.gather(first, same, other)]
    assert texts == ["v1 a", "v1 a", "v2 b"]


async def test_unsafe_request_during_a_miss_keeps_its_answer_out(make_rig: RigFactory) -> None:
    """§4.4: a GET answered before a POST changed the resource is not stored after it."""
    origin = Origin(FakeClock())
    origin.gate = asyncio.Event()
    rig = mock_rig(make_rig, origin)
    reader = asyncio.create_task(rig.get())
    await origin.entered.wait()
    origin.gate.set()
    await rig.get(method="POST", content=b"{}")
    await reader
    assert not (await rig.get()).from_cache


async def test_closing_fails_waiting_callers_plainly(make_rig: RigFactory) -> None:
    """aclose cancels a shared request; its callers get a ConfigError, not a stray
    CancelledError."""
    origin = Origin(FakeClock())
    origin.gate = asyncio.Event()
    rig = mock_rig(make_rig, origin)
    caller = asyncio.create_task(rig.get())
    await origin.entered.wait()
    await rig.policy.aclose()
    with pytest.raises(tether.ConfigError, match="closed"):
        await caller
    assert origin.cancelled == 1


async def test_joiner_with_a_passed_deadline_fails_at_once(make_rig: RigFactory) -> None:
    """A caller whose deadline has passed does not join a request in flight."""
    origin = Origin(FakeClock())
    origin.gate = asyncio.Event()
    rig = mock_rig(make_rig, origin)
    leader = asyncio.create_task(rig.get())
    await origin.entered.wait()
    late = rig.request()
    late.deadline = rig.clock.monotonic()
    with pytest.raises(tether.DeadlineExceeded, match="identical request already in flight"):
        await rig.send(late)
    origin.gate.set()
    assert (await leader).text == "v1"


async def test_joiner_waits_no_longer_than_its_own_deadline(make_rig: RigFactory) -> None:
    """A caller joining a slower caller's request gives up at its own deadline; the request
    goes on for the one who started it."""
    origin = Origin(FakeClock())
    origin.gate = asyncio.Event()
    rig = mock_rig(make_rig, origin)
    leader = asyncio.create_task(rig.get())
    await origin.entered.wait()
    hurried = rig.request()
    hurried.deadline = rig.clock.monotonic() + 0.01
    with pytest.raises(tether.DeadlineExceeded):
        await rig.send(hurried)
    origin.gate.set()
    assert (await leader).text == "v1"
    assert (origin.calls, origin.cancelled) == (1, 0)


# -- stale-while-revalidate (RFC 5861 §3) -------------------------------------------------------

SWR = {"Cache-Control": "max-age=10, stale-while-revalidate=60"}


async def test_stale_while_revalidate_serves_then_refreshes(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """RFC 5861 §3: within the window the stale entry answers at once; a background request
    revalidates it, and the next call gets the refreshed entry from cache."""
    rig = make_rig()
    server.script(
        "GET",
        "/x",
        reply(rig.clock, "v1", {**SWR, "ETag": '"e1"'}),
        reply(rig.clock, "v2", {**SWR, "ETag": '"e2"'}),
    )
    await rig.get()
    rig.clock.advance(30)
    stale = await rig.get()
    assert (stale.text, stale.from_cache, stale.headers["Age"]) == ("v1", True, "30")
    await rig.policy.wait_idle()
    assert server.count("/x") == 2
    assert server.seen[1].headers["If-None-Match"] == '"e1"'
    refreshed = await rig.get()
    assert (refreshed.text, refreshed.from_cache, refreshed.headers["Age"]) == ("v2", True, "0")
    assert server.count("/x") == 2


async def test_background_304_freshens_the_entry(
    server: LoopbackServer, make_rig: RigFactory
) -> None:
    """RFC 5861 §3 with §4.3.4: a 304 to the background revalidation freshens the entry."""
    rig = make_rig()
    server.route("GET", "/x", validating(rig.clock, '"e1"', "v1", SWR))  # type: ignore[arg-type]
    await rig.get()
    rig.clock.advance(30)
    await rig.get()
    await rig.policy.wait_idle()
    rig.clock.advance(5)
    response = await rig.get()
    assert (response.text, response.headers["Age"]) == ("v1", "5")
    assert server.count("/x") == 2


async def test_one_refresh_per_key_at_a_time(make_rig: RigFactory) -> None:
    """Many stale hits while a refresh is under way start no second refresh."""
    origin = Origin(FakeClock(), SWR)
    rig = mock_rig(make_rig, origin)
    await rig.get()
    origin.gate = asyncio.Event()
    rig.clock.advance(30)
    responses = await asyncio.gather(*(rig.get() for _ in range(10)))
    await settle()
    assert all(r.from_cache and r.text == "v1" for r in responses)
    assert origin.calls == 2
    origin.gate.set()
    await rig.policy.wait_idle()
    assert origin.calls == 2
    assert (await rig.get()).text == "v2"


async def test_past_the_window_the_call_waits_for_the_origin(make_rig: RigFactory) -> None:
    """RFC 5861 §3: beyond stale-while-revalidate the stale entry is not served."""
    origin = Origin(FakeClock(), SWR)
    rig = mock_rig(make_rig, origin)
    await rig.get()
    rig.clock.advance(10 + 61)
    response = await rig.get()
    assert (response.text, response.from_cache) == ("v2", False)


async def test_failed_refresh_is_logged_and_keeps_the_entry(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A background refresh that fails leaves the stale entry in place and says why."""
    origin = Origin(FakeClock(), SWR)
    rig = mock_rig(make_rig, origin)
    await rig.get()
    origin.error = tether.ReadTimeout("slow")
    rig.clock.advance(30)
    with caplog.at_level(logging.WARNING, logger="tether"):
        await rig.get()
        await rig.policy.wait_idle()
    assert "background revalidation of GET http" in caplog.text
    assert "/x failed: ReadTimeout: slow" in caplog.text
    response = await rig.get()
    assert (response.text, response.from_cache) == ("v1", True)


async def test_close_cancels_background_refresh(make_rig: RigFactory) -> None:
    """The refresh task belongs to the policy: aclose cancels it, and no refresh starts after."""
    origin = Origin(FakeClock(), SWR)
    rig = mock_rig(make_rig, origin)
    await rig.get()
    origin.gate = asyncio.Event()
    origin.entered.clear()
    rig.clock.advance(30)
    await rig.get()
    await origin.entered.wait()
    await rig.policy.aclose()
    assert origin.cancelled == 1
    await rig.get()
    await settle()
    assert origin.calls == 2


async def test_refresh_uses_a_copy_of_the_request(make_rig: RigFactory) -> None:
    """The caller's request is not changed by the background revalidation."""
    origin = Origin(FakeClock(), {**SWR, "ETag": '"e1"'})
    rig = mock_rig(make_rig, origin)
    await rig.get()
    rig.clock.advance(30)
    request = rig.request(headers={"X-Trace": "t"})
    await rig.send(request)
    await rig.policy.wait_idle()
    assert request.headers == CIMultiDict({"X-Trace": "t"})
    assert origin.transport.requests[-1].headers["If-None-Match"] == '"e1"'


async def test_foreign_error_text_is_not_logged(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A background failure from another library is logged by type only: its text may hold
    anything, a credential included."""
    origin = Origin(FakeClock(), SWR)
    rig = mock_rig(make_rig, origin)
    await rig.get()
    origin.error = RuntimeError("token=s3cr3t-in-a-message")
    rig.clock.advance(30)
    with caplog.at_level(logging.WARNING, logger="tether"):
        await rig.get()
        await rig.policy.wait_idle()
    assert "failed: RuntimeError" in caplog.text
    assert "s3cr3t" not in caplog.text
