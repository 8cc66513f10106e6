"""Pure reconnect decisions: the close-code table, handshake verdicts, backoff and giving up."""

from __future__ import annotations

import pytest

from tether import ConfigError
from tether._core._dedupe import DedupeWindow
from tether._core._reconnect import (
    CloseAction,
    HandshakeVerdict,
    Reconnect,
    close_action,
    close_code_name,
    give_up_reason,
    handshake_verdict,
    reconnect_delay,
)


@pytest.mark.parametrize("code", [1000, 1001, 1005, 1006, 1011, 1012, 1013, 1014, None])
def test_transient_closes_reconnect(code: int | None) -> None:
    """Normal, going-away, abnormal and server-error closes (and a lost link) reconnect."""
    assert close_action(code) is CloseAction.RECONNECT


@pytest.mark.parametrize("code", [1008, 3000, 3003, 4001, 4003, 4401, 4403])
def test_auth_closes_stop_for_reauthentication(code: int) -> None:
    """Policy-violation and unauthorized/forbidden codes stop the stream for re-authentication."""
    assert close_action(code) is CloseAction.REAUTH


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1009, 1010, 1015])
def test_protocol_and_size_closes_fail(code: int) -> None:
    """Closes that the next connection would repeat (protocol, data, size, TLS) fail loudly."""
    assert close_action(code) is CloseAction.FAIL


def test_unknown_application_codes_reconnect_and_overrides_win() -> None:
    """An unlisted 4xxx reconnects by default; a caller's override beats the table."""
    assert close_action(4999) is CloseAction.RECONNECT
    assert close_action(4999, {4999: CloseAction.FAIL}) is CloseAction.FAIL
    assert close_action(1008, {1008: CloseAction.RECONNECT}) is CloseAction.RECONNECT


def test_close_code_names_are_readable() -> None:
    """Disconnect reasons name the code instead of showing a bare number."""
    assert close_code_name(1011) == "internal error"
    assert close_code_name(None) == "connection lost"
    assert close_code_name(4321) == "application-defined"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (401, HandshakeVerdict.AUTH),
        (403, HandshakeVerdict.AUTH),
        (429, HandshakeVerdict.RETRY),
        (503, HandshakeVerdict.RETRY),
        (502, HandshakeVerdict.RETRY),
        (404, HandshakeVerdict.FAIL),
        (400, HandshakeVerdict.FAIL),
        (301, HandshakeVerdict.FAIL),
    ],
)
def test_handshake_verdicts(status: int, verdict: HandshakeVerdict) -> None:
    """A refused upgrade is retried only when the status is transient; 401/403 stop."""
    assert handshake_verdict(status) is verdict


def test_backoff_doubles_to_the_cap_without_jitter() -> None:
    """Defaults grow 1 s, 2 s, 4 s ... and stop growing at 300 s."""
    policy = Reconnect(jitter=False)
    delays = [reconnect_delay(policy, n, rand=0.0) for n in range(1, 11)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]


def test_full_jitter_stays_below_the_ceiling() -> None:
    """With jitter the delay is the ceiling times the random draw."""
    policy = Reconnect()
    assert reconnect_delay(policy, 3, rand=0.25) == pytest.approx(1.0)
    assert reconnect_delay(policy, 30, rand=0.5) == pytest.approx(150.0)


def test_retry_after_is_a_floor() -> None:
    """A handshake's Retry-After is waited in full even when the backoff is shorter."""
    policy = Reconnect(jitter=False)
    assert reconnect_delay(policy, 1, rand=0.0, retry_after=42.0) == 42.0
    assert reconnect_delay(policy, 8, rand=0.0, retry_after=42.0) == 128.0


def test_sse_server_retry_is_a_floor_capped_by_max_delay() -> None:
    """An SSE `retry:` raises the wait, but never past max_delay."""
    policy = Reconnect(jitter=False, max_delay=60.0)
    assert reconnect_delay(policy, 1, rand=0.0, server_retry=5.0) == 5.0
    assert reconnect_delay(policy, 1, rand=0.0, server_retry=10_000.0) == 60.0


def test_giving_up() -> None:
    """The stream gives up past max_attempts, or when the server asks for too long a wait."""
    policy = Reconnect(max_attempts=3, max_retry_after=60.0)
    assert give_up_reason(policy, 3, retry_after=None) is None
    assert "3 failed reconnect attempts" in (give_up_reason(policy, 4, retry_after=None) or "")
    assert "retry after 600 s" in (give_up_reason(policy, 1, retry_after=600.0) or "")
    assert give_up_reason(Reconnect(), 10_000, retry_after=None) is None


@pytest.mark.parametrize(
    "options",
    [
        {"initial_delay": 0},
        {"initial_delay": float("nan")},
        {"max_delay": 0.5},
        {"max_attempts": 0},
        {"max_attempts": True},
        {"max_retry_after": -1},
        {"initial_delay": "1"},
    ],
)
def test_bad_reconnect_options_are_config_errors(options: dict[str, object]) -> None:
    """Nonsense reconnect settings are refused when the policy is built."""
    with pytest.raises(ConfigError):
        Reconnect(**options)  # type: ignore[arg-type]


def test_dedupe_window_forgets_the_oldest() -> None:
    """Keys repeat as duplicates while inside the window and are forgotten once pushed out."""
    window = DedupeWindow(3)
    assert [window.seen(k) for k in (1, 2, 1, 3, 4)] == [False, False, True, False, False]
    assert len(window) == 3
    assert window.seen(1) is False  # evicted by 4
    assert window.seen(4) is True
