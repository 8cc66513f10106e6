"""Streams that resume: a JSON WebSocket client and a server-sent events client.

Both reconnect with jittered exponential backoff, honour `Retry-After` on a refused handshake,
authenticate with `tether.auth` credentials and keep secrets out of logs and errors. See
docs/streams.md.
"""

from tether._core._reconnect import CLOSE_CODE_ACTIONS, CloseAction, Reconnect
from tether._core._sse import ServerSentEvent
from tether.streams._errors import (
    MessageTooBig,
    NotConnected,
    StreamClosed,
    StreamError,
    StreamProtocolError,
)
from tether.streams._events import Disconnect, Overflow, StreamState, StreamStats
from tether.streams._sse import SSE
from tether.streams._websocket import AuthMessage, Subscription, WebSocket

__all__ = [
    "CLOSE_CODE_ACTIONS",
    "SSE",
    "AuthMessage",
    "CloseAction",
    "Disconnect",
    "MessageTooBig",
    "NotConnected",
    "Overflow",
    "Reconnect",
    "ServerSentEvent",
    "StreamClosed",
    "StreamError",
    "StreamProtocolError",
    "StreamState",
    "StreamStats",
    "Subscription",
    "WebSocket",
]
