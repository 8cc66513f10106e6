"""Value objects a stream hands to its hooks and callers."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tether._core._reconnect import CloseAction

__all__ = ["Disconnect", "Overflow", "StreamState", "StreamStats"]


class Overflow(enum.StrEnum):
    """What a WebSocket does when its receive queue is full."""

    #: Stop reading: TCP flow control pushes back on the server. Nothing is lost, but a
    #: consumer that never catches up eventually makes the server drop the connection.
    BLOCK = "block"
    #: Discard the oldest queued message to make room; `StreamStats.dropped` counts them.
    DROP_OLDEST = "drop_oldest"
    #: Close the connection and reconnect (subscriptions replayed): for feeds where a fresh
    #: snapshot beats a backlog. Messages sent while disconnected are not received.
    DISCONNECT = "disconnect"


class StreamState(enum.StrEnum):
    """Where a stream is in its life."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    #: Waiting out the backoff before the next attempt.
    WAITING = "waiting"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect:
    """Why a connection ended, and what the stream does next.

    `code` is the WebSocket close code (None when the connection dropped without a close frame,
    and always None for SSE); `reason` is a readable, redacted explanation.
    """

    code: int | None
    reason: str
    action: CloseAction
    error: BaseException | None = None
    #: True when the client itself closed the link because its receive queue overflowed.
    overflow: bool = False

    @property
    def will_reconnect(self) -> bool:
        return self.action is CloseAction.RECONNECT


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStats:
    """Counters since the stream was created."""

    #: Connections established (1 after the first; each reconnect adds one).
    connections: int
    #: Failed connection attempts (refused, timed out, handshake errors).
    failed_attempts: int
    #: Messages or events received and passed on.
    received: int
    #: Messages skipped because they were not valid JSON.
    invalid: int
    #: Messages skipped by the dedupe window.
    duplicates: int
    #: Messages discarded by `Overflow.DROP_OLDEST`.
    dropped: int
    #: Disconnects caused by `Overflow.DISCONNECT`.
    overflows: int
