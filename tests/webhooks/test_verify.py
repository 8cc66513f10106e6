"""Behaviour every scheme shares: success, wrong secrets, rotation, headers, bodies, timestamps."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict
from pydantic import SecretStr

from tether import webhooks
from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason

from ._support import (
    ALL,
    BODY,
    CANARY,
    MANY_SIGNATURES,
    NON_UTF8_BODY,
    NOW,
    SINGLE_SIGNATURE,
    TIMESTAMPED,
    Case,
    failure,
    reason,
)

Reason = WebhookVerificationReason
each_scheme = pytest.mark.parametrize("case", ALL, ids=str)
each_timestamped = pytest.mark.parametrize("case", TIMESTAMPED, ids=str)


@each_scheme
def test_a_delivery_signed_with_the_secret_verifies(case: Case) -> None:
    """A delivery signed with the secret verifies and reports the first secret as the match."""
    secret = case.secret("current")
    result = case.verify(secret, case.sign(secret))
    assert result.scheme == case.scheme
    assert result.secret_index == 0


@each_scheme
def test_a_wrong_secret_finds_no_matching_signature(case: Case) -> None:
    """A delivery signed with another secret fails with NO_MATCHING_SIGNATURE."""
    headers = case.sign(case.secret("theirs"))
    assert reason(case, case.secret("ours"), headers) is Reason.NO_MATCHING_SIGNATURE


@each_scheme
def test_a_changed_body_finds_no_matching_signature(case: Case) -> None:
    """One changed byte in the body fails the signature."""
    secret = case.secret("current")
    headers = case.sign(secret)
    tampered = BODY.replace(b"4200", b"4201")
    if case.scheme == "twilio":
        # The body hash travels in the URL Twilio signed; recomputing it would be a new URL.
        with pytest.raises(WebhookVerificationError) as caught:
            webhooks.verify(
                "twilio",
                secret=secret,
                headers=headers,
                body=tampered,
                **case.scheme_options(BODY),
            )
        assert caught.value.reason is Reason.NO_MATCHING_SIGNATURE
        return
    assert reason(case, secret, headers, body=tampered) is Reason.NO_MATCHING_SIGNATURE


@each_scheme
def test_during_rotation_the_second_secret_may_match(case: Case) -> None:
    """With old and new secrets given, a delivery signed with the new one verifies as index 1."""
    old, new = case.secret("old"), case.secret("new")
    result = case.verify([old, new], case.sign(new))
    assert result.secret_index == 1


@each_scheme
def test_secrets_may_be_str_bytes_or_secretstr(case: Case) -> None:
    """The same secret given as str, SecretStr or a tuple verifies alike."""
    secret = case.secret("current")
    headers = case.sign(secret)
    for form in (secret, SecretStr(secret), (secret,), [SecretStr(secret)]):
        assert case.verify(form, headers).secret_index == 0


@pytest.mark.parametrize("case", MANY_SIGNATURES, ids=str)
def test_a_header_with_several_signatures_verifies_against_each_secret(case: Case) -> None:
    """A sender signing with two secrets is verified by a receiver holding either one."""
    old, new = case.secret("old"), case.secret("new")
    headers = case.sign([old, new])
    assert case.verify(old, headers).secret_index == 0
    assert case.verify(new, headers).secret_index == 0
    assert case.verify([case.secret("other"), new], headers).secret_index == 1


@pytest.mark.parametrize("case", SINGLE_SIGNATURE, ids=str)
def test_single_signature_schemes_sign_with_exactly_one_secret(case: Case) -> None:
    """Schemes whose header carries one signature refuse to sign with two secrets."""
    with pytest.raises(ConfigError, match="one secret"):
        case.sign([case.secret("a"), case.secret("b")])


@each_scheme
def test_non_utf8_bodies_are_signed_and_verified_as_bytes(case: Case) -> None:
    """A body that is not UTF-8 signs and verifies; a changed byte in it still fails."""
    secret = case.secret("current")
    headers = case.sign(secret, body=NON_UTF8_BODY)
    case.verify(secret, headers, body=NON_UTF8_BODY)
    wrong = NON_UTF8_BODY[:-1] + b"\x81"
    if case.scheme != "twilio":
        assert reason(case, secret, headers, body=wrong) is Reason.NO_MATCHING_SIGNATURE


@each_scheme
@pytest.mark.parametrize("fold", [str.lower, str.upper, str.swapcase, str.title])
def test_header_names_match_case_insensitively(case: Case, fold: object) -> None:
    """Header names are found whatever their case."""
    assert callable(fold)
    secret = case.secret("current")
    headers = {fold(name): value for name, value in case.sign(secret).items()}
    case.verify(secret, headers)


@each_scheme
def test_framework_multidicts_are_accepted(case: Case) -> None:
    """A case-insensitive multidict, as aiohttp hands over, works as headers."""
    secret = case.secret("current")
    case.verify(secret, CIMultiDict(case.sign(secret)))


@each_scheme
def test_each_required_header_missing_is_reported(case: Case) -> None:
    """Dropping any required header fails with MISSING_HEADER."""
    secret = case.secret("current")
    headers = case.sign(secret)
    for name in case.required:
        without = {k: v for k, v in headers.items() if k.lower() != name.lower()}
        assert reason(case, secret, without) is Reason.MISSING_HEADER, name


@each_scheme
def test_a_blank_signature_header_counts_as_missing(case: Case) -> None:
    """A signature header that is present but blank fails with MISSING_HEADER."""
    secret = case.secret("current")
    headers = case.sign(secret) | {case.signature_header: "  "}
    assert reason(case, secret, headers) is Reason.MISSING_HEADER


@each_scheme
def test_a_signature_header_sent_twice_with_different_values_is_malformed(case: Case) -> None:
    """Two different values for the signature header are refused rather than guessed between."""
    secret = case.secret("current")
    headers = CIMultiDict(case.sign(secret))
    headers.add(case.signature_header.upper(), "something else")
    assert reason(case, secret, headers) is Reason.MALFORMED_HEADER


@pytest.mark.parametrize("case", SINGLE_SIGNATURE, ids=str)
@pytest.mark.parametrize("value", ["nonsense", "sha1=abcd", "v0=" + "g" * 64, "=" * 12, "é"])
def test_a_single_signature_header_of_the_wrong_shape_is_malformed(case: Case, value: str) -> None:
    """A one-signature header that is not a well-formed signature fails with MALFORMED_HEADER."""
    secret = case.secret("current")
    headers = case.sign(secret) | {case.signature_header: value}
    assert reason(case, secret, headers) is Reason.MALFORMED_HEADER


@each_timestamped
@pytest.mark.parametrize("offset", [0, 1, 299, 300, -1, -299, -300])
def test_timestamps_within_the_tolerance_verify(case: Case, offset: int) -> None:
    """A timestamp up to 300 s before or after now verifies, bounds included."""
    secret = case.secret("current")
    headers = case.sign(secret, timestamp=NOW)
    assert case.verify(secret, headers, now=NOW + offset).timestamp == NOW


@each_timestamped
@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (301, Reason.TIMESTAMP_TOO_OLD),
        (86_400, Reason.TIMESTAMP_TOO_OLD),
        (-301, Reason.TIMESTAMP_IN_FUTURE),
        (-365 * 86_400, Reason.TIMESTAMP_IN_FUTURE),
    ],
)
def test_timestamps_outside_the_tolerance_fail_in_both_directions(
    case: Case, offset: int, expected: WebhookVerificationReason
) -> None:
    """A timestamp too old or too far in the future fails, each with its own reason."""
    secret = case.secret("current")
    headers = case.sign(secret, timestamp=NOW)
    assert reason(case, secret, headers, now=NOW + offset) is expected


@each_timestamped
def test_the_tolerance_is_configurable_and_can_be_disabled(case: Case) -> None:
    """A wider tolerance admits an older delivery, and tolerance=None skips the age check."""
    secret = case.secret("current")
    headers = case.sign(secret, timestamp=NOW)
    case.verify(secret, headers, now=NOW + 3_000, tolerance=3_600)
    assert reason(case, secret, headers, now=NOW + 3_000, tolerance=60) is Reason.TIMESTAMP_TOO_OLD
    case.verify(secret, headers, now=NOW + 10 * 365 * 86_400, tolerance=None)


@each_timestamped
def test_a_stale_timestamp_is_reported_only_for_an_authentic_signature(case: Case) -> None:
    """An old delivery with a wrong signature reports the signature, not the age."""
    headers = case.sign(case.secret("theirs"), timestamp=NOW - 3_600)
    assert reason(case, case.secret("ours"), headers) is Reason.NO_MATCHING_SIGNATURE


@each_timestamped
@pytest.mark.parametrize(
    "raw",
    [
        "1.5",
        " 12",
        "12 ",
        "+12",
        "-12",
        "1e9",
        "0x10",
        "1_767_225_600",
        "١٧٦٧٢٢٥٦٠٠",  # Arabic-Indic digits, which int() accepts
        "1767225600.0",
        "1767225600\n",
        "9" * 13,
        "now",
    ],
)
def test_timestamps_must_be_plain_integers(case: Case, raw: str) -> None:
    """A timestamp that is not a plain decimal integer fails with BAD_TIMESTAMP."""
    secret = case.secret("current")
    headers = case.with_timestamp(case.sign(secret), raw)
    assert reason(case, secret, headers) is Reason.BAD_TIMESTAMP


def _canary_secret(case: Case) -> str:
    if case.scheme == "standard":
        return "whsec_" + base64.b64encode(CANARY.encode()).decode()
    return CANARY


def _assert_no_leak(case: Case, error: Exception, secret: str, expected: dict[str, str]) -> None:
    for text in (str(error), repr(error), str(error.args)):
        assert CANARY not in text
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text
        for signature in case.signature_values(expected):
            assert signature not in text


@each_scheme
def test_failures_never_show_the_secret_or_the_expected_signature(case: Case) -> None:
    """Neither the secret nor the signature it would make appear in a failure's text."""
    canary = _canary_secret(case)
    expected = case.sign(canary)
    headers = case.sign(case.secret("theirs"))
    error = failure(case, canary, headers)
    assert error.reason is Reason.NO_MATCHING_SIGNATURE
    _assert_no_leak(case, error, canary, expected)
    rotated = failure(case, [case.secret("older"), canary], headers)
    _assert_no_leak(case, rotated, canary, expected)


@each_timestamped
def test_timestamp_failures_never_show_the_secret(case: Case) -> None:
    """A stale authentic delivery's error names the age, not the secret or signature."""
    canary = _canary_secret(case)
    headers = case.sign(canary)
    error = failure(case, canary, headers, now=NOW + 10_000)
    assert error.reason is Reason.TIMESTAMP_TOO_OLD
    _assert_no_leak(case, error, canary, headers)


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "   ",
        b"",
        SecretStr(""),
        [],
        (),
        ["good-secret", ""],
        42,
        None,
        [b"ok", 3.5],
    ],
)
@each_scheme
def test_empty_or_unusable_secrets_are_configuration_errors(case: Case, secret: object) -> None:
    """An empty, missing or mistyped secret is a ConfigError, before any header is read."""
    with pytest.raises(ConfigError):
        case.verify(secret, {})  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        case.sign(secret)  # type: ignore[arg-type]


@each_scheme
def test_a_str_body_is_refused(case: Case) -> None:
    """A decoded str body is a ConfigError: only the received bytes can be checked."""
    secret = case.secret("current")
    with pytest.raises(ConfigError, match="raw request bytes"):
        webhooks.verify(
            case.scheme,
            secret=secret,
            headers=case.sign(secret),
            body=BODY.decode(),  # type: ignore[arg-type]
            now=NOW,
            **case.scheme_options(BODY),
        )


@each_scheme
def test_bytearray_and_memoryview_bodies_work_like_bytes(case: Case) -> None:
    """Mutable and view buffers of the body verify like the bytes themselves."""
    secret = case.secret("current")
    headers = case.sign(secret)
    for body in (bytearray(BODY), memoryview(BODY)):
        webhooks.verify(
            case.scheme,
            secret=secret,
            headers=headers,
            body=body,  # type: ignore[arg-type]
            now=NOW,
            **case.scheme_options(BODY),
        )


@each_scheme
def test_unknown_options_are_configuration_errors(case: Case) -> None:
    """A misspelt option is a ConfigError naming it, rather than being ignored."""
    secret = case.secret("current")
    options = case.scheme_options(BODY) | {"tolerence": 10}
    with pytest.raises(ConfigError, match="tolerence"):
        webhooks.verify(case.scheme, secret=secret, headers={}, body=BODY, **options)
    with pytest.raises(ConfigError, match="tolerence"):
        webhooks.sign(case.scheme, secret=secret, body=BODY, msg_id="m", **options)
