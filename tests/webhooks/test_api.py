"""The package surface: exports, scheme names, and argument checking common to every call."""

from __future__ import annotations

import dataclasses
import math

import pytest

import tether.webhooks
from tether import webhooks
from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason

from ._support import BODY, GITHUB, NOW, STANDARD

DOCUMENTED_SCHEMES = ("github", "hmac", "shopify", "slack", "standard", "stripe", "twilio")


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions.
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_all_is_sorted_and_every_name_resolves() -> None:
    """__all__ is one list sorted the way ruff keeps it, and each name in it exists."""
    assert list(tether.webhooks.__all__) == sorted(tether.webhooks.__all__, key=_isort_key)
    for name in tether.webhooks.__all__:
        assert hasattr(tether.webhooks, name), name


def test_the_exported_error_types_are_tethers() -> None:
    """The re-exported error and reason are the ones in tether's error tree."""
    assert webhooks.WebhookVerificationError is WebhookVerificationError
    assert webhooks.WebhookVerificationReason is WebhookVerificationReason


def test_the_documented_schemes_are_the_known_ones() -> None:
    """SCHEMES lists exactly the schemes DESIGN.md names."""
    assert webhooks.SCHEMES == DOCUMENTED_SCHEMES


@pytest.mark.parametrize("scheme", ["svix", "GitHub", "", None, 3])
def test_an_unknown_scheme_is_a_configuration_error_listing_the_known_ones(scheme: object) -> None:
    """An unknown scheme is API misuse: a ConfigError that lists every known scheme."""
    for call in (
        lambda: webhooks.verify(scheme, secret="s", headers={}, body=b""),  # type: ignore[arg-type]
        lambda: webhooks.sign(scheme, secret="s", body=b""),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigError) as caught:
            call()
        assert not isinstance(caught.value, WebhookVerificationError)
        for known in DOCUMENTED_SCHEMES:
            assert known in str(caught.value)


@pytest.mark.parametrize(
    ("now", "tolerance"),
    [
        ("1767225600", 300),
        (math.nan, 300),
        (math.inf, 300),
        (True, 300),
        (NOW, -1),
        (NOW, "300"),
        (NOW, math.inf),
        (NOW, False),
    ],
)
def test_now_and_tolerance_must_be_finite_numbers(now: object, tolerance: object) -> None:
    """A now or tolerance that is not a finite (non-negative) number is a ConfigError."""
    headers = STANDARD.sign(STANDARD.secret("a"))
    with pytest.raises(ConfigError):
        webhooks.verify(
            "standard",
            secret=STANDARD.secret("a"),
            headers=headers,
            body=BODY,
            now=now,  # type: ignore[arg-type]
            tolerance=tolerance,  # type: ignore[arg-type]
        )


def test_now_defaults_to_the_system_clock() -> None:
    """Without now=, a delivery stamped with the current time verifies."""
    secret = STANDARD.secret("a")
    headers = webhooks.sign("standard", secret=secret, body=BODY, msg_id="msg_1")
    assert webhooks.verify("standard", secret=secret, headers=headers, body=BODY).timestamp


def test_now_may_be_a_float() -> None:
    """A fractional now works; the bound stays inclusive."""
    secret = STANDARD.secret("a")
    headers = STANDARD.sign(secret, timestamp=NOW)
    STANDARD.verify(secret, headers, now=NOW + 299.5)
    with pytest.raises(WebhookVerificationError):
        STANDARD.verify(secret, headers, now=NOW + 300.5)


@pytest.mark.parametrize("timestamp", [-1, 1.5, "1767225600", True])
def test_sign_timestamps_must_be_non_negative_ints(timestamp: object) -> None:
    """sign() takes whole seconds only, the form every verifier here demands."""
    with pytest.raises(ConfigError, match="timestamp"):
        webhooks.sign(
            "stripe",
            secret="s",
            body=BODY,
            timestamp=timestamp,  # type: ignore[arg-type]
        )


@pytest.mark.parametrize("msg_id", ["", "a\r\nX-Injected: 1", "tab\there", 42])
def test_sign_refuses_message_ids_that_cannot_be_header_values(msg_id: object) -> None:
    """A msg_id that is empty or holds control characters is a ConfigError."""
    with pytest.raises(ConfigError, match="msg_id"):
        webhooks.sign("github", secret="s", body=BODY, msg_id=msg_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("headers", [None, [("X-Hub-Signature-256", "x")], {"a": b"b"}, {1: "b"}])
def test_headers_must_be_a_mapping_of_str(headers: object) -> None:
    """Headers that are not a str-to-str mapping are a ConfigError."""
    with pytest.raises(ConfigError, match="header"):
        webhooks.verify("github", secret="s", headers=headers, body=BODY)  # type: ignore[arg-type]


def test_the_verification_result_is_a_frozen_value() -> None:
    """The result is immutable and compares by value."""
    secret = GITHUB.secret("a")
    headers = GITHUB.sign(secret)
    first, second = GITHUB.verify(secret, headers), GITHUB.verify(secret, headers)
    assert first == second
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.secret_index = 1  # type: ignore[misc]


def test_sign_returns_plain_str_headers() -> None:
    """sign() returns a new dict of str to str, ready to send."""
    for scheme_headers in (GITHUB.sign(GITHUB.secret("a")), STANDARD.sign(STANDARD.secret("a"))):
        assert type(scheme_headers) is dict
        assert all(type(k) is str and type(v) is str for k, v in scheme_headers.items())
