"""Published test vectors from the providers' own documentation and reference libraries."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from tether import webhooks

# standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py (test_sign_function)
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_TIMESTAMP = 1614265330
STANDARD_BODY = b'{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# docs.github.com, "Validating webhook deliveries", "Testing the webhook payload validation"
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# api.slack.com/authentication/verifying-requests-from-slack, also slack_sdk's tests
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmi"
    b"bIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

# twilio/twilio-python, tests/unit/test_request_validator.py
TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_FORM = (
    b"CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212"
    b"&Caller=%2B14158675309"
)
TWILIO_JSON = b'{"property": "value", "boolean": true}'
TWILIO_JSON_URL = (
    TWILIO_URL + "&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
)


def test_standard_webhooks_reference_vector() -> None:
    """sign() reproduces the Standard Webhooks reference signature, and verify() accepts it."""
    headers = webhooks.sign(
        "standard",
        secret=STANDARD_SECRET,
        body=STANDARD_BODY,
        msg_id=STANDARD_ID,
        timestamp=STANDARD_TIMESTAMP,
    )
    assert headers == {
        "webhook-id": STANDARD_ID,
        "webhook-timestamp": str(STANDARD_TIMESTAMP),
        "webhook-signature": STANDARD_SIGNATURE,
    }
    result = webhooks.verify(
        "standard",
        secret=STANDARD_SECRET,
        headers=headers,
        body=STANDARD_BODY,
        now=STANDARD_TIMESTAMP,
    )
    assert result.msg_id == STANDARD_ID
    assert result.timestamp == STANDARD_TIMESTAMP


def test_standard_webhooks_reference_multi_signature_header() -> None:
    """The reference library's multi-signature header (unknown versions, decoys) verifies."""
    signatures = " ".join(
        [
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
            STANDARD_SIGNATURE,
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        ]
    )
    webhooks.verify(
        "standard",
        secret=STANDARD_SECRET,
        headers={
            "webhook-id": STANDARD_ID,
            "webhook-timestamp": str(STANDARD_TIMESTAMP),
            "webhook-signature": signatures,
        },
        body=STANDARD_BODY,
        now=STANDARD_TIMESTAMP,
    )


def test_github_documentation_vector() -> None:
    """sign() reproduces GitHub's documented signature, and verify() accepts it."""
    headers = webhooks.sign("github", secret=GITHUB_SECRET, body=GITHUB_BODY, msg_id="d-1")
    assert headers == {"X-Hub-Signature-256": GITHUB_SIGNATURE, "X-GitHub-Delivery": "d-1"}
    result = webhooks.verify("github", secret=GITHUB_SECRET, headers=headers, body=GITHUB_BODY)
    assert result.msg_id == "d-1"
    assert result.timestamp is None


def test_slack_documentation_vector() -> None:
    """sign() reproduces Slack's documented signature, and verify() accepts it."""
    headers = webhooks.sign(
        "slack", secret=SLACK_SECRET, body=SLACK_BODY, timestamp=SLACK_TIMESTAMP
    )
    assert headers == {
        "X-Slack-Request-Timestamp": str(SLACK_TIMESTAMP),
        "X-Slack-Signature": SLACK_SIGNATURE,
    }
    webhooks.verify(
        "slack", secret=SLACK_SECRET, headers=headers, body=SLACK_BODY, now=SLACK_TIMESTAMP
    )


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        (TWILIO_URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        # The port is dropped when Twilio signed without it...
        (TWILIO_URL.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        # ...and the default port is added when Twilio signed with it.
        (TWILIO_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        (TWILIO_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        (
            TWILIO_URL.replace(".com", ".com:1234").replace("https", "http"),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        ),
    ],
)
def test_twilio_reference_vectors_with_and_without_ports(url: str, signature: str) -> None:
    """twilio-python's form vectors verify, including its port-tolerance cases."""
    webhooks.verify(
        "twilio",
        secret=TWILIO_TOKEN,
        headers={"X-Twilio-Signature": signature},
        body=TWILIO_FORM,
        url=url,
    )


def test_twilio_reference_form_signature() -> None:
    """sign() reproduces twilio-python's form signature."""
    headers = webhooks.sign("twilio", secret=TWILIO_TOKEN, body=TWILIO_FORM, url=TWILIO_URL)
    assert headers == {"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="}


def test_twilio_reference_repeated_parameters() -> None:
    """Repeated parameter names sort by value, as in twilio-python's duplicate vector."""
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    headers = webhooks.sign("twilio", secret=TWILIO_TOKEN, body=b"", url=TWILIO_URL, params=params)
    assert headers == {"X-Twilio-Signature": "IK+Dwps556ElfBT0I3Rgjkr1wJU="}
    form = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234"
    webhooks.verify("twilio", secret=TWILIO_TOKEN, headers=headers, body=form, url=TWILIO_URL)


def test_twilio_reference_json_body_vector() -> None:
    """twilio-python's JSON vector: the URL carries bodySHA256 and is signed alone."""
    headers = webhooks.sign("twilio", secret=TWILIO_TOKEN, body=TWILIO_JSON, url=TWILIO_JSON_URL)
    assert headers == {"X-Twilio-Signature": "a9nBmqA0ju/hNViExpshrM61xv4="}
    webhooks.verify(
        "twilio", secret=TWILIO_TOKEN, headers=headers, body=TWILIO_JSON, url=TWILIO_JSON_URL
    )


def test_shopify_matches_an_independent_computation() -> None:
    """The Shopify header is the base64 HMAC-SHA256 of the body, as shopify.dev describes."""
    secret, body = "shpss_0123456789abcdef", b'{"id":820982911946154508,"email":"jon@example.com"}'
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = webhooks.sign("shopify", secret=secret, body=body, msg_id="b54557e4")
    assert headers == {"X-Shopify-Hmac-Sha256": expected, "X-Shopify-Webhook-Id": "b54557e4"}
    assert (
        webhooks.verify("shopify", secret=secret, headers=headers, body=body).msg_id == "b54557e4"
    )


def test_stripe_matches_an_independent_computation() -> None:
    """The Stripe header is t=<ts>,v1=<hex HMAC-SHA256 of "{t}.{body}"> keyed by the whsec_ text."""
    secret, body, ts = "whsec_test_secret", b'{"id":"evt_1","object":"event"}', 1492774577
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    headers = webhooks.sign("stripe", secret=secret, body=body, timestamp=ts)
    assert headers == {"Stripe-Signature": f"t={ts},v1={expected}"}
