"""Standard Webhooks v1.0.0: `v1` HMAC-SHA256 and `v1a` Ed25519 over `{id}.{timestamp}.{body}`.

Section references are to spec/standard-webhooks.md in standard-webhooks/standard-webhooks.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, field

from tether._errors import ConfigError, WebhookVerificationError, WebhookVerificationReason
from tether.webhooks._base import Incoming, Outgoing
from tether.webhooks._codec import digest, from_base64, to_base64
from tether.webhooks._keys import (
    HmacKey,
    SigningKey,
    StandardKey,
    ed25519_sign,
    ed25519_verify,
    standard_key,
)
from tether.webhooks._options import Options
from tether.webhooks._result import VerifiedWebhook, verified
from tether.webhooks._time import parse_timestamp

__all__ = ["StandardScheme"]

_HMAC_SIZE = 32
_ED25519_SIZE = 64
_TOKEN = re.compile(r"[A-Za-z0-9-]+")
_UNSAFE_ID = re.compile(r"[.\s\x00-\x1f\x7f]")


def _parse_signatures(header: str) -> tuple[list[bytes], list[bytes]]:
    """The v1 (HMAC) and v1a (Ed25519) signatures in a signature header."""
    # "Webhook headers": a space-delimited list of `<version>,<base64>` entries, more than one
    # during a key rotation. Entries of unknown versions or bad form are skipped, not fatal: a
    # sender may add versions this code does not know, and any one match is enough.
    v1: list[bytes] = []
    v1a: list[bytes] = []
    for entry in header.split(" "):
        version, comma, encoded = entry.partition(",")
        if not comma:
            continue
        if version == "v1":
            signature = from_base64(encoded, _HMAC_SIZE)
            if signature is not None:
                v1.append(signature)
        elif version == "v1a":
            signature = from_base64(encoded, _ED25519_SIZE)
            if signature is not None:
                v1a.append(signature)
    return v1, v1a


def _matches(key: StandardKey, content: bytes, v1: list[bytes], v1a: list[bytes]) -> bool:
    if isinstance(key, HmacKey):
        if not v1:
            return False
        expected = digest(key.key, content, "sha256")
        # "Verifying signatures": a constant-time comparison, or the receiver leaks the
        # expected signature byte by byte.
        for candidate in v1:  # noqa: SIM110 - no generator per delivery, as any() would need
            if hmac.compare_digest(expected, candidate):
                return True
        return False
    verifying = key.public() if isinstance(key, SigningKey) else key
    return any(ed25519_verify(verifying, candidate, content) for candidate in v1a)


def _utf8(msg_id: str) -> bytes:
    try:
        return msg_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError("msg_id must be valid text") from None


@dataclass(frozen=True, slots=True)
class StandardScheme:
    """Standard Webhooks, with `webhook-*` headers or another prefix such as Svix's `svix-*`."""

    header_prefix: str = "webhook"
    # The three header names, spelled once rather than on every delivery.
    _id_header: str = field(init=False, repr=False, compare=False)
    _timestamp_header: str = field(init=False, repr=False, compare=False)
    _signature_header: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefix = self.header_prefix
        object.__setattr__(self, "_id_header", f"{prefix}-id")
        object.__setattr__(self, "_timestamp_header", f"{prefix}-timestamp")
        object.__setattr__(self, "_signature_header", f"{prefix}-signature")

    @classmethod
    def from_options(cls, options: Options) -> StandardScheme:
        prefix = options.text("header_prefix", "webhook")
        if _TOKEN.fullmatch(prefix) is None:
            raise ConfigError("standard option header_prefix= must be letters, digits or '-'")
        return cls(prefix)

    def verify(self, incoming: Incoming) -> VerifiedWebhook:
        # Every key first, before any header: an unusable secret is a ConfigError whatever the
        # delivery, which is how Source() finds one at configuration time.
        keys = [standard_key(secret, index) for index, secret in enumerate(incoming.secrets)]
        headers = incoming.headers
        msg_id = headers.require(self._id_header)
        raw_timestamp = headers.require(self._timestamp_header)
        signature_header = headers.require(self._signature_header)
        # "Signature scheme": the id and timestamp must not contain `.`, or a signature made
        # for one (id, timestamp, body) split of the content would verify for another.
        if "." in msg_id:
            raise WebhookVerificationError(
                WebhookVerificationReason.MALFORMED_HEADER,
                f"the {self._id_header} header must not contain '.'",
            )
        timestamp = parse_timestamp(raw_timestamp, f"the {self._timestamp_header} header")
        try:
            signed_id = msg_id.encode("utf-8")
        except UnicodeEncodeError:
            raise WebhookVerificationError(
                WebhookVerificationReason.MALFORMED_HEADER,
                f"the {self._id_header} header is not valid text",
            ) from None
        content = b"%s.%s.%s" % (signed_id, raw_timestamp.encode("ascii"), incoming.body)
        v1, v1a = _parse_signatures(signature_header)
        for index, key in enumerate(keys):
            if _matches(key, content, v1, v1a):
                # Checked after the signature so that a stale or early timestamp is reported
                # only for an authentic delivery: it then means clock skew or a replay.
                incoming.freshness.check(timestamp)
                return verified("standard", index, timestamp, msg_id)
        raise WebhookVerificationError(
            WebhookVerificationReason.NO_MATCHING_SIGNATURE,
            f"no signature in the {self._signature_header} header matches "
            f"any of the {len(keys)} given key(s)",
        )

    def sign(self, outgoing: Outgoing) -> dict[str, str]:
        keys = [standard_key(secret, index) for index, secret in enumerate(outgoing.secrets)]
        msg_id = outgoing.msg_id
        if msg_id is None:
            # "Webhook metadata": the id is the receiver's idempotency key and must stay the same
            # across retries, so it belongs to the caller's stored event, not to this call.
            raise ConfigError("the standard scheme needs msg_id=, the event's stable id")
        if _UNSAFE_ID.search(msg_id) is not None:
            raise ConfigError("msg_id must not contain '.', whitespace or control characters")
        timestamp = str(outgoing.timestamp)
        content = b"%s.%s.%s" % (_utf8(msg_id), timestamp.encode("ascii"), outgoing.body)
        entries: list[str] = []
        for index, key in enumerate(keys):
            if isinstance(key, HmacKey):
                entries.append("v1," + to_base64(digest(key.key, content, "sha256")))
            elif isinstance(key, SigningKey):
                entries.append("v1a," + to_base64(ed25519_sign(key, content)))
            else:
                raise ConfigError(
                    f"webhook secret #{index} is a whpk_ public key, which can only verify; "
                    "sign with the whsk_ secret key"
                )
        return {
            self._id_header: msg_id,
            self._timestamp_header: timestamp,
            self._signature_header: " ".join(entries),
        }
