"""Server-sent events: an incremental parser for `text/event-stream`, sans I/O.

Follows WHATWG HTML §9.2.6 "Interpreting an event stream" (section numbers below are that
document's). Bytes go in with `feed`, whole events come out; the parser keeps the stream's
last event ID and reconnection time, which the client needs to resume (§9.2.3).
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEParser", "SSEProtocolError", "ServerSentEvent"]

#: A line or an event's data larger than this is refused: a stream that never sends a newline
#: would otherwise grow the buffer without bound.
DEFAULT_MAX_EVENT_SIZE = 1024 * 1024


class SSEProtocolError(ValueError):
    """The stream broke a limit the parser enforces (an over-long line or event)."""


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event.

    `event` is the event type ("message" unless the server named one), `data` the joined data
    lines, `id` the stream's last event ID when the event was dispatched (it persists across
    events until the server sets another), and `retry` the reconnection time in milliseconds
    if this event's block carried a `retry:` field.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None

    def json(self) -> Any:
        """`data` decoded as JSON."""
        return json.loads(self.data)


class SSEParser:
    """Turns chunks of an event stream into events; one parser per connection.

    `last_event_id` and `retry` outlive the connection: copy them into the next parser (the
    `last_event_id=` argument) so a reconnect resumes where the previous stream stopped.
    """

    __slots__ = (
        "_buffer",
        "_data",
        "_data_size",
        "_decoder",
        "_event_type",
        "_id_buffer",
        "_max_event_size",
        "_pending_cr",
        "_retry_in_block",
        "_started",
        "last_event_id",
        "retry",
    )

    def __init__(
        self, *, last_event_id: str = "", max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    ) -> None:
        # §9.2.6: the stream is always UTF-8; invalid sequences become U+FFFD, never an error.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._pending_cr = False
        self._started = False
        self._data: list[str] = []
        self._data_size = 0
        self._event_type = ""
        self._max_event_size = max_event_size
        self._retry_in_block: int | None = None
        #: The last event ID buffer of §9.2.6; becomes the stream's last event ID on dispatch.
        self._id_buffer = last_event_id
        #: The stream's last event ID: what `Last-Event-ID` carries on reconnect.
        self.last_event_id = last_event_id
        #: The reconnection time the server asked for with `retry:`, in milliseconds.
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Parse `chunk` (any slice of the stream) and return the events it completed."""
        text = self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            # §9.2.6: one leading U+FEFF BYTE ORDER MARK is ignored.
            if text[0] == "\ufeff":
                text = text[1:]
        return self._lines(text)

    def close(self) -> list[ServerSentEvent]:
        """End of stream: flush the decoder and discard an unfinished event (§9.2.6).

        Returns any event the flushed bytes completed (rare: only bytes held back as an
        incomplete UTF-8 sequence are still unread).
        """
        text = self._decoder.decode(b"", final=True)
        events = self._lines(text)
        self._buffer = ""
        self._reset_block()
        return events

    def _lines(self, text: str) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        if not text:
            return events
        if self._pending_cr:
            # A CR ended the previous chunk; if this one starts with LF it is the same CRLF
            # line ending (§9.2.5: end-of-line = CRLF / LF / CR), not an extra empty line.
            self._pending_cr = False
            if text[0] == "\n":
                text = text[1:]
        buffer = self._buffer + text if self._buffer else text
        start = 0
        length = len(buffer)
        while start < length:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr < 0 and lf < 0:
                break
            if cr < 0 or (0 <= lf < cr):
                end, next_start = lf, lf + 1
            elif cr + 1 < length:
                end = cr
                next_start = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:
                # A CR at the very end: the line is complete, but an LF may follow in the
                # next chunk and must then be swallowed.
                end, next_start = cr, cr + 1
                self._pending_cr = True
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = next_start
        rest = buffer[start:]
        if len(rest) > self._max_event_size:
            raise SSEProtocolError(
                f"event stream line longer than {self._max_event_size} characters"
            )
        self._buffer = rest
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            # A comment: servers send these as keep-alives.
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            # §9.2.6: a single leading space after the colon is not part of the value.
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max_event_size:
                raise SSEProtocolError(f"event data larger than {self._max_event_size} characters")
            self._data.append(value)
        elif name == "event":
            self._event_type = value
        elif name == "id":
            # §9.2.6: an id containing NULL is ignored (it could not be sent back in a header).
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            # §9.2.6: only ASCII digits; anything else leaves the reconnection time unchanged.
            self.retry = int(value)
            self._retry_in_block = self.retry
        # Any other field name is ignored (§9.2.6).
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        # §9.2.6 "dispatch the event": the last event ID is updated even when no event fires,
        # so an `id:`-only block still moves the resume point.
        self.last_event_id = self._id_buffer
        if not self._data:
            self._reset_block()
            return None
        event = ServerSentEvent(
            data="\n".join(self._data),
            event=self._event_type or "message",
            id=self.last_event_id,
            retry=self._retry_in_block,
        )
        self._reset_block()
        return event

    def _reset_block(self) -> None:
        self._data = []
        self._data_size = 0
        self._event_type = ""
        self._retry_in_block = None
