"""Twilio specifics: the URL option, form parameters, JSON bodies, ports and shared keys."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlencode

import pytest

from tether import webhooks
from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason

Reason = WebhookVerificationReason
TOKEN = "twilio-auth-token"
URL = "https://hooks.example.com/twilio/voice?tenant=7"
PARAMS = {"CallSid": "CA1", "From": "+14158675309", "Body": "héllo & good-bye = 1+1"}
FORM = urlencode(PARAMS).encode()


def verify(headers: dict[str, str], *, body: bytes = FORM, **options: Any) -> None:
    options.setdefault("url", URL)
    webhooks.verify("twilio", secret=TOKEN, headers=headers, body=body, **options)


def failure_reason(headers: dict[str, str], *, body: bytes = FORM, **options: Any) -> Reason:
    with pytest.raises(WebhookVerificationError) as caught:
        verify(headers, body=body, **options)
    return caught.value.reason


def test_the_url_option_is_required() -> None:
    """Without url= the scheme cannot know what Twilio signed: a ConfigError, for both sides."""
    with pytest.raises(ConfigError, match="url="):
        webhooks.verify("twilio", secret=TOKEN, headers={}, body=FORM)
    with pytest.raises(ConfigError, match="url="):
        webhooks.sign("twilio", secret=TOKEN, body=FORM)


@pytest.mark.parametrize(
    "url",
    [
        "/relative/path",
        "ftp://example.com/x",
        "example.com/x",
        "",
        " https://a.com/",
        "https://[::1/x",
    ],
)
def test_the_url_must_be_absolute_http(url: str) -> None:
    """A relative or non-http URL is a ConfigError."""
    with pytest.raises(ConfigError):
        webhooks.sign("twilio", secret=TOKEN, body=FORM, url=url)


def test_form_parameters_come_from_the_body() -> None:
    """A form body's parameters are signed; changing one fails."""
    headers = webhooks.sign("twilio", secret=TOKEN, body=FORM, url=URL)
    verify(headers)
    changed = urlencode(PARAMS | {"From": "+10000000000"}).encode()
    assert failure_reason(headers, body=changed) is Reason.NO_MATCHING_SIGNATURE


def test_parameter_order_in_the_body_does_not_matter() -> None:
    """Parameters are sorted before signing, so the body's order is irrelevant."""
    headers = webhooks.sign("twilio", secret=TOKEN, body=FORM, url=URL)
    reordered = urlencode(dict(reversed(PARAMS.items()))).encode()
    verify(headers, body=reordered)


def test_parameters_may_be_given_explicitly() -> None:
    """params= (a mapping or pairs) replaces parsing, e.g. when a framework already parsed."""
    headers = webhooks.sign("twilio", secret=TOKEN, body=b"", url=URL, params=PARAMS)
    verify(headers, body=b"", params=PARAMS)
    verify(headers, body=b"", params=list(PARAMS.items()))
    verify(headers)  # the same parameters, parsed from the form body
    listed = {name: [value] for name, value in PARAMS.items()}
    verify(headers, body=b"", params=listed)


@pytest.mark.parametrize("params", ["a=1", [("a", 1)], [("a",)], {"a": None}, 42])
def test_malformed_params_are_configuration_errors(params: object) -> None:
    """params= that is not str names and values is a ConfigError."""
    with pytest.raises(ConfigError, match="params"):
        webhooks.sign("twilio", secret=TOKEN, body=b"", url=URL, params=params)


def test_the_signed_url_includes_its_query_string() -> None:
    """A different query string is a different signature."""
    headers = webhooks.sign("twilio", secret=TOKEN, body=FORM, url=URL)
    assert failure_reason(headers, url=URL + "&x=1") is Reason.NO_MATCHING_SIGNATURE
    assert failure_reason(headers, url=URL.replace("voice", "sms")) is Reason.NO_MATCHING_SIGNATURE


def test_json_bodies_are_vouched_for_by_the_body_hash() -> None:
    """With bodySHA256 in the URL, the URL alone is signed and the body must match the hash."""
    body = b'{"event":"call.completed","id":"EV1"}'
    url = f"{URL}&bodySHA256={hashlib.sha256(body).hexdigest()}"
    headers = webhooks.sign("twilio", secret=TOKEN, body=body, url=url)
    verify(headers, body=body, url=url)
    assert failure_reason(headers, body=body + b" ", url=url) is Reason.NO_MATCHING_SIGNATURE


def test_signing_a_body_that_does_not_match_its_hash_is_refused() -> None:
    """sign() refuses a url whose bodySHA256 is not the body's, and a non-form body without one."""
    url = f"{URL}&bodySHA256={hashlib.sha256(b'other').hexdigest()}"
    with pytest.raises(ConfigError, match="bodySHA256"):
        webhooks.sign("twilio", secret=TOKEN, body=b"{}", url=url)
    with pytest.raises(ConfigError, match="bodySHA256"):
        webhooks.sign("twilio", secret=TOKEN, body=b"\xff\xfe", url=URL)


def test_a_malformed_body_hash_in_the_url_is_a_configuration_error() -> None:
    """A bodySHA256 that is not 64 hex digits is a ConfigError, and so is params= beside it."""
    with pytest.raises(ConfigError, match="bodySHA256"):
        webhooks.sign("twilio", secret=TOKEN, body=b"{}", url=URL + "&bodySHA256=xyz")
    url = f"{URL}&bodySHA256={hashlib.sha256(b'{}').hexdigest()}"
    with pytest.raises(ConfigError, match="params"):
        webhooks.sign("twilio", secret=TOKEN, body=b"{}", url=url, params={"a": "1"})


def test_a_non_utf8_body_without_a_body_hash_fails_cleanly() -> None:
    """A body that cannot be form data fails verification instead of raising a decode error."""
    headers = webhooks.sign("twilio", secret=TOKEN, body=FORM, url=URL)
    for body in (b"\xff\xfe\x00", b"a=%FF%FE"):
        assert failure_reason(headers, body=body) is Reason.NO_MATCHING_SIGNATURE


def test_ports_are_tolerated_both_ways() -> None:
    """A signature made with or without the port verifies against the other form of the URL."""
    with_port = URL.replace(".com", ".com:443")
    headers = webhooks.sign("twilio", secret=TOKEN, body=FORM, url=with_port)
    verify(headers, url=URL)
    headers = webhooks.sign("twilio", secret=TOKEN, body=FORM, url=URL)
    verify(headers, url=with_port)
    ipv6 = "https://[2001:db8::1]:8443/hook"
    headers = webhooks.sign("twilio", secret=TOKEN, body=FORM, url="https://[2001:db8::1]/hook")
    verify(headers, url=ipv6)


def test_shared_keys_may_use_hmac_sha256() -> None:
    """algorithm="sha256" signs with HMAC-SHA256 and says so in the settings header."""
    headers = webhooks.sign("twilio", secret=TOKEN, body=FORM, url=URL, algorithm="sha256")
    assert headers["X-Twilio-Webhooks-Signature-Settings"] == "algorithm=HMAC_SHA256"
    verify(headers)  # the settings header selects the algorithm
    verify(headers, algorithm="sha256")
    without_settings = {"X-Twilio-Signature": headers["X-Twilio-Signature"]}
    assert failure_reason(without_settings) is Reason.MALFORMED_HEADER  # 32 bytes is not SHA-1's
    settings = headers | {"X-Twilio-Webhooks-Signature-Settings": "key=KS1,algorithm=HMAC_MD5"}
    assert failure_reason(settings) is Reason.MALFORMED_HEADER


def test_the_idempotency_token_is_reported_as_the_message_id() -> None:
    """I-Twilio-Idempotency-Token is sent by sign() and returned by verify()."""
    headers = webhooks.sign("twilio", secret=TOKEN, body=FORM, url=URL, msg_id="tok-1")
    result = webhooks.verify("twilio", secret=TOKEN, headers=headers, body=FORM, url=URL)
    assert result.msg_id == "tok-1"
