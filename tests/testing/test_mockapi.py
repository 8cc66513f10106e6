"""MockAPI stubs: matching, sequences, scenarios and near-miss reports, in every mode."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import pytest

import tether
from tests.testing.conftest import connect, no_retry_jitter
from tether.testing import ABSENT, ANY, STARTED, FakeClock, MockAPI, MockRequest, Reply


async def test_stub_answers_with_json(mode: str) -> None:
    """A stub's JSON reply reaches the client with its status, headers and body."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/devices", Reply(200, json=[{"id": 1}], headers={"X-Request-Id": "r1"}))
    async with connect(api, mode) as client:
        response = await client.get("/devices")
    assert response.json() == [{"id": 1}]
    assert response.headers["Content-Type"] == "application/json"
    assert response.request_id == "r1"


async def test_matching_on_query_headers_and_json(mode: str) -> None:
    """Query, header and JSON body matchers choose between stubs on the same path."""
    api = MockAPI(clock=FakeClock())
    api.stub("POST", "/charges", Reply(400, json={"error": "generic"}))
    api.stub(
        "POST",
        "/charges",
        Reply(201, json={"id": "ch_1"}),
        query={"expand": "customer"},
        headers={"Idempotency-Key": ANY, "X-Debug": ABSENT},
        json_partial={"amount": 100},
    )
    async with connect(api, mode, raise_for_status=False) as client:
        created = await client.post(
            "/charges",
            params={"expand": "customer"},
            headers={"Idempotency-Key": "k1"},
            json={"amount": 100, "currency": "eur"},
        )
        without_key = await client.post(
            "/charges", params={"expand": "customer"}, json={"amount": 100}
        )
        wrong_amount = await client.post(
            "/charges",
            params={"expand": "customer"},
            headers={"Idempotency-Key": "k2"},
            json={"amount": 5},
        )
    assert created.status == 201
    assert without_key.status == 400
    assert wrong_amount.status == 400


async def test_exact_json_rejects_extra_fields() -> None:
    """json= needs the body to equal it; json_partial= lets extra fields through."""
    api = MockAPI(clock=FakeClock())
    exact = api.stub("POST", "/exact", json={"a": 1})
    partial = api.stub("POST", "/partial", json_partial={"a": 1, "b": {"c": ANY}})
    async with api.client(raise_for_status=False) as client:
        assert (await client.post("/exact", json={"a": 1, "extra": 2})).status == 404
        assert (await client.post("/exact", json={"a": 1})).status == 200
        assert (await client.post("/partial", json={"a": 1, "b": {"c": [1], "d": 0}})).status == 200
        assert (await client.post("/partial", json={"a": True, "b": {"c": 1}})).status == 404
    assert exact.call_count == 1
    assert partial.call_count == 1


async def test_path_templates_feed_handlers() -> None:
    """A `{name}` path segment is captured and handed to a dynamic handler."""
    api = MockAPI(clock=FakeClock())

    def user(request: MockRequest, params: Mapping[str, str]) -> Reply:
        return Reply(json={"id": params["user_id"], "method": request.method})

    api.stub("GET", "/users/{user_id}", handler=user)
    api.stub("GET", re.compile(r"/files/.+\.txt"), Reply(body="plain text"))
    async with api.client() as client:
        assert (await client.get("/users/42")).json() == {"id": "42", "method": "GET"}
        assert (await client.get("/files/a/b.txt")).text == "plain text"


async def test_sequence_fails_twice_then_succeeds(mode: str) -> None:
    """Replies are used in order, `times` each; the client retries through the failures."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    stub = api.stub("GET", "/flaky", Reply(503, times=2), Reply(200, json={"ok": True}))
    async with connect(api, mode, retry=no_retry_jitter()) as client:
        response = await client.get("/flaky")
        again = await client.get("/flaky")
    assert response.json() == {"ok": True}
    assert response.attempts == 3
    assert again.attempts == 1
    assert stub.call_count == 4
    assert clock.sleeps == [1.0, 2.0]


async def test_last_added_stub_wins_unless_priority_says_otherwise() -> None:
    """Among equal priorities the newest stub answers; a higher priority beats it."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/x", Reply(json="old"))
    api.stub("GET", "/x", Reply(json="new"))
    api.stub("GET", "/y", Reply(json="important"), priority=5)
    api.stub("GET", "/y", Reply(json="newer"))
    async with api.client() as client:
        assert (await client.get("/x")).json() == "new"
        assert (await client.get("/y")).json() == "important"


async def test_scenario_moves_through_states(mode: str) -> None:
    """A scenario's stubs answer only in their state and move it on, like WireMock's."""
    api = MockAPI(clock=FakeClock())
    api.stub(
        "GET", "/job", Reply(json={"state": "queued"}), scenario="job", when=STARTED, then="run"
    )
    api.stub(
        "GET", "/job", Reply(json={"state": "running"}), scenario="job", when="run", then="end"
    )
    api.stub("GET", "/job", Reply(json={"state": "done"}), scenario="job", when="end")
    async with connect(api, mode) as client:
        states = [(await client.get("/job")).json()["state"] for _ in range(4)]
    assert states == ["queued", "running", "done", "done"]
    assert api.scenario_state("job") == "end"
    api.set_scenario_state("job", STARTED)
    async with api.client() as client:
        assert (await client.get("/job")).json() == {"state": "queued"}


async def test_unmatched_request_shows_the_nearest_stub_with_a_diff(mode: str) -> None:
    """A request nothing matches gets a 404 naming the nearest stub and each differing field."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/devices", query={"page": "1"}, headers={"X-Tenant": "acme"})
    api.stub("POST", "/other")
    async with connect(api, mode, raise_for_status=False) as client:
        response = await client.get("/devices", params={"page": "2"})
    assert response.status == 404
    assert response.headers["X-Tether-Mock"] == "unmatched"
    report = str(api.unmatched[0])
    assert "nearest: GET /devices" in report
    assert "query[page]: expected '1', got '2'" in report
    assert "header[X-Tenant]: expected 'acme', got None" in report
    with pytest.raises(AssertionError, match=r"1 request\(s\) matched no stub"):
        api.assert_all_matched()


async def test_scenario_state_appears_in_the_near_miss() -> None:
    """When only the scenario state is wrong, the report says which state was expected."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/job", scenario="job", when="finished")
    async with api.client(raise_for_status=False) as client:
        await client.get("/job")
    assert "scenario[job]: expected 'finished', got 'Started'" in str(api.unmatched[0])


async def test_assert_all_called_names_idle_stubs() -> None:
    """assert_all_called lists the stubs no request reached."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/used")
    api.stub("GET", "/idle", name="idle one")
    async with api.client() as client:
        await client.get("/used")
    with pytest.raises(AssertionError, match="idle one"):
        api.assert_all_called()


async def test_reset_restores_sequences_and_journals() -> None:
    """reset() rewinds sequences, scenarios and journals but keeps the definitions."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/seq", Reply(json=1), Reply(json=2))
    async with api.client() as client:
        assert [(await client.get("/seq")).json() for _ in range(2)] == [1, 2]
        api.reset()
        assert api.requests == []
        assert (await client.get("/seq")).json() == 1


def test_bad_definitions_fail_early() -> None:
    """Mistakes in a stub are ConfigErrors at definition time, not odd answers later."""
    api = MockAPI()
    with pytest.raises(tether.ConfigError, match="must start with '/'"):
        api.stub("GET", "devices")
    with pytest.raises(tether.ConfigError, match="json= or json_partial="):
        api.stub("GET", "/x", json={}, json_partial={})
    with pytest.raises(tether.ConfigError, match="need scenario="):
        api.stub("GET", "/x", when="a")
    with pytest.raises(tether.ConfigError, match="HTTP status"):
        Reply(700)
    with pytest.raises(tether.ConfigError, match="not both"):
        Reply(json={}, body="x")
    with pytest.raises(tether.ConfigError, match="line break"):
        Reply(headers={"X": "a\r\nInjected: 1"})
    api.stub("GET", "/dup", name="same")
    with pytest.raises(tether.ConfigError, match="exists already"):
        api.stub("GET", "/dup", name="same")


async def test_request_journal_sees_what_the_wire_carried(mode: str) -> None:
    """The journal records method, path, query, headers and body the same way in both modes."""
    api = MockAPI(clock=FakeClock())
    api.stub("PUT", "/things/{id}")
    async with connect(api, mode) as client:
        await client.put("/things/7", params={"a": "1"}, json={"x": 1})
    seen = api.requests[0]
    assert (seen.method, seen.path, dict(seen.query)) == ("PUT", "/things/7", {"a": "1"})
    assert seen.json() == {"x": 1}
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Host"] == urlsplit(seen.url).netloc
    assert seen.headers["Content-Length"] == str(len(seen.body))


def test_sync_client_uses_the_in_process_transport() -> None:
    """SyncClient drives the same in-process transport from its own loop thread."""
    clock = FakeClock()
    api = MockAPI(clock=clock)
    api.stub("GET", "/flaky", Reply(503), Reply(json={"ok": True}))
    retry = no_retry_jitter()
    with tether.SyncClient(api.url, transport=api.transport(), clock=clock, retry=retry) as client:
        assert client.get_json("/flaky") == {"ok": True}
    assert clock.sleeps == [1.0]
