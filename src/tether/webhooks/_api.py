"""verify() and sign(): one entry point for every scheme."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tether._errors import ConfigError
from tether.webhooks._base import Incoming, Outgoing, Scheme
from tether.webhooks._generic import HmacScheme
from tether.webhooks._headers import HeaderView
from tether.webhooks._options import Options
from tether.webhooks._providers import GitHubScheme, ShopifyScheme, SlackScheme
from tether.webhooks._result import VerifiedWebhook
from tether.webhooks._secrets import Secrets, unwrap_secrets
from tether.webhooks._standard import StandardScheme
from tether.webhooks._stripe import StripeScheme
from tether.webhooks._time import DEFAULT_TOLERANCE, Freshness, freshness, sign_timestamp
from tether.webhooks._twilio import TwilioScheme

__all__ = ["SCHEMES", "PreparedVerifier", "prepare_verifier", "sign", "verify"]

_FACTORIES: dict[str, Callable[[Options], Scheme]] = {
    "github": GitHubScheme.from_options,
    "hmac": HmacScheme.from_options,
    "shopify": ShopifyScheme.from_options,
    "slack": SlackScheme.from_options,
    "standard": StandardScheme.from_options,
    "stripe": StripeScheme.from_options,
    "twilio": TwilioScheme.from_options,
}

#: The scheme names verify() and sign() accept.
SCHEMES: tuple[str, ...] = tuple(sorted(_FACTORIES))

_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def _scheme(name: object, options: Mapping[str, object]) -> Scheme:
    if not isinstance(name, str) or (factory := _FACTORIES.get(name)) is None:
        raise ConfigError(f"unknown webhook scheme {name!r}; known schemes: {', '.join(SCHEMES)}")
    reader = Options(name, options)
    scheme = factory(reader)
    reader.done()
    return scheme


def _body(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    # A str body has been decoded (and often re-serialized) already; signatures cover the
    # exact bytes received, so only those can be checked.
    raise ConfigError(f"body must be the raw request bytes, not {type(body).__name__}")


def verify(
    scheme: str,
    *,
    secret: Secrets,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    tolerance: float | None = DEFAULT_TOLERANCE,
    **options: object,
) -> VerifiedWebhook:
    """Check that a received webhook was signed by a holder of `secret`.

    Args:
        scheme: one of "standard", "stripe", "github", "slack", "shopify", "twilio", "hmac".
        secret: the signing secret, or several during a rotation (any one may match); each a
            str, bytes or pydantic.SecretStr.
        headers: the request headers; names are matched case-insensitively.
        body: the raw request body, exactly as received.
        now: the current time in seconds since the epoch; defaults to time.time().
        tolerance: how many seconds a signed timestamp may lie before or after `now`; None
            disables the check (for re-verifying stored deliveries). Ignored by schemes that
            sign no timestamp.
        **options: the scheme's own options, e.g. url= for "twilio" or header= for "hmac".

    Returns:
        What was verified: which secret matched, the signed timestamp, the delivery id.

    Raises:
        WebhookVerificationError: the webhook failed verification; `.reason` says why.
        ConfigError: an unknown scheme or option, an empty or unusable secret, or a body that
            is not bytes; these are mistakes in the call, not in the webhook.
    """
    implementation = _scheme(scheme, options)
    incoming = Incoming(
        headers=HeaderView(headers),
        body=_body(body),
        secrets=unwrap_secrets(secret),
        freshness=freshness(now, tolerance),
    )
    return implementation.verify(incoming)


@dataclass(frozen=True, slots=True)
class PreparedVerifier:
    """`verify()` with the scheme, its options, the secrets and the tolerance checked once.

    For receivers that verify every delivery of a source against the same settings.
    """

    scheme: Scheme
    secrets: tuple[str | bytes, ...] = field(repr=False)
    tolerance: float | None

    def __call__(self, headers: HeaderView, body: bytes, now: float) -> VerifiedWebhook:
        return self.scheme.verify(
            Incoming(
                headers=headers,
                body=body,
                secrets=self.secrets,
                freshness=Freshness(now, self.tolerance),
            )
        )


def prepare_verifier(
    scheme: str,
    *,
    secret: Secrets,
    tolerance: float | None = DEFAULT_TOLERANCE,
    **options: object,
) -> PreparedVerifier:
    """A verifier for one source; raises ConfigError as `verify()` would, but once."""
    checked = freshness(0.0, tolerance)
    return PreparedVerifier(_scheme(scheme, options), unwrap_secrets(secret), checked.tolerance)


def sign(
    scheme: str,
    *,
    secret: Secrets,
    body: bytes,
    msg_id: str | None = None,
    timestamp: int | None = None,
    **options: object,
) -> dict[str, str]:
    """The headers that make `body` verify under `scheme` with `secret`.

    Args:
        scheme: one of "standard", "stripe", "github", "slack", "shopify", "twilio", "hmac".
        secret: the signing secret. "standard" and "stripe" (and "hmac" with separator=) sign
            with every secret given, for rotations; the other schemes take exactly one. For
            "standard", a `whsk_` key makes a v1a (Ed25519) signature.
        body: the exact bytes that will be sent.
        msg_id: the event's id, stable across retries. Required by "standard"; sent in the id
            header of schemes that have one, ignored by the others.
        timestamp: the attempt's time in whole seconds since the epoch; defaults to now.
            Ignored by schemes that sign no timestamp.
        **options: the scheme's own options, as for verify().

    Returns:
        Header names and values to add to the request.

    Raises:
        ConfigError: an unknown scheme or option, an unusable secret or key, or a missing
            msg_id= or url= that the scheme needs.
    """
    implementation = _scheme(scheme, options)
    given_id: object = msg_id  # checked at run time too: the annotation is no guarantee
    if given_id is not None and (
        not isinstance(given_id, str) or not given_id or _HEADER_UNSAFE.search(given_id)
    ):
        raise ConfigError("msg_id must be a non-empty str without control characters")
    outgoing = Outgoing(
        body=_body(body),
        secrets=unwrap_secrets(secret),
        msg_id=msg_id,
        timestamp=sign_timestamp(timestamp),
    )
    return implementation.sign(outgoing)
