"""Shared cases: one per scheme, each able to sign and verify a delivery the same way."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tether import webhooks
from tether._errors import WebhookVerificationError, WebhookVerificationReason

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
BODY = b'{"type":"invoice.paid","data":{"id":"in_1","amount":4200}}'
NON_UTF8_BODY = b"\xff\xfe\x00binary \xc3\x28 payload \x80"
TWILIO_URL = "https://hooks.example.com/twilio/sms?tenant=7"
CANARY = "CANARY-7f3a9c-never-print-me"


@dataclass(frozen=True)
class Case:
    """How one scheme signs and verifies in these tests."""

    name: str
    scheme: str
    signature_header: str
    #: Where the signed timestamp travels: a header name, "Stripe-Signature" for Stripe's t=,
    #: or None when the scheme signs no timestamp.
    timestamp_header: str | None = None
    #: The headers whose absence must fail with MISSING_HEADER.
    required: tuple[str, ...] = ()
    #: Whether sign() accepts several secrets and puts several signatures in the header.
    many_signatures: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name

    def scheme_options(self, body: bytes) -> dict[str, Any]:
        if self.scheme == "twilio":
            # With bodySHA256 Twilio signs the URL alone and vouches for any body by its hash.
            digest = hashlib.sha256(body).hexdigest()
            return {"url": f"{TWILIO_URL}&bodySHA256={digest}"}
        return dict(self.options)

    def secret(self, label: str) -> str:
        """A secret in the form this scheme's users are given."""
        if self.scheme == "standard":
            raw = f"{label}-standard-webhooks-key".encode()
            return "whsec_" + base64.b64encode(raw).decode()
        return f"{label}-signing-secret"

    def sign(
        self,
        secret: webhooks.Secrets,
        *,
        body: bytes = BODY,
        timestamp: int = NOW,
        msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    ) -> dict[str, str]:
        return webhooks.sign(
            self.scheme,
            secret=secret,
            body=body,
            msg_id=msg_id,
            timestamp=timestamp,
            **self.scheme_options(body),
        )

    def verify(
        self,
        secret: webhooks.Secrets,
        headers: Mapping[str, str],
        *,
        body: bytes = BODY,
        now: float = NOW,
        tolerance: float | None = 300,
    ) -> webhooks.VerifiedWebhook:
        return webhooks.verify(
            self.scheme,
            secret=secret,
            headers=headers,
            body=body,
            now=now,
            tolerance=tolerance,
            **self.scheme_options(body),
        )

    def with_timestamp(self, headers: dict[str, str], raw: str) -> dict[str, str]:
        """`headers` with the signed timestamp replaced by `raw`, verbatim."""
        assert self.timestamp_header is not None
        changed = dict(headers)
        if self.scheme == "stripe":
            value = changed["Stripe-Signature"]
            changed["Stripe-Signature"] = re.sub(r"^t=[^,]*", lambda _: f"t={raw}", value)
        else:
            changed[self.timestamp_header] = raw
        return changed

    def signature_values(self, headers: dict[str, str]) -> list[str]:
        """The bare signatures (no version or prefix) in a header set made by sign()."""
        return [
            token
            for token in re.split(r"[ ,=]", headers[self.signature_header])
            if len(token) >= 16
        ]


STANDARD = Case(
    "standard",
    "standard",
    "webhook-signature",
    timestamp_header="webhook-timestamp",
    required=("webhook-id", "webhook-timestamp", "webhook-signature"),
    many_signatures=True,
)
STRIPE = Case(
    "stripe",
    "stripe",
    "Stripe-Signature",
    timestamp_header="Stripe-Signature",
    required=("Stripe-Signature",),
    many_signatures=True,
)
GITHUB = Case("github", "github", "X-Hub-Signature-256", required=("X-Hub-Signature-256",))
SLACK = Case(
    "slack",
    "slack",
    "X-Slack-Signature",
    timestamp_header="X-Slack-Request-Timestamp",
    required=("X-Slack-Signature", "X-Slack-Request-Timestamp"),
)
SHOPIFY = Case("shopify", "shopify", "X-Shopify-Hmac-Sha256", required=("X-Shopify-Hmac-Sha256",))
TWILIO = Case("twilio", "twilio", "X-Twilio-Signature", required=("X-Twilio-Signature",))
HMAC_PLAIN = Case(
    "hmac",
    "hmac",
    "X-Signature",
    required=("X-Signature",),
    options={"header": "X-Signature", "prefix": "sha256="},
)
HMAC_TIMESTAMPED = Case(
    "hmac-timestamped",
    "hmac",
    "X-Signature",
    timestamp_header="X-Timestamp",
    required=("X-Signature", "X-Timestamp"),
    many_signatures=True,
    options={
        "header": "X-Signature",
        "algorithm": "sha512",
        "encoding": "base64",
        "prefix": "v1=",
        "timestamp_header": "X-Timestamp",
        "template": "{timestamp}.{body}",
        "separator": ",",
    },
)

ALL = (STANDARD, STRIPE, GITHUB, SLACK, SHOPIFY, TWILIO, HMAC_PLAIN, HMAC_TIMESTAMPED)
TIMESTAMPED = tuple(case for case in ALL if case.timestamp_header is not None)
MANY_SIGNATURES = tuple(case for case in ALL if case.many_signatures)
SINGLE_SIGNATURE = tuple(case for case in ALL if not case.many_signatures)


def failure(
    case: Case,
    secret: webhooks.Secrets,
    headers: Mapping[str, str],
    *,
    body: bytes = BODY,
    now: float = NOW,
    tolerance: float | None = 300,
) -> WebhookVerificationError:
    """The verification error `case.verify` raises; fails the test if it succeeds."""
    with pytest.raises(WebhookVerificationError) as caught:
        case.verify(secret, headers, body=body, now=now, tolerance=tolerance)
    return caught.value


def reason(
    case: Case,
    secret: webhooks.Secrets,
    headers: Mapping[str, str],
    *,
    body: bytes = BODY,
    now: float = NOW,
    tolerance: float | None = 300,
) -> WebhookVerificationReason:
    """The reason `case.verify` fails with."""
    return failure(case, secret, headers, body=body, now=now, tolerance=tolerance).reason
