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


# A frozen dataclass's __init__ sets each field through object.__setattr__, which costs more
# than the rest of making one; a verifier makes one per delivery. These set the slots directly,
# giving an equal object that is just as frozen afterwards.
_new = object.__new__
_set_scheme = getattr(VerifiedWebhook, "scheme").__set__  # noqa: B009 - a slot, not a str
_set_secret_index = getattr(VerifiedWebhook, "secret_index").__set__  # noqa: B009
_set_timestamp = getattr(VerifiedWebhook, "timestamp").__set__  # noqa: B009
_set_msg_id = getattr(VerifiedWebhook, "msg_id").__set__  # noqa: B009


def verified(
    scheme: str, secret_index: int, timestamp: int | None, msg_id: str | None
) -> VerifiedWebhook:
    """`VerifiedWebhook(scheme, secret_index, timestamp, msg_id)`, made faster."""
    result: VerifiedWebhook = _new(VerifiedWebhook)
    _set_scheme(result, scheme)
    _set_secret_index(result, secret_index)
    _set_timestamp(result, timestamp)
    _set_msg_id(result, msg_id)
    return result
