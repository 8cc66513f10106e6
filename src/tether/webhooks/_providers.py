"""Providers with one signature per delivery: GitHub, Slack and Shopify.

Their headers carry a single signature, so a header of the wrong shape is MALFORMED_HEADER,
and signing takes exactly one secret. Each keys HMAC with the secret's UTF-8 text.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether._errors import WebhookVerificationError, WebhookVerificationReason
from tether.webhooks._base import Incoming, Outgoing
from tether.webhooks._codec import digest, first_match, from_base64, from_hex, to_base64
from tether.webhooks._options import Options
from tether.webhooks._result import VerifiedWebhook, verified
from tether.webhooks._secrets import hmac_keys, one_key
from tether.webhooks._time import parse_timestamp

__all__ = ["GitHubScheme", "ShopifyScheme", "SlackScheme"]

_SHA256_SIZE = 32


def _malformed(header: str, shape: str) -> WebhookVerificationError:
    return WebhookVerificationError(
        WebhookVerificationReason.MALFORMED_HEADER, f"the {header} header is not {shape}"
    )


def _no_match(header: str, count: int) -> WebhookVerificationError:
    return WebhookVerificationError(
        WebhookVerificationReason.NO_MATCHING_SIGNATURE,
        f"the {header} signature matches none of the {count} given secret(s)",
    )


@dataclass(frozen=True, slots=True)
class GitHubScheme:
    """GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.

    docs.github.com, "Validating webhook deliveries". The legacy SHA-1 `X-Hub-Signature` is not
    accepted. GitHub signs no timestamp, so replays can only be caught by deduplicating on
    `X-GitHub-Delivery`, which stays the same when a delivery is redelivered.
    """

    signature_header = "X-Hub-Signature-256"
    delivery_header = "X-GitHub-Delivery"
    prefix = "sha256="

    @classmethod
    def from_options(cls, options: Options) -> GitHubScheme:
        del options
        return cls()

    def verify(self, incoming: Incoming) -> VerifiedWebhook:
        keys = hmac_keys(incoming.secrets)
        value = incoming.headers.require(self.signature_header)
        signature = (
            from_hex(value.removeprefix(self.prefix), _SHA256_SIZE)
            if value.startswith(self.prefix)
            else None
        )
        if signature is None:
            raise _malformed(self.signature_header, "sha256=<64 hex digits>")
        index = first_match(keys, incoming.body, [signature], "sha256")
        if index is None:
            raise _no_match(self.signature_header, len(keys))
        return verified("github", index, None, incoming.headers.get(self.delivery_header))

    def sign(self, outgoing: Outgoing) -> dict[str, str]:
        key = one_key(hmac_keys(outgoing.secrets), "github")
        headers = {self.signature_header: self.prefix + digest(key, outgoing.body, "sha256").hex()}
        if outgoing.msg_id is not None:
            headers[self.delivery_header] = outgoing.msg_id
        return headers


@dataclass(frozen=True, slots=True)
class SlackScheme:
    """Slack: `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`.

    api.slack.com/authentication/verifying-requests-from-slack. The base string is built from
    bytes: decoding the body first fails on deliveries that are not UTF-8.
    """

    signature_header = "X-Slack-Signature"
    timestamp_header = "X-Slack-Request-Timestamp"
    prefix = "v0="

    @classmethod
    def from_options(cls, options: Options) -> SlackScheme:
        del options
        return cls()

    def _content(self, timestamp: str, body: bytes) -> bytes:
        return b"v0:" + timestamp.encode("ascii") + b":" + body

    def verify(self, incoming: Incoming) -> VerifiedWebhook:
        keys = hmac_keys(incoming.secrets)
        raw_timestamp = incoming.headers.require(self.timestamp_header)
        value = incoming.headers.require(self.signature_header)
        timestamp = parse_timestamp(raw_timestamp, f"the {self.timestamp_header} header")
        signature = (
            from_hex(value.removeprefix(self.prefix), _SHA256_SIZE)
            if value.startswith(self.prefix)
            else None
        )
        if signature is None:
            raise _malformed(self.signature_header, "v0=<64 hex digits>")
        content = self._content(raw_timestamp, incoming.body)
        index = first_match(keys, content, [signature], "sha256")
        if index is None:
            raise _no_match(self.signature_header, len(keys))
        # After the signature, so a stale timestamp is only reported for an authentic delivery.
        incoming.freshness.check(timestamp)
        return verified("slack", index, timestamp, None)

    def sign(self, outgoing: Outgoing) -> dict[str, str]:
        key = one_key(hmac_keys(outgoing.secrets), "slack")
        timestamp = str(outgoing.timestamp)
        signature = digest(key, self._content(timestamp, outgoing.body), "sha256").hex()
        return {self.timestamp_header: timestamp, self.signature_header: self.prefix + signature}


@dataclass(frozen=True, slots=True)
class ShopifyScheme:
    """Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.

    shopify.dev, "Verify webhook deliveries". After a secret rotation Shopify may keep signing
    with the old secret for up to an hour, so pass both. No timestamp is signed; deduplicate on
    `X-Shopify-Webhook-Id`.
    """

    signature_header = "X-Shopify-Hmac-Sha256"
    id_header = "X-Shopify-Webhook-Id"

    @classmethod
    def from_options(cls, options: Options) -> ShopifyScheme:
        del options
        return cls()

    def verify(self, incoming: Incoming) -> VerifiedWebhook:
        keys = hmac_keys(incoming.secrets)
        value = incoming.headers.require(self.signature_header)
        signature = from_base64(value, _SHA256_SIZE)
        if signature is None:
            raise _malformed(self.signature_header, "the base64 of a 32-byte HMAC-SHA256")
        index = first_match(keys, incoming.body, [signature], "sha256")
        if index is None:
            raise _no_match(self.signature_header, len(keys))
        return verified("shopify", index, None, incoming.headers.get(self.id_header))

    def sign(self, outgoing: Outgoing) -> dict[str, str]:
        key = one_key(hmac_keys(outgoing.secrets), "shopify")
        headers = {self.signature_header: to_base64(digest(key, outgoing.body, "sha256"))}
        if outgoing.msg_id is not None:
            headers[self.id_header] = outgoing.msg_id
        return headers
