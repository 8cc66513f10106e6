"""Stream reconnection decisions: which closes end a stream, which handshakes are retried, and
how long to wait before the next attempt. Pure: time and randomness are passed in.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from tether._core._backoff import full_jitter
from tether._errors import ConfigError

__all__ = [
    "CLOSE_CODE_ACTIONS",
    "CloseAction",
    "HandshakeVerdict",
    "Reconnect",
    "close_action",
    "close_code_name",
    "give_up_reason",
    "handshake_verdict",
    "reconnect_delay",
]


class CloseAction(enum.StrEnum):
    """What a stream does when the server closes it."""

    #: Wait out the backoff and connect again; subscriptions are replayed.
    RECONNECT = "reconnect"
    #: Stop and raise `ReauthRequired`: reconnecting with the same credentials would be refused.
    REAUTH = "reauth"
    #: Stop and raise: the close says something is wrong that reconnecting would repeat.
    FAIL = "fail"


#: RFC 6455 §7.4.1 status codes, plus the 1012-1014 codes from the IANA "WebSocket Close Code
#: Number Registry" and its 3000-range entries for authorization.
CLOSE_CODE_ACTIONS: Mapping[int, CloseAction] = {
    # 1000 normal closure: the server ended this session, but a stream's job is to continue.
    1000: CloseAction.RECONNECT,
    # 1001 going away: a server restart or a deploy.
    1001: CloseAction.RECONNECT,
    # 1002 protocol error, 1003 unsupported data, 1007 invalid payload data: the next
    # connection would send or receive the same bytes.
    1002: CloseAction.FAIL,
    1003: CloseAction.FAIL,
    # 1005 "no status received" is reserved (§7.4.1: never sent on the wire); a close frame
    # without a code means the server gave no reason.
    1005: CloseAction.RECONNECT,
    # 1006 abnormal closure, also reserved: the TCP connection dropped without a close frame.
    1006: CloseAction.RECONNECT,
    1007: CloseAction.FAIL,
    # 1008 policy violation: what most servers send when they reject a token after upgrade.
    1008: CloseAction.REAUTH,
    # 1009 message too big: a limit on one side is wrong; retrying would loop forever.
    1009: CloseAction.FAIL,
    # 1010 mandatory extension: the client lacks what the server requires.
    1010: CloseAction.FAIL,
    # 1011 internal error, 1012 service restart, 1013 try again later, 1014 bad gateway.
    1011: CloseAction.RECONNECT,
    1012: CloseAction.RECONNECT,
    1013: CloseAction.RECONNECT,
    1014: CloseAction.RECONNECT,
    # 1015 TLS handshake failure (reserved): a certificate problem does not fix itself.
    1015: CloseAction.FAIL,
    # IANA registry: 3000 Unauthorized, 3003 Forbidden.
    3000: CloseAction.REAUTH,
    3003: CloseAction.REAUTH,
    # Private-use codes that APIs commonly build from HTTP 401/403.
    4001: CloseAction.REAUTH,
    4003: CloseAction.REAUTH,
    4401: CloseAction.REAUTH,
    4403: CloseAction.REAUTH,
}

_CLOSE_CODE_NAMES = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "abnormal closure",
    1007: "invalid payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
    3000: "unauthorized",
    3003: "forbidden",
}


def close_code_name(code: int | None) -> str:
    """A readable name for a close code, for log lines and disconnect reasons."""
    if code is None:
        return "connection lost"
    name = _CLOSE_CODE_NAMES.get(code)
    if name is not None:
        return name
    if 4000 <= code <= 4999:
        return "application-defined"
    return "unknown"


def close_action(
    code: int | None, overrides: Mapping[int, CloseAction] | None = None
) -> CloseAction:
    """What to do after the connection closed with `code` (None: no close frame at all).

    `overrides` wins over the default table; codes in neither are reconnected, since an unknown
    code (most often an application's 4xxx) says nothing that makes the next attempt futile.
    """
    if overrides and code is not None and code in overrides:
        return overrides[code]
    if code is None:
        return CloseAction.RECONNECT
    return CLOSE_CODE_ACTIONS.get(code, CloseAction.RECONNECT)


class HandshakeVerdict(enum.StrEnum):
    """How a refused opening handshake (an HTTP status instead of 101, or instead of an
    SSE 200) is treated."""

    RETRY = "retry"
    AUTH = "auth"
    FAIL = "fail"


def handshake_verdict(status: int) -> HandshakeVerdict:
    """401 and 403 stop (the credential is wrong); transient statuses are retried; the rest fail.

    429 and 503 are retried after the server's `Retry-After` (RFC 9110 §10.2.3), which the
    `websockets` library treats as fatal and users have asked to be honoured.
    """
    if status in (401, 403):
        return HandshakeVerdict.AUTH
    if status in (408, 425, 429, 500, 502, 503, 504):
        return HandshakeVerdict.RETRY
    return HandshakeVerdict.FAIL


def _seconds(name: str, value: float, *, allow_zero: bool = False) -> None:
    # Checked at run time too: configuration often comes from untyped TOML.
    candidate: object = value
    if (
        isinstance(candidate, bool)
        or not isinstance(candidate, int | float)
        or not math.isfinite(candidate)
    ):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnect:
    """How a stream reconnects.

    Args:
        initial_delay: Backoff ceiling before the first reconnect, in seconds; it doubles per
            consecutive failed attempt, with full jitter, like `tether.Retry`.
        max_delay: Largest backoff ceiling (also caps an SSE server's `retry:` field).
        jitter: Full jitter; False waits the ceiling itself.
        max_attempts: Consecutive failed attempts before the stream gives up and raises the
            last error; None keeps trying forever.
        max_retry_after: Longest `Retry-After` honoured on a refused handshake; longer
            advice stops the stream with the error, which carries the advised wait.
        stable_after: A connection that stayed up this long resets the backoff, so a server
            that accepts and then drops at once still backs off instead of being hammered.
    """

    initial_delay: float = 1.0
    max_delay: float = 300.0
    jitter: bool = True
    max_attempts: int | None = None
    max_retry_after: float = 900.0
    stable_after: float = 60.0

    def __post_init__(self) -> None:
        _seconds("Reconnect.initial_delay", self.initial_delay)
        _seconds("Reconnect.max_delay", self.max_delay)
        if self.max_delay < self.initial_delay:
            raise ConfigError("Reconnect.max_delay must not be smaller than initial_delay")
        _seconds("Reconnect.max_retry_after", self.max_retry_after, allow_zero=True)
        _seconds("Reconnect.stable_after", self.stable_after, allow_zero=True)
        attempts: object = self.max_attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise ConfigError(
                f"Reconnect.max_attempts must be a positive int or None, got {self.max_attempts!r}"
            )


def reconnect_delay(
    policy: Reconnect,
    attempt: int,
    *,
    rand: float,
    retry_after: float | None = None,
    server_retry: float | None = None,
) -> float:
    """Seconds to wait before reconnect attempt number `attempt` (1 for the first).

    The jittered backoff is a floor under the server's advice: `retry_after` (a refused
    handshake's `Retry-After`, already checked against `max_retry_after`) is waited in full,
    and an SSE server's `retry:` reconnection time (WHATWG HTML §9.2.3) is waited too, capped
    by `max_delay` so a server cannot park a client indefinitely.
    """
    delay = full_jitter(
        attempt,
        base=policy.initial_delay,
        cap=policy.max_delay,
        rand=rand if policy.jitter else 1.0,
    )
    if server_retry is not None:
        delay = max(delay, min(server_retry, policy.max_delay))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def give_up_reason(policy: Reconnect, attempt: int, *, retry_after: float | None) -> str | None:
    """Why reconnect attempt `attempt` must not be made, or None when it may."""
    if policy.max_attempts is not None and attempt > policy.max_attempts:
        return f"gave up after {policy.max_attempts} failed reconnect attempts"
    if retry_after is not None and retry_after > policy.max_retry_after:
        return (
            f"the server asked to retry after {retry_after:.0f} s, longer than "
            f"max_retry_after ({policy.max_retry_after:.0f} s)"
        )
    return None
