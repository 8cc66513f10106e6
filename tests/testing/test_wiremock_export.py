"""Exporting a MockAPI to WireMock mappings: what maps, and what is refused by name."""

from __future__ import annotations

import re

import pytest

import tether
from tether.testing import (
    ABSENT,
    Drip,
    Hang,
    Latency,
    MalformedChunk,
    MockAPI,
    RateLimited,
    Reply,
    Reset,
    Truncate,
    to_wiremock,
)


def test_sequences_become_private_scenarios() -> None:
    """A reply sequence turns into chained scenario states whose last step repeats."""
    api = MockAPI()
    api.stub("GET", "/flaky", Reply(503, times=2), Reply(json="ok"))
    steps = to_wiremock(api)
    assert [m["response"]["status"] for m in steps] == [503, 503, 200]
    assert [m["requiredScenarioState"] for m in steps] == ["Started", "step 1", "step 2"]
    assert [m.get("newScenarioState") for m in steps] == ["step 1", "step 2", None]


def test_matchers_and_faults_translate() -> None:
    """Matchers, priorities and the shared faults have their WireMock spelling."""
    api = MockAPI(hang_limit=9)
    api.stub(
        "POST",
        re.compile(r"/v\d+/x"),
        Reply(json=1, fault=Latency(0.25)),
        query={"q": re.compile("a.*")},
        headers={"X-Debug": ABSENT},
        json_partial={"a": 1},
        priority=3,
    )
    api.stub("GET", "/reset", Reset())
    api.stub("GET", "/chunk", MalformedChunk())
    api.stub("GET", "/hang", Hang())
    api.stub("GET", "/drip", Reply(body="abc", fault=Drip(chunks=3, duration=0.3)))
    api.stub("GET", "/limited", RateLimited(retry_after=2))
    first, reset, chunk, hang, drip, limited = to_wiremock(api)
    assert first["priority"] == 1
    assert reset["priority"] == 4
    assert first["request"]["urlPathPattern"] == r"/v\d+/x"
    assert first["request"]["queryParameters"] == {"q": {"matches": "a.*"}}
    assert first["request"]["headers"] == {"X-Debug": {"absent": True}}
    assert first["request"]["bodyPatterns"] == [
        {"equalToJson": {"a": 1}, "ignoreExtraElements": True}
    ]
    assert first["response"]["fixedDelayMilliseconds"] == 250
    assert reset["response"] == {"fault": "CONNECTION_RESET_BY_PEER"}
    assert chunk["response"] == {"fault": "MALFORMED_RESPONSE_CHUNK"}
    assert hang["response"]["fixedDelayMilliseconds"] == 9000
    assert drip["response"]["chunkedDribbleDelay"] == {"numberOfChunks": 3, "totalDuration": 300}
    assert limited["response"]["status"] == 429
    assert limited["response"]["headers"]["Retry-After"] == "2"


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (lambda api: api.stub("GET", "/x", Truncate(keep=1)), "Truncate has no WireMock"),
        (lambda api: api.stub("GET", "/x", Reset(after_headers=True)), "MalformedChunk"),
        (lambda api: api.stub("GET", "/x", RateLimited(as_date=True)), "HTTP-date"),
        (lambda api: api.stub("GET", "/x", Reply(fault=Latency(1, jitter=1))), "jitter"),
        (lambda api: api.stub("GET", "/x/{id}"), "path templates"),
        (lambda api: api.stub("GET", "/x", where=lambda r: True), "where="),
        (lambda api: api.stub("GET", "/x", handler=lambda r, p: Reply()), "handlers"),
        (lambda api: api.collection("/items"), "built-in routes"),
        (lambda api: api.inject(Hang()), "scheduled fault rules"),
    ],
)
def test_what_wiremock_cannot_do_is_refused(define: object, message: str) -> None:
    """Features with no faithful WireMock form raise ConfigError instead of drifting."""
    api = MockAPI()
    define(api)  # type: ignore[operator]
    with pytest.raises(tether.ConfigError, match=message):
        to_wiremock(api)


async def test_malformed_chunk_in_process_is_a_network_error() -> None:
    """In-process, a malformed chunk is what a careful client reports: a cut-short body."""
    api = MockAPI()
    api.stub("GET", "/x", MalformedChunk())
    async with api.client(retry=None) as client:
        with pytest.raises(tether.NetworkError, match="malformed chunk"):
            await client.get("/x")
