"""The SSE parser against WHATWG HTML §9.2.6, fed whole and in arbitrary pieces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether._core._sse import ServerSentEvent, SSEParser, SSEProtocolError


def parse(text: str | bytes, **options: object) -> list[ServerSentEvent]:
    parser = SSEParser(**options)  # type: ignore[arg-type]
    data = text.encode() if isinstance(text, str) else text
    return parser.feed(data) + parser.close()


def test_multiline_data_is_joined_with_newlines() -> None:
    """The spec's stock-ticker example: three data lines become one event joined by LF."""
    assert parse("data: YHOO\ndata: +2\ndata: 10\n\n") == [ServerSentEvent(data="YHOO\n+2\n10")]


def test_comments_ids_and_the_leading_space() -> None:
    """The spec's second example: comments skipped, `id` with no value resets the last id, and
    only one leading space is stripped from a value."""
    stream = (
        ": test stream\n\ndata: first event\nid: 1\n\n"
        "data:second event\nid\n\ndata:  third event\n\n"
    )
    assert parse(stream) == [
        ServerSentEvent(data="first event", id="1"),
        ServerSentEvent(data="second event", id=""),
        ServerSentEvent(data=" third event", id=""),
    ]


def test_empty_data_fields_and_a_trailing_incomplete_event() -> None:
    """The spec's third example: `data` alone dispatches an empty event, two give one LF, and
    a final block without its blank line is discarded at the end of the stream."""
    assert parse("data\n\ndata\ndata\n\ndata:") == [
        ServerSentEvent(data=""),
        ServerSentEvent(data="\n"),
    ]


def test_colon_space_is_optional() -> None:
    """The spec's fourth example: `data:test` and `data: test` mean the same."""
    assert parse("data:test\n\ndata: test\n\n") == [ServerSentEvent(data="test")] * 2


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_every_line_ending(eol: str) -> None:
    """LF, CRLF and a lone CR all end lines (§9.2.5)."""
    stream = eol.join(["event: tick", "data: 1", "", "data: 2", "", ""])
    assert parse(stream) == [ServerSentEvent(data="1", event="tick"), ServerSentEvent(data="2")]


def test_crlf_split_between_chunks_is_one_line_ending() -> None:
    """A CR ending one chunk and the LF starting the next make one line break, not two."""
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [ServerSentEvent(data="a")]
    assert parser.feed(b"\ndata: b\r\n\r\n") == [ServerSentEvent(data="b")]


def test_event_type_resets_after_dispatch() -> None:
    """The event type applies to its own block only; the next defaults to "message"."""
    assert parse("event: update\ndata: x\n\ndata: y\n\n") == [
        ServerSentEvent(data="x", event="update"),
        ServerSentEvent(data="y", event="message"),
    ]


def test_last_event_id_persists_and_id_only_blocks_move_it() -> None:
    """The last event ID carries over to later events, and a block with only `id:` updates it
    without dispatching anything."""
    parser = SSEParser()
    events = parser.feed(b"id: 7\ndata: a\n\ndata: b\n\nid: 9\n\n")
    assert [(e.data, e.id) for e in events] == [("a", "7"), ("b", "7")]
    assert parser.last_event_id == "9"


def test_id_with_null_is_ignored() -> None:
    """An id containing NULL cannot be sent back in a header, so the spec ignores it."""
    parser = SSEParser(last_event_id="3")
    assert parser.feed(b"id: 4\x005\ndata: x\n\n") == [ServerSentEvent(data="x", id="3")]


@pytest.mark.parametrize(
    ("line", "expected"), [("retry: 2500", 2500), ("retry: 25.5", None), ("retry: -1", None)]
)
def test_retry_accepts_ascii_digits_only(line: str, expected: int | None) -> None:
    """`retry:` sets the reconnection time only when its value is all ASCII digits."""
    parser = SSEParser()
    parser.feed(f"{line}\ndata: x\n\n".encode())
    assert parser.retry == expected


def test_unknown_fields_are_ignored() -> None:
    """Fields other than event, data, id and retry are ignored."""
    assert parse("foo: bar\ndata: x\nbaz\n\n") == [ServerSentEvent(data="x")]


def test_one_leading_bom_is_skipped() -> None:
    """One leading U+FEFF is ignored; a second is part of the first line's field name."""
    assert parse("\ufeffdata: x\n\n") == [ServerSentEvent(data="x")]
    assert parse("\ufeff\ufeffdata: x\n\n") == []


def test_utf8_split_across_chunks() -> None:
    """A multibyte character cut between two chunks is decoded whole."""
    raw = "data: grüße\n\n".encode()
    cut = raw.index("ü".encode()) + 1
    parser = SSEParser()
    assert parser.feed(raw[:cut]) == []
    assert parser.feed(raw[cut:]) == [ServerSentEvent(data="grüße")]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    """Invalid bytes decode to U+FFFD instead of failing the stream (§9.2.6)."""
    assert parse(b"data: \xff\n\n") == [ServerSentEvent(data="\ufffd")]


def test_over_long_line_is_refused() -> None:
    """A line without an end past the limit raises instead of growing the buffer forever."""
    parser = SSEParser(max_event_size=64)
    with pytest.raises(SSEProtocolError):
        parser.feed(b"data: " + b"x" * 100)


def test_over_large_event_is_refused() -> None:
    """Many short data lines that add up past the limit raise too."""
    parser = SSEParser(max_event_size=64)
    with pytest.raises(SSEProtocolError):
        parser.feed(b"data: 0123456789\n" * 10)


def test_retry_is_reported_on_its_event() -> None:
    """The event whose block carried `retry:` reports it; later events do not repeat it."""
    events = parse("retry: 100\ndata: a\n\ndata: b\n\n")
    assert [e.retry for e in events] == [100, None]


def test_json_helper() -> None:
    """`ServerSentEvent.json()` decodes the data."""
    assert parse('data: {"a": 1}\n\n')[0].json() == {"a": 1}


STREAM = (
    "\ufeff: hello\r\nretry: 10\nid: 1\nevent: a\ndata: x\r\ndata:y\n\n"
    "data: ü€😀\rid: 2\r\r: keepalive\n\ndata\n\nevent: b\ndata: z\r\n\r\nid: 3\n\ndata: tail"
)


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM.encode())), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    """Feeding the stream in arbitrary byte slices yields exactly the events of feeding it whole."""
    raw = STREAM.encode()
    whole = SSEParser()
    expected = whole.feed(raw) + whole.close()
    parser = SSEParser()
    events: list[ServerSentEvent] = []
    previous = 0
    for cut in [*sorted(cuts), len(raw)]:
        events += parser.feed(raw[previous:cut])
        previous = cut
    events += parser.close()
    assert events == expected
    assert (parser.last_event_id, parser.retry) == (whole.last_event_id, whole.retry) == ("3", 10)
    assert [e.data for e in expected] == ["x\ny", "ü€😀", "", "z"]
