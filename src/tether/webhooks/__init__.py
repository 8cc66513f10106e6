"""Webhooks: verify what providers send, sign what you send, and receive without loss.

    from tether import webhooks

    webhooks.verify("github", secret=secret, headers=request.headers, body=raw_body)
    headers = webhooks.sign("standard", secret=secret, body=payload, msg_id=event_id)

Schemes: "standard" (Standard Webhooks v1 and v1a), "stripe", "github", "slack", "shopify",
"twilio" (needs url=) and "hmac" (a generic, configurable HMAC). See docs/webhooks.md.

The inbox (docs/webhooks-inbox.md) receives: `Inbox` is an ASGI app with one route per
`Source` that verifies, commits each delivery to a durable store and only then answers 2xx; its
`Dispatcher` runs your handlers from the store with retries and a dead letter.

The outbox (docs/webhooks-outbox.md) sends: `Outbox.enqueue` stores a message durably (or
`enqueue_in` inside your own transaction) and `OutboxWorker`s deliver it to every subscribed
`Endpoint`, signed, on a retry schedule, with a dead letter, replay and an attempt log.
"""

from tether._errors import WebhookVerificationError, WebhookVerificationReason
from tether.stores import EventStatus, InboxEvent
from tether.webhooks._api import SCHEMES, sign, verify
from tether.webhooks._delivery import ReceivedWebhook
from tether.webhooks._dispatch import Dispatcher, DispatchPolicy, Handler, Handlers
from tether.webhooks._inbox import Inbox, Source
from tether.webhooks._keys import Keypair, generate_keypair, generate_secret
from tether.webhooks._outbox import Outbox, open_outbox_store
from tether.webhooks._outbox_egress import EgressPolicy, EgressRefused
from tether.webhooks._outbox_model import (
    DeliveryAttempt,
    DeliveryStatus,
    Endpoint,
    EndpointSecret,
    OutboxDelivery,
    OutboxEvent,
    OutboxStore,
)
from tether.webhooks._outbox_policy import DEFAULT_SCHEDULE, OutboxPolicy
from tether.webhooks._outbox_worker import OutboxWorker
from tether.webhooks._result import VerifiedWebhook
from tether.webhooks._secrets import SecretLike, Secrets

__all__ = [
    "DEFAULT_SCHEDULE",
    "SCHEMES",
    "DeliveryAttempt",
    "DeliveryStatus",
    "DispatchPolicy",
    "Dispatcher",
    "EgressPolicy",
    "EgressRefused",
    "Endpoint",
    "EndpointSecret",
    "EventStatus",
    "Handler",
    "Handlers",
    "Inbox",
    "InboxEvent",
    "Keypair",
    "Outbox",
    "OutboxDelivery",
    "OutboxEvent",
    "OutboxPolicy",
    "OutboxStore",
    "OutboxWorker",
    "ReceivedWebhook",
    "SecretLike",
    "Secrets",
    "Source",
    "VerifiedWebhook",
    "WebhookVerificationError",
    "WebhookVerificationReason",
    "generate_keypair",
    "generate_secret",
    "open_outbox_store",
    "sign",
    "verify",
]
