"""What a successful verification established."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VerifiedWebhook"]


@dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """A webhook whose signature (and, where the scheme signs one, timestamp) checked out."""

    #: The scheme that verified it, e.g. "standard".
    scheme: str
    #: Which of the given secrets matched, 0 for the first. During a rotation, once this stops
    #: being the old secret's index the old secret can be retired.
    secret_index: int
    #: The signed timestamp, for schemes that sign one; None otherwise.
    timestamp: int | None
    #: The sender's delivery id (webhook-id, X-GitHub-Delivery, X-Shopify-Webhook-Id,
    #: I-Twilio-Idempotency-Token, or the generic scheme's id_header) when it was sent. Only
    #: "standard", and "hmac" with {id} in its template, sign it; use it as a dedupe key.
    msg_id: str | None
