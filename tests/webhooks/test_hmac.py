"""The generic HMAC scheme: header, algorithm, encoding, prefix, template and separator."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from tether import webhooks
from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason

from ._support import BODY, NON_UTF8_BODY, NOW

Reason = WebhookVerificationReason
SECRET = "generic-signing-secret"


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha384", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_each_algorithm_and_encoding_matches_an_independent_hmac(
    algorithm: str, encoding: str
) -> None:
    """The header holds prefix + the chosen encoding of the chosen HMAC of the body."""
    raw = hmac.new(SECRET.encode(), NON_UTF8_BODY, getattr(hashlib, algorithm)).digest()
    encoded = raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()
    options: dict[str, Any] = {
        "header": "X-Sig",
        "algorithm": algorithm,
        "encoding": encoding,
        "prefix": f"{algorithm}=",
    }
    headers = webhooks.sign("hmac", secret=SECRET, body=NON_UTF8_BODY, **options)
    assert headers == {"X-Sig": f"{algorithm}={encoded}"}
    webhooks.verify("hmac", secret=SECRET, headers=headers, body=NON_UTF8_BODY, **options)


def test_hex_signatures_are_accepted_in_either_case() -> None:
    """Upper-case hex decodes to the same digest and verifies."""
    headers = webhooks.sign("hmac", secret=SECRET, body=BODY, header="X-Sig")
    upper = {"X-Sig": headers["X-Sig"].upper()}
    webhooks.verify("hmac", secret=SECRET, headers=upper, body=BODY, header="X-Sig")


def test_the_template_lays_out_the_signed_bytes() -> None:
    """A template with a timestamp and an id signs exactly that text around the raw body."""
    options: dict[str, Any] = {
        "header": "X-Sig",
        "timestamp_header": "X-Ts",
        "id_header": "X-Id",
        "template": "v0:{timestamp}:{id}:{{literal}}:{body}",
    }
    headers = webhooks.sign(
        "hmac", secret=SECRET, body=NON_UTF8_BODY, msg_id="ev_1", timestamp=NOW, **options
    )
    signed = f"v0:{NOW}:ev_1:{{literal}}:".encode() + NON_UTF8_BODY
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers == {"X-Sig": expected, "X-Ts": str(NOW), "X-Id": "ev_1"}
    result = webhooks.verify(
        "hmac", secret=SECRET, headers=headers, body=NON_UTF8_BODY, now=NOW, **options
    )
    assert (result.timestamp, result.msg_id) == (NOW, "ev_1")
    with pytest.raises(WebhookVerificationError) as caught:
        webhooks.verify(
            "hmac",
            secret=SECRET,
            headers=headers | {"X-Id": "ev_2"},
            body=NON_UTF8_BODY,
            now=NOW,
            **options,
        )
    assert caught.value.reason is Reason.NO_MATCHING_SIGNATURE


def test_an_unsigned_id_header_is_reported_but_optional() -> None:
    """id_header without {id} in the template is only reported, and may be absent."""
    options: dict[str, Any] = {"header": "X-Sig", "id_header": "X-Delivery"}
    headers = webhooks.sign("hmac", secret=SECRET, body=BODY, msg_id="d-9", **options)
    assert webhooks.verify("hmac", secret=SECRET, headers=headers, body=BODY, **options).msg_id == (
        "d-9"
    )
    bare = {"X-Sig": headers["X-Sig"]}
    assert webhooks.verify("hmac", secret=SECRET, headers=bare, body=BODY, **options).msg_id is None


def test_a_separator_allows_several_signatures_and_skips_bad_entries() -> None:
    """With separator=, each entry is a candidate and malformed ones are skipped."""
    options: dict[str, Any] = {"header": "X-Sig", "prefix": "v1=", "separator": " "}
    headers = webhooks.sign("hmac", secret=["old-secret", SECRET], body=BODY, **options)
    assert len(headers["X-Sig"].split(" ")) == 2
    noisy = {"X-Sig": f"junk v2=abcd v1=zz  {headers['X-Sig']}"}
    webhooks.verify("hmac", secret=SECRET, headers=noisy, body=BODY, **options)
    with pytest.raises(WebhookVerificationError) as caught:
        webhooks.verify(
            "hmac", secret=SECRET, headers={"X-Sig": "junk v1=zz"}, body=BODY, **options
        )
    assert caught.value.reason is Reason.NO_MATCHING_SIGNATURE


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "header="),
        ({"header": "X Sig"}, "header"),
        ({"header": "X-Sig", "algorithm": "md5"}, "algorithm"),
        ({"header": "X-Sig", "encoding": "base32"}, "encoding"),
        ({"header": "X-Sig", "template": "{timestamp}"}, "body"),
        ({"header": "X-Sig", "template": "{body}{body}"}, "body"),
        ({"header": "X-Sig", "template": "{payload}"}, "template"),
        ({"header": "X-Sig", "template": "{body"}, "template"),
        ({"header": "X-Sig", "template": "{timestamp}.{body}"}, "timestamp_header"),
        ({"header": "X-Sig", "timestamp_header": "X-Ts"}, "timestamp_header"),
        ({"header": "X-Sig", "template": "{id}.{body}"}, "id_header"),
        ({"header": "X-Sig", "prefix": 5}, "prefix"),
        ({"header": "X-Sig", "separator": ""}, "separator"),
        (
            {"header": "X-Sig", "timestamp_header": "x-sig", "template": "{timestamp}{body}"},
            "differ",
        ),
    ],
)
def test_inconsistent_options_are_configuration_errors(
    options: dict[str, Any], message: str
) -> None:
    """Missing, unknown or contradictory options are ConfigErrors that name the problem."""
    with pytest.raises(ConfigError, match=message):
        webhooks.verify("hmac", secret=SECRET, headers={}, body=BODY, **options)


def test_a_template_signing_the_id_needs_a_message_id_to_sign() -> None:
    """sign() with {id} in the template and no msg_id is a ConfigError."""
    with pytest.raises(ConfigError, match="msg_id"):
        webhooks.sign(
            "hmac",
            secret=SECRET,
            body=BODY,
            header="X-Sig",
            id_header="X-Id",
            template="{id}{body}",
        )
