"""Cassettes: record once, replay without a network, scrub secrets, refuse to write leaks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import tether
from tether.testing import Cassette, CassetteLeak, CassetteMismatch, FakeClock, MockAPI, Reply

TOKEN = "sk_live_4f3c2b1a0987"
ISSUED = "at_issued_5e6f7a8b9c"
COOKIE = "sess_0a1b2c3d4e5f"


def upstream() -> MockAPI:
    """The 'real' API that recording talks to (in-process, so no test touches a network)."""
    api = MockAPI(clock=FakeClock())
    api.stub("GET", "/items", Reply(json={"page": 1}), query={"page": "1"})
    api.stub("GET", "/items", Reply(json={"page": 2}), query={"page": "2"})
    api.stub(
        "POST",
        "/oauth/token",
        Reply(
            json={
                "access_token": ISSUED,
                "refresh_token": "rt_77aa88bb",
                "nested": {"password": "pw-123456"},
            },
            headers={"Set-Cookie": f"session={COOKIE}; HttpOnly"},
        ),
    )
    api.stub("GET", "/echo", Reply(json={"you_sent": TOKEN}))
    api.stub("GET", "/counter", Reply(json=1), Reply(json=2))
    api.stub("GET", "/flaky", Reply(503), Reply(json="ok"))
    return api


def recorder(path: Path, api: MockAPI | None = None, **options: object) -> Cassette:
    return Cassette(path, inner=(api or upstream()).transport(), environ={}, **options)  # type: ignore[arg-type]


def client(transport: Cassette, **options: object) -> tether.Client:
    options.setdefault("auth", tether.auth.Bearer(TOKEN))
    return tether.Client("http://api.localhost", transport=transport, clock=FakeClock(), **options)  # type: ignore[arg-type]


async def test_replay_needs_no_network(tmp_path: Path) -> None:
    """What was recorded is replayed with the same status, headers and body, and the API is
    never called again."""
    path = tmp_path / "c.json"
    async with client(recorder(path, mode="record")) as c:
        recorded = await c.get("/items", params={"page": 1})
    offline = MockAPI(clock=FakeClock())
    async with client(recorder(path, offline, mode="replay")) as c:
        replayed = await c.get("/items", params={"page": 1})
    assert replayed.status == recorded.status
    assert replayed.json() == recorded.json() == {"page": 1}
    assert replayed.headers["Content-Type"] == "application/json"
    assert offline.requests == []


async def test_once_records_when_missing_then_replays(tmp_path: Path) -> None:
    """Mode once records a missing cassette, and replays it on the next run."""
    path = tmp_path / "once.json"
    api = upstream()
    async with client(recorder(path, api)) as c:
        await c.get("/items", params={"page": 2})
    async with client(recorder(path, api)) as c:
        assert (await c.get("/items", params={"page": 2})).json() == {"page": 2}
    assert len(api.requests) == 1


async def test_secrets_are_scrubbed_in_both_directions(tmp_path: Path) -> None:
    """Auth headers, Set-Cookie, token fields in JSON and form bodies, auth query parameters
    and every value the redactor knows are replaced before anything is written."""
    path = tmp_path / "secrets.json"
    async with client(recorder(path, mode="record")) as c:
        await c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_secret": "cs-abcdef", "scope": "x"},
            params={"api_key": "query-key-998877"},
        )
        await c.get("/echo")
    text = path.read_text()
    for secret in (
        TOKEN,
        ISSUED,
        COOKIE,
        "rt_77aa88bb",
        "pw-123456",
        "cs-abcdef",
        "query-key-998877",
    ):
        assert secret not in text
    stored = json.loads(text)["interactions"]
    request_headers = dict(stored[0]["request"]["headers"])
    assert request_headers["Authorization"] == "[REDACTED]"
    assert dict(stored[0]["response"]["headers"])["Set-Cookie"] == "[REDACTED]"
    assert stored[0]["response"]["body"]["json"]["access_token"] == "[REDACTED]"
    assert ["grant_type", "client_credentials"] in stored[0]["request"]["body"]["form"]
    assert ["client_secret", "[REDACTED]"] in stored[0]["request"]["body"]["form"]
    assert ["api_key", "[REDACTED]"] in stored[0]["request"]["query"]
    assert stored[1]["response"]["body"]["json"] == {"you_sent": "[REDACTED]"}


async def test_scrubbed_requests_still_match_on_replay(tmp_path: Path) -> None:
    """Replay scrubs the live request the same way, so secret-bearing requests still match."""
    path = tmp_path / "match.json"
    async with client(recorder(path, mode="record")) as c:
        first = await c.post("/oauth/token", data={"client_secret": "cs-abcdef"})
    async with client(recorder(path, mode="replay")) as c:
        again = await c.post("/oauth/token", data={"client_secret": "cs-abcdef"})
    assert again.json()["access_token"] == "[REDACTED]"
    assert first.json()["access_token"] == ISSUED


async def test_a_leak_the_scrubber_missed_stops_the_write(tmp_path: Path) -> None:
    """A known secret in a form scrubbing does not cover (base64 in an unknown header) makes
    saving fail, names where it is without showing it, and writes nothing."""
    path = tmp_path / "leak.json"
    legacy = base64.b64encode(f"svc:{TOKEN}".encode()).decode()
    with pytest.raises(CassetteLeak) as info:
        async with client(recorder(path, mode="record")) as c:
            await c.get("/items", params={"page": 1}, headers={"X-Legacy-Auth": f"Basic {legacy}"})
    assert "interactions[0].request.headers[" in str(info.value)
    assert TOKEN not in str(info.value)
    assert legacy not in str(info.value)
    assert not path.exists()


async def test_secrets_given_to_the_cassette_are_checked_too(tmp_path: Path) -> None:
    """Values passed as secrets= are scrubbed like the redactor's own."""
    path = tmp_path / "extra.json"
    api = upstream()
    api.stub("GET", "/profile", Reply(json={"note": "db password is hunter22-xyz"}))
    async with client(recorder(path, api, mode="record", secrets=["hunter22-xyz"])) as c:
        await c.get("/profile")
    assert "hunter22-xyz" not in path.read_text()


async def test_ci_means_replay_only(tmp_path: Path) -> None:
    """With CI=true a missing cassette fails clearly instead of calling the real API."""
    path = tmp_path / "missing.json"
    api = upstream()
    cassette = Cassette(path, inner=api.transport(), mode="record", environ={"CI": "true"})
    assert cassette.mode == "replay"
    async with client(cassette) as c:
        with pytest.raises(CassetteMismatch, match="CI=true means replay only"):
            await c.get("/items", params={"page": 1})
    assert api.requests == []
    assert not path.exists()


async def test_mismatch_shows_the_nearest_interaction_field_by_field(tmp_path: Path) -> None:
    """An unmatched request names the nearest recorded one and each field that differs."""
    path = tmp_path / "diff.json"
    async with client(recorder(path, mode="record")) as c:
        await c.get("/items", params={"page": 1})
        await c.get("/echo")
    async with client(recorder(path, mode="replay")) as c:
        with pytest.raises(CassetteMismatch) as info:
            await c.get("/items", params={"page": 2})
    message = str(info.value)
    assert "nearest: #0 GET http://api.localhost/items" in message
    assert "query: only recorded ['page=1']; only in request ['page=2']" in message


async def test_identical_calls_replay_in_order_then_run_out(tmp_path: Path) -> None:
    """Repeated identical requests get their recorded answers in order; one more is refused
    with a hint, unless allow_repeats is set."""
    path = tmp_path / "repeat.json"
    async with client(recorder(path, mode="record")) as c:
        assert [(await c.get("/counter")).json() for _ in range(2)] == [1, 2]
    async with client(recorder(path, mode="replay")) as c:
        assert [(await c.get("/counter")).json() for _ in range(2)] == [1, 2]
        with pytest.raises(CassetteMismatch, match="already played"):
            await c.get("/counter")
    async with client(recorder(path, mode="replay", allow_repeats=True)) as c:
        assert [(await c.get("/counter")).json() for _ in range(3)] == [1, 2, 2]


async def test_retries_replay_the_recorded_attempts(tmp_path: Path) -> None:
    """A call that needed a retry when recorded needs the same retry on replay."""
    path = tmp_path / "retry.json"
    retry = tether.Retry(attempts=3, jitter=False, budget=None)
    async with client(recorder(path, mode="record"), retry=retry) as c:
        recorded = await c.get("/flaky")
    async with client(recorder(path, mode="replay"), retry=retry) as c:
        replayed = await c.get("/flaky")
    assert recorded.attempts == replayed.attempts == 2
    assert replayed.json() == "ok"


async def test_append_keeps_old_interactions_and_adds_new_ones(tmp_path: Path) -> None:
    """Mode append replays what matches and records the rest into the same file."""
    path = tmp_path / "append.json"
    api = upstream()
    async with client(recorder(path, api, mode="record")) as c:
        await c.get("/items", params={"page": 1})
    async with client(recorder(path, api, mode="append")) as c:
        await c.get("/items", params={"page": 1})
        await c.get("/items", params={"page": 2})
    stored = json.loads(path.read_text())["interactions"]
    assert [dict(i["request"]["query"])["page"] for i in stored] == ["1", "2"]
    assert len(api.requests) == 2


async def test_json_bodies_match_regardless_of_key_order(tmp_path: Path) -> None:
    """Request bodies are compared as JSON, so key order does not break a replay."""
    path = tmp_path / "json.json"
    api = upstream()
    api.stub("POST", "/search", Reply(json={"hits": 3}))
    async with client(recorder(path, api, mode="record")) as c:
        await c.post(
            "/search", content=b'{"a":1,"b":2}', headers={"Content-Type": "application/json"}
        )
    async with client(recorder(path, api, mode="replay")) as c:
        response = await c.post(
            "/search", content=b'{"b":2,"a":1}', headers={"Content-Type": "application/json"}
        )
    assert response.json() == {"hits": 3}


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    """A file that is not a tether cassette is an error, not an empty cassette."""
    path = tmp_path / "vcr.json"
    path.write_text('{"interactions": []}')
    with pytest.raises(tether.TetherError, match="not a tether cassette"):
        Cassette(path, mode="replay", environ={})
    with pytest.raises(tether.ConfigError, match="cassette mode"):
        Cassette(path, mode="sometimes", environ={})


async def test_query_parameters_the_credential_uses_are_scrubbed(tmp_path: Path) -> None:
    """An API key sent as a query parameter (OpenWeatherMap's appid) never reaches the file,
    and the scrubbed request still replays."""
    path = tmp_path / "appid.json"
    api = upstream()
    api.stub("GET", "/weather", Reply(json={"temp": 3}))
    auth = tether.auth.ApiKey("appid", "owm-key-1234567", location="query")
    async with client(recorder(path, api, mode="record"), auth=auth) as c:
        await c.get("/weather", params={"q": "Oslo"})
    text = path.read_text()
    assert "owm-key-1234567" not in text
    assert ["appid", "[REDACTED]"] in json.loads(text)["interactions"][0]["request"]["query"]
    async with client(recorder(path, api, mode="replay"), auth=auth) as c:
        assert (await c.get("/weather", params={"q": "Oslo"})).json() == {"temp": 3}
