"""`[hub] traces = true`: the hub's units of work are OpenTelemetry spans, secrets left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tether.hub import Hub
from tether.testing import MockAPI, Reply

from .helpers import until, weather_toml, write_spec

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # The global provider can be set once per process; every test shares it and clears it.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_polls_are_spans_with_names_and_failures_marked(
    tmp_path: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each poll is a `tether.hub.poll` span carrying the poller and integration names; a
    failed poll's span has an error status and the (redacted) exception, never the key."""
    api = MockAPI()
    api.stub("GET", "/current", Reply(json={"t": 1}))
    async with api.serve() as server:
        monkeypatch.setenv("TRACE_TEST_KEY", "trace-secret-5d1c")
        toml = weather_toml(server.url, extra="[hub]\ntraces = true\n").replace(
            "retry = false",
            "retry = false\n"
            'auth = { type = "api_key", name = "appid", location = "query", '
            'value = { env = "TRACE_TEST_KEY" } }',
        )
        spec = write_spec(tmp_path, toml)
        async with Hub(spec, hub_id="traced"):

            async def polled() -> list[ReadableSpan]:
                return _named(spans, "tether.hub.poll")

            first = (await until(polled))[0]
            assert first.attributes is not None
            assert dict(first.attributes) == {"poller": "oslo", "integration": "weather"}
            assert first.status.status_code != StatusCode.ERROR

            api.stub("GET", "/current", Reply(status=500, json={"echo": "trace-secret-5d1c"}))

            async def failed() -> list[ReadableSpan]:
                return [
                    s
                    for s in _named(spans, "tether.hub.poll")
                    if s.status.status_code == StatusCode.ERROR
                ]

            bad = (await until(failed))[0]
            assert bad.events
            assert bad.events[0].name == "exception"
    recorded = [
        str(value)
        for span in spans.get_finished_spans()
        for attributes in (span.attributes, *(event.attributes for event in span.events))
        for value in (attributes or {}).values()
    ]
    assert any("500 Internal Server Error" in text for text in recorded)
    assert not [text for text in recorded if "trace-secret-5d1c" in text]


async def test_without_traces_the_hub_makes_no_spans(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """Tracing is off unless the config asks for it, even with an SDK installed."""
    api = MockAPI()
    stub = api.stub("GET", "/current", Reply(json={"t": 1}))
    async with api.serve() as server:
        spec = write_spec(tmp_path, weather_toml(server.url))
        async with Hub(spec, hub_id="quiet"):

            async def polled() -> bool:
                return len(stub.calls) >= 2

            await until(polled)
    assert not [s for s in spans.get_finished_spans() if s.name.startswith("tether.hub")]
