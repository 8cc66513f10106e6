"""Server advice parsing: Retry-After in every form, retry-after-ms, x-should-retry."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from tether._core._advice import parse_retry_after, should_retry_header

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def advice(**headers: str) -> float | None:
    return parse_retry_after(
        CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()}), now_wall=NOW
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("0", 0.0), (" 7 ", 7.0), ("1.5", 1.5)],
)
def test_delta_seconds(value: str, expected: float) -> None:
    """Retry-After as delta-seconds is taken as a number of seconds."""
    assert advice(retry_after=value) == expected


def test_http_date_is_measured_from_now() -> None:
    """Retry-After as an HTTP-date gives the seconds from now until that date."""
    assert advice(retry_after="Thu, 01 Jan 2026 00:00:30 GMT") == 30.0


def test_http_date_uses_the_servers_date_header() -> None:
    """With a Date header the wait is measured on the server's clock: client skew is harmless."""
    # The client's clock is 10 minutes behind the server's.
    assert (
        advice(retry_after="Thu, 01 Jan 2026 00:10:30 GMT", date="Thu, 01 Jan 2026 00:10:00 GMT")
        == 30.0
    )


def test_past_date_means_zero() -> None:
    """A date in the past means "retry now", not a negative or huge wait."""
    assert advice(retry_after="Wed, 31 Dec 2025 23:00:00 GMT") == 0.0


def test_milliseconds_win_over_seconds() -> None:
    """retry-after-ms is more precise and is read first."""
    assert advice(retry_after_ms="250", retry_after="3") == 0.25


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf", "", "Thu, 01 Jan 2026 00:00:30"])
def test_garbage_is_ignored(value: str) -> None:
    """Unparseable, negative, infinite or zone-less advice is no advice."""
    assert advice(retry_after=value) is None


def test_bad_milliseconds_fall_back_to_seconds() -> None:
    """A malformed retry-after-ms does not hide a good Retry-After."""
    assert advice(retry_after_ms="x", retry_after="2") == 2.0


def test_no_header_no_advice() -> None:
    """Without either header there is no advice."""
    assert advice() is None


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("FALSE", False), (" true ", True), ("maybe", None)]
)
def test_should_retry_header(value: str, expected: bool | None) -> None:
    """x-should-retry is read case-insensitively; anything but true/false is ignored."""
    assert should_retry_header(CIMultiDict({"X-Should-Retry": value})) is expected
