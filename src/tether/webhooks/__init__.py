"""Webhooks: verify what providers send, sign what you send, and receive without loss.

    from tether import webhooks

    webhooks.verify("github", secret=secret, headers=request.headers, body=raw_body)
    headers = webhooks.sign("standard", secret=secret, body=payload, msg_id=event_id)

Schemes: "standard" (Standard Webhooks v1 and v1a), "stripe", "github", "slack", "shopify",
"twilio" (needs url=) and "hmac" (a generic, configurable HMAC). See docs/webhooks.md.

The inbox (docs/webhooks-inbox.md) receives: `Inbox` is an ASGI app with one route per
`Source` that verifies, commits each delivery to a durable store and only then answers 2xx; its
`Dispatcher` runs your handlers from the store with retries and a dead letter.
"""

from tether._errors import WebhookVerificationError, WebhookVerificationReason
from tether.stores import EventStatus, InboxEvent
from tether.webhooks._api import SCHEMES, sign, verify
from tether.webhooks._delivery import Delivery
from tether.webhooks._dispatch import Dispatcher, DispatchPolicy, Handler, Handlers
from tether.webhooks._inbox import Inbox, Source
from tether.webhooks._keys import Keypair, generate_keypair, generate_secret
from tether.webhooks._result import VerifiedWebhook
from tether.webhooks._secrets import SecretLike, Secrets

__all__ = [
    "SCHEMES",
    "Delivery",
    "DispatchPolicy",
    "Dispatcher",
    "EventStatus",
    "Handler",
    "Handlers",
    "Inbox",
    "InboxEvent",
    "Keypair",
    "SecretLike",
    "Secrets",
    "Source",
    "VerifiedWebhook",
    "WebhookVerificationError",
    "WebhookVerificationReason",
    "generate_keypair",
    "generate_secret",
    "sign",
    "verify",
]
