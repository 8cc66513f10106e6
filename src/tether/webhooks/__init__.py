"""Webhook signatures: verify what providers send, sign what you send. Pure: no I/O.

    from tether import webhooks

    webhooks.verify("github", secret=secret, headers=request.headers, body=raw_body)
    headers = webhooks.sign("standard", secret=secret, body=payload, msg_id=event_id)

Schemes: "standard" (Standard Webhooks v1 and v1a), "stripe", "github", "slack", "shopify",
"twilio" (needs url=) and "hmac" (a generic, configurable HMAC). See docs/webhooks.md.
"""

from tether._errors import WebhookVerificationError, WebhookVerificationReason
from tether.webhooks._api import SCHEMES, sign, verify
from tether.webhooks._keys import Keypair, generate_keypair, generate_secret
from tether.webhooks._result import VerifiedWebhook
from tether.webhooks._secrets import SecretLike, Secrets

__all__ = [
    "SCHEMES",
    "Keypair",
    "SecretLike",
    "Secrets",
    "VerifiedWebhook",
    "WebhookVerificationError",
    "WebhookVerificationReason",
    "generate_keypair",
    "generate_secret",
    "sign",
    "verify",
]
