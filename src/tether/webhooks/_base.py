"""What every scheme implements, and the inputs it gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tether.webhooks._headers import HeaderView
from tether.webhooks._result import VerifiedWebhook
from tether.webhooks._time import Freshness

__all__ = ["Incoming", "Outgoing", "Scheme"]


# Not frozen: one is made per verified delivery, and a frozen dataclass's __init__ costs an
# object.__setattr__ call per field. Nothing assigns to it after construction.
@dataclass(slots=True)
class Incoming:
    """A received webhook, as its verifier sees it."""

    headers: HeaderView
    body: bytes
    secrets: tuple[str | bytes, ...] = field(repr=False)
    freshness: Freshness


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A webhook about to be sent, as its signer sees it."""

    body: bytes
    secrets: tuple[str | bytes, ...] = field(repr=False)
    msg_id: str | None
    timestamp: int


class Scheme(Protocol):
    """One signature scheme: its verifier and its signer, configured by its options."""

    def verify(self, incoming: Incoming) -> VerifiedWebhook:
        """Check `incoming`, raising WebhookVerificationError on failure."""
        ...

    def sign(self, outgoing: Outgoing) -> dict[str, str]:
        """The headers that make `outgoing` verify."""
        ...
