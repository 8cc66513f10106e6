"""Errors a stream raises when it stops for a reason that reconnecting would not fix."""

from __future__ import annotations

from tether._errors import TetherError

__all__ = ["MessageTooBig", "NotConnected", "StreamClosed", "StreamError", "StreamProtocolError"]


class StreamError(TetherError):
    """A stream stopped, or refused an operation, for a reason reconnecting would not fix."""


class StreamClosed(StreamError):
    """The server closed the WebSocket with a code whose policy is to stop (RFC 6455 §7.4.1)."""

    def __init__(self, message: str, *, code: int | None, reason: str = "") -> None:
        super().__init__(message)
        #: The close code, or None when the connection ended without a close frame.
        self.code = code
        #: The close reason the server gave, redacted.
        self.reason = reason


class MessageTooBig(StreamClosed):
    """A message exceeded a size limit (close code 1009): raise `max_message_size`, or fix the
    server; reconnecting would only fail the same way."""


class StreamProtocolError(StreamError):
    """The server broke the stream's protocol (an SSE answer that is not `text/event-stream`,
    an over-long event line)."""


class NotConnected(StreamError):
    """`send()` was called while no connection is open; nothing was sent.

    Messages that must reach every future connection belong in `subscribe()`, which replays
    them after each reconnect.
    """
