"""Conformance: our sign() and verify() agree both ways with the providers' official libraries.

Every library runs offline. Where a library reads the real clock (standardwebhooks, stripe),
deliveries are stamped with the current time and ours is given the same `now`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import standardwebhooks
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from slack_sdk.signature import Clock, SignatureVerifier
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from tether import webhooks

conformance = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Text without lone surrogates: the official libraries all encode str bodies as UTF-8.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
binary = st.binary(max_size=300)
# Standard Webhooks ids must not contain "." (spec, "Signature scheme"); real ones look like
# msg_<base62>, which is what this draws.
ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=40)
standard_keys = st.binary(min_size=24, max_size=64)
# Printable secrets with at least one non-blank character, as providers issue them.
plain_secrets = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
)
offsets = st.integers(min_value=-290, max_value=290)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# --- Standard Webhooks (standardwebhooks) -------------------------------------------------


@st.composite
def standard_secret_forms(draw: st.DrawFn) -> tuple[str | bytes, str | bytes]:
    """A key, as (the form we are given, the form the official library is given)."""
    key = draw(standard_keys)
    form = draw(st.sampled_from(["prefixed", "bare", "raw"]))
    if form == "raw":
        return key, key
    encoded = _b64(key)
    return ("whsec_" + encoded if form == "prefixed" else encoded), "whsec_" + encoded


@conformance
@given(secret=standard_secret_forms(), body=text, msg_id=ids, offset=offsets)
def test_standard_official_library_verifies_our_signatures(
    secret: tuple[str | bytes, str | bytes], body: str, msg_id: str, offset: int
) -> None:
    """standardwebhooks.Webhook.verify accepts what our sign() makes."""
    ours, theirs = secret
    timestamp = int(time.time()) + offset
    headers = webhooks.sign(
        "standard", secret=ours, body=body.encode(), msg_id=msg_id, timestamp=timestamp
    )
    standardwebhooks.Webhook(theirs).verify(body, headers, json_parse=False)


@conformance
@given(secret=standard_secret_forms(), body=text, msg_id=ids, offset=offsets)
def test_standard_we_verify_the_official_librarys_signatures(
    secret: tuple[str | bytes, str | bytes], body: str, msg_id: str, offset: int
) -> None:
    """Our verify() accepts what standardwebhooks.Webhook.sign makes."""
    ours, theirs = secret
    timestamp = int(time.time())
    signature = standardwebhooks.Webhook(theirs).sign(
        msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body
    )
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    result = webhooks.verify(
        "standard", secret=ours, headers=headers, body=body.encode(), now=timestamp + offset
    )
    assert (result.msg_id, result.timestamp) == (msg_id, timestamp)


@conformance
@given(
    keys=st.lists(standard_keys, min_size=2, max_size=4, unique=True),
    body=text,
    msg_id=ids,
    data=st.data(),
)
def test_standard_rotation_agrees_with_the_official_library(
    keys: list[bytes], body: str, msg_id: str, data: st.DataObject
) -> None:
    """Each secret of a multi-secret header verifies in the official library, and vice versa."""
    secrets = ["whsec_" + _b64(key) for key in keys]
    timestamp = int(time.time())
    headers = webhooks.sign(
        "standard", secret=secrets, body=body.encode(), msg_id=msg_id, timestamp=timestamp
    )
    for secret in secrets:
        standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)
    chosen = data.draw(st.sampled_from(secrets))
    theirs = standardwebhooks.Webhook(chosen).sign(
        msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body
    )
    decoys = " ".join(f"v1,{_b64(bytes(32))}" for _ in range(2))
    headers["webhook-signature"] = f"{decoys} {theirs}"
    result = webhooks.verify(
        "standard", secret=secrets, headers=headers, body=body.encode(), now=timestamp
    )
    assert result.secret_index == secrets.index(chosen)


# --- Stripe (stripe.WebhookSignature) ----------------------------------------------------


stripe_secrets = st.one_of(plain_secrets.map(lambda s: "whsec_" + s), plain_secrets)


@conformance
@given(secret=stripe_secrets, body=text, offset=offsets)
def test_stripe_official_library_verifies_our_signatures(
    secret: str, body: str, offset: int
) -> None:
    """stripe.WebhookSignature.verify_header accepts what our sign() makes."""
    timestamp = int(time.time()) + offset
    headers = webhooks.sign("stripe", secret=secret, body=body.encode(), timestamp=timestamp)
    assert stripe.WebhookSignature.verify_header(
        body.encode(), headers["Stripe-Signature"], secret, tolerance=300
    )


@conformance
@given(secret=stripe_secrets, body=text, offset=offsets)
def test_stripe_we_verify_the_official_librarys_signatures(
    secret: str, body: str, offset: int
) -> None:
    """Our verify() accepts what stripe.WebhookSignature.generate_signature_header makes."""
    timestamp = 1_700_000_000 + offset * 1_000
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    result = webhooks.verify(
        "stripe",
        secret=secret,
        headers={"Stripe-Signature": header},
        body=body.encode(),
        now=timestamp + offset,
    )
    assert result.timestamp == timestamp


@conformance
@given(secrets=st.lists(stripe_secrets, min_size=2, max_size=3, unique=True), body=text)
def test_stripe_rolled_secrets_agree_with_the_official_library(
    secrets: list[str], body: str
) -> None:
    """A header signed with several secrets verifies in stripe-python under each of them."""
    timestamp = int(time.time())
    headers = webhooks.sign("stripe", secret=secrets, body=body.encode(), timestamp=timestamp)
    for secret in secrets:
        stripe.WebhookSignature.verify_header(
            body, headers["Stripe-Signature"], secret, tolerance=300
        )
        webhooks.verify(
            "stripe", secret=[secret], headers=headers, body=body.encode(), now=timestamp
        )


@conformance
@given(secret=stripe_secrets, event_id=ids, amount=st.integers(0, 10**9))
def test_stripe_construct_event_accepts_our_signed_events(
    secret: str, event_id: str, amount: int
) -> None:
    """stripe.Webhook.construct_event builds the event from a body we signed."""
    body = json.dumps(
        {
            "id": f"evt_{event_id}",
            "object": "event",
            "type": "charge.succeeded",
            "data": {"object": {"amount": amount}},
        }
    ).encode()
    headers = webhooks.sign("stripe", secret=secret, body=body)
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)
    assert event.id == f"evt_{event_id}"


# --- Slack (slack_sdk.signature.SignatureVerifier) ---------------------------------------


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


@conformance
@given(secret=plain_secrets, body=text, timestamp=st.integers(0, 2**33), offset=offsets)
def test_slack_official_library_verifies_our_signatures(
    secret: str, body: str, timestamp: int, offset: int
) -> None:
    """slack_sdk's SignatureVerifier accepts what our sign() makes."""
    headers = webhooks.sign("slack", secret=secret, body=body.encode(), timestamp=timestamp)
    verifier = SignatureVerifier(secret, clock=_FixedClock(timestamp + offset))
    assert verifier.is_valid_request(body.encode(), headers)


@conformance
@given(secret=plain_secrets, body=text, timestamp=st.integers(0, 2**33), offset=offsets)
def test_slack_we_verify_the_official_librarys_signatures(
    secret: str, body: str, timestamp: int, offset: int
) -> None:
    """Our verify() accepts what slack_sdk's generate_signature makes."""
    verifier = SignatureVerifier(secret)
    signature = verifier.generate_signature(timestamp=str(timestamp), body=body)
    assert signature is not None
    headers = {"x-slack-request-timestamp": str(timestamp), "x-slack-signature": signature}
    webhooks.verify(
        "slack", secret=secret, headers=headers, body=body.encode(), now=timestamp + offset
    )


# --- Twilio (twilio.request_validator.RequestValidator) ----------------------------------


@st.composite
def twilio_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["https", "http"]))
    host = draw(st.sampled_from(["example.com", "hooks.example.org", "api.example.net"]))
    port = draw(st.sampled_from(["", ":443", ":80", ":8443"]))
    segments = draw(
        st.lists(
            st.text(string.ascii_letters + string.digits + "-_.~", min_size=1, max_size=10),
            max_size=3,
        )
    )
    path = "/" + "/".join(segments)
    query = draw(
        st.dictionaries(
            st.text(string.ascii_letters, min_size=1, max_size=6),
            st.text(string.ascii_letters + string.digits, max_size=6),
            max_size=3,
        )
    )
    return f"{scheme}://{host}{port}{path}" + (f"?{urlencode(query)}" if query else "")


form_params = st.dictionaries(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
    max_size=8,
)


@conformance
@given(token=plain_secrets, url=twilio_urls(), params=form_params)
def test_twilio_official_library_verifies_our_form_signatures(
    token: str, url: str, params: dict[str, str]
) -> None:
    """RequestValidator.validate accepts what our sign() makes for a form body."""
    headers = webhooks.sign("twilio", secret=token, body=urlencode(params).encode(), url=url)
    assert RequestValidator(token).validate(url, params, headers["X-Twilio-Signature"])


@conformance
@given(token=plain_secrets, url=twilio_urls(), params=form_params)
def test_twilio_we_verify_the_official_librarys_form_signatures(
    token: str, url: str, params: dict[str, str]
) -> None:
    """Our verify() accepts RequestValidator.compute_signature, from the body or params=."""
    signature = RequestValidator(token).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signature}
    webhooks.verify(
        "twilio", secret=token, headers=headers, body=urlencode(params).encode(), url=url
    )
    webhooks.verify("twilio", secret=token, headers=headers, body=b"", url=url, params=params)


@conformance
@given(
    token=plain_secrets,
    url=twilio_urls(),
    pairs=st.lists(
        st.tuples(
            st.sampled_from(["Digits", "Sid", "Media"]), st.text(string.printable, max_size=8)
        ),
        max_size=8,
    ),
)
def test_twilio_repeated_parameters_agree_with_the_official_library(
    token: str, url: str, pairs: list[tuple[str, str]]
) -> None:
    """Repeated parameter names sign and verify as twilio-python does with a MultiDict."""
    expected = RequestValidator(token).compute_signature(url, MultiDict(pairs))
    headers = webhooks.sign("twilio", secret=token, body=urlencode(pairs).encode(), url=url)
    assert headers["X-Twilio-Signature"] == expected
    webhooks.verify("twilio", secret=token, headers=headers, body=b"", url=url, params=pairs)


@conformance
@given(token=plain_secrets, url=twilio_urls(), body=text)
def test_twilio_json_bodies_agree_with_the_official_library_both_ways(
    token: str, url: str, body: str
) -> None:
    """With bodySHA256 in the URL, signatures agree with RequestValidator both ways."""
    digest = hashlib.sha256(body.encode()).hexdigest()
    signed_url = f"{url}{'&' if '?' in url else '?'}bodySHA256={digest}"
    validator = RequestValidator(token)
    headers = webhooks.sign("twilio", secret=token, body=body.encode(), url=signed_url)
    assert validator.validate(signed_url, body, headers["X-Twilio-Signature"])
    theirs = {"X-Twilio-Signature": validator.compute_signature(signed_url, {})}
    webhooks.verify("twilio", secret=token, headers=theirs, body=body.encode(), url=signed_url)


# --- Our own round trips, for schemes without an official Python library -----------------


@conformance
@given(secret=plain_secrets, body=binary, delivery=ids)
def test_github_and_shopify_match_an_independent_hmac(
    secret: str, body: bytes, delivery: str
) -> None:
    """GitHub and Shopify headers equal a direct HMAC-SHA256 of any body, and verify."""
    raw = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    github = webhooks.sign("github", secret=secret, body=body, msg_id=delivery)
    assert github["X-Hub-Signature-256"] == "sha256=" + raw.hex()
    assert webhooks.verify("github", secret=secret, headers=github, body=body).msg_id == delivery
    shopify = webhooks.sign("shopify", secret=secret, body=body)
    assert shopify["X-Shopify-Hmac-Sha256"] == _b64(raw)
    webhooks.verify("shopify", secret=secret, headers=shopify, body=body)


@conformance
@given(
    secret=st.one_of(plain_secrets, st.binary(min_size=1, max_size=64)),
    body=binary,
    msg_id=ids,
    timestamp=st.integers(0, 10**11),
    scheme=st.sampled_from(["standard", "stripe", "slack"]),
)
def test_every_timestamped_scheme_round_trips_any_bytes(
    secret: str | bytes, body: bytes, msg_id: str, timestamp: int, scheme: str
) -> None:
    """Arbitrary bytes (not only UTF-8) and secrets sign and verify under each scheme."""
    if scheme == "standard" and isinstance(secret, str):
        secret = "whsec_" + _b64(secret.encode())
    headers = webhooks.sign(scheme, secret=secret, body=body, msg_id=msg_id, timestamp=timestamp)
    result = webhooks.verify(scheme, secret=secret, headers=headers, body=body, now=timestamp)
    assert result.timestamp == timestamp
