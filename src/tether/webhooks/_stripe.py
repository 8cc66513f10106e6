"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 over `{t}.{body}`.

Per docs.stripe.com/webhooks ("Verify signatures manually"): the key is the endpoint secret's
UTF-8 text, `whsec_` prefix included (it is not base64-decoded), and every `v1` entry is a
candidate, since Stripe signs with both the old and the new secret while a secret is rolled.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether._errors import WebhookVerificationError, WebhookVerificationReason
from tether.webhooks._base import Incoming, Outgoing
from tether.webhooks._codec import digest, first_match, from_hex
from tether.webhooks._options import Options
from tether.webhooks._result import VerifiedWebhook, verified
from tether.webhooks._secrets import hmac_keys
from tether.webhooks._time import parse_timestamp

__all__ = ["StripeScheme"]

HEADER = "Stripe-Signature"
_SIZE = 32


@dataclass(frozen=True, slots=True)
class StripeScheme:
    """Stripe's signature scheme; it takes no options."""

    @classmethod
    def from_options(cls, options: Options) -> StripeScheme:
        del options
        return cls()

    def verify(self, incoming: Incoming) -> VerifiedWebhook:
        keys = hmac_keys(incoming.secrets)
        value = incoming.headers.require(HEADER)
        stamps: list[str] = []
        candidates: list[bytes] = []
        for item in value.split(","):
            name, equals, data = item.partition("=")
            if not equals:
                continue
            if name == "t":
                stamps.append(data)
            elif name == "v1":
                signature = from_hex(data, _SIZE)
                if signature is not None:
                    candidates.append(signature)
            # Every other scheme (v0, a future one) is ignored: Stripe's docs say so explicitly,
            # because accepting a weaker scheme would allow a downgrade.
        if len(stamps) != 1:
            raise WebhookVerificationError(
                WebhookVerificationReason.MALFORMED_HEADER,
                f"the {HEADER} header must carry exactly one t= timestamp",
            )
        raw_timestamp = stamps[0]
        timestamp = parse_timestamp(raw_timestamp, f"the t= timestamp of the {HEADER} header")
        content = raw_timestamp.encode("ascii") + b"." + incoming.body
        index = first_match(keys, content, candidates, "sha256")
        if index is None:
            raise WebhookVerificationError(
                WebhookVerificationReason.NO_MATCHING_SIGNATURE,
                f"no v1 signature in the {HEADER} header matches "
                f"any of the {len(keys)} given secret(s)",
            )
        # After the signature, so a stale timestamp is only reported for an authentic delivery.
        incoming.freshness.check(timestamp)
        return verified("stripe", index, timestamp, None)

    def sign(self, outgoing: Outgoing) -> dict[str, str]:
        keys = hmac_keys(outgoing.secrets)
        timestamp = str(outgoing.timestamp)
        content = timestamp.encode("ascii") + b"." + outgoing.body
        entries = [f"t={timestamp}"]
        entries.extend(f"v1={digest(key, content, 'sha256').hex()}" for key in keys)
        return {HEADER: ",".join(entries)}
