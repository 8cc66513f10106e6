"""The webhook outbox's values and its storage contract.

Every backend (SQLite by default, PostgreSQL to scale out) implements `OutboxStore` and passes
the same conformance tests. Times are wall-clock seconds since the epoch, passed in by the
caller, so a fake clock drives schedules and leases in tests and several processes agree.

A message is what the application enqueued; a delivery is one message bound for one endpoint
(the fan-out happens inside the enqueue transaction); an attempt is one HTTP request.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "AttemptResult",
    "DeliveryAttempt",
    "DeliveryFilter",
    "DeliveryStatus",
    "Endpoint",
    "EndpointSecret",
    "NewMessage",
    "OutboxDelivery",
    "OutboxEvent",
    "OutboxLease",
    "OutboxStats",
    "OutboxStore",
    "RecordOutcome",
]


class DeliveryStatus(enum.StrEnum):
    """Where a delivery (one message to one endpoint) is in its life."""

    #: Waiting for its first or next attempt (or being attempted under a lease).
    PENDING = "pending"
    #: The endpoint answered 2xx.
    DELIVERED = "delivered"
    #: Every scheduled attempt failed; waits for a manual retry or a replay.
    DEAD = "dead"
    #: Not attempted because the endpoint was disabled; replay it after re-enabling.
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class EndpointSecret:
    """One signing secret of an endpoint; a rotated-out secret carries its expiry."""

    value: str = field(repr=False)
    #: Wall-clock time after which the secret no longer signs; None while it is current.
    expires_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """A receiver of webhooks and what it subscribed to. Secrets never appear in the repr."""

    id: str
    url: str
    description: str = ""
    enabled: bool = True
    disabled_reason: str | None = None
    #: Event types delivered here; empty means every type. A trailing "*" matches a prefix.
    event_types: tuple[str, ...] = ()
    #: Extra headers sent with every attempt (the webhook-* headers cannot be overridden).
    #: Kept out of the repr: they often carry the receiver's credentials.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    secrets: tuple[EndpointSecret, ...] = field(default=(), repr=False)
    #: A rate limit such as "50/s" for this endpoint, enforced per worker process.
    rate_limit: str | None = None
    #: Seconds one attempt may take, connecting included.
    timeout: float = 15.0
    #: Delays in seconds before each retry; None means the outbox's schedule.
    schedule: tuple[float, ...] | None = None
    #: Deliver messages that share an ordering key one at a time, in enqueue order.
    ordered: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    #: When the current run of failures started; None after a success.
    failing_since: float | None = None
    #: The endpoint asked (Retry-After) not to be called before this time.
    paused_until: float = 0.0

    def signing_secrets(self, now: float) -> tuple[str, ...]:
        """The secrets that sign an attempt at `now`: the current one and any in overlap."""
        return tuple(s.value for s in self.secrets if s.expires_at is None or s.expires_at > now)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as the application enqueues it."""

    msg_id: str
    event_type: str
    payload: bytes = field(repr=False)
    created_at: float
    idempotency_key: str | None = None
    ordering_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxDelivery:
    """One message bound for one endpoint, with its delivery state."""

    id: int
    msg_id: str
    endpoint_id: str
    event_type: str
    status: DeliveryStatus
    #: Attempts started so far; a claim counts, so an attempt cut short by a crash counts too.
    attempts: int
    created_at: float
    next_attempt_at: float
    completed_at: float | None
    last_status: int | None
    last_error: str | None
    ordering_key: str | None
    #: The message body; loaded by claims, empty in listings.
    payload: bytes = field(default=b"", repr=False)

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


@dataclass(frozen=True, slots=True)
class OutboxLease:
    """Deliveries claimed by one worker until `expires_at`; updates must present `token`."""

    delivery: OutboxDelivery
    token: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryAttempt:
    """One HTTP request of a delivery, as the attempt log keeps it."""

    id: int
    delivery_id: int
    msg_id: str
    endpoint_id: str
    #: 1 for the first attempt of the delivery (counting since its last replay).
    attempt: int
    started_at: float
    #: Seconds from sending to the end of the response (or the failure).
    latency: float
    status_code: int | None
    #: "delivered", "failed" or "gone" (410: the endpoint was disabled).
    outcome: str
    error: str | None
    #: The start of the response body, redacted and truncated.
    response: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptResult:
    """What a worker reports about one attempt, and what follows from it."""

    #: DELIVERED, PENDING (retry at `retry_at`), DEAD, or SKIPPED (410: the endpoint goes).
    status: DeliveryStatus
    retry_at: float | None
    started_at: float
    latency: float
    status_code: int | None
    outcome: str
    error: str | None
    response: str | None
    #: Whether the endpoint answered 2xx (ends its run of failures).
    endpoint_ok: bool
    #: The endpoint's pause (Retry-After) ends here; None when it asked for none.
    pause_until: float | None = None
    #: Disable the endpoint now, for this reason (410 Gone).
    disable: str | None = None
    #: Disable the endpoint once it has failed continuously this long; None never does.
    disable_after: float | None = None


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """What recording an attempt did."""

    #: False when the lease had been lost (another worker owns the delivery now).
    held: bool
    #: The reason the endpoint was disabled by this attempt, if it was.
    disabled: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEvent:
    """Something an operator should hear about, reported to a worker's `on_event` hook."""

    #: "endpoint.disabled" (410 Gone or continuous failure) or "delivery.dead".
    kind: str
    endpoint_id: str
    at: float
    reason: str | None = None
    msg_id: str | None = None
    delivery_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryFilter:
    """Which deliveries a listing or a replay selects; every given field must match."""

    status: DeliveryStatus | None = None
    endpoint_id: str | None = None
    event_type: str | None = None
    msg_id: str | None = None
    #: Messages created at or after this time.
    since: float | None = None
    #: Messages created before this time.
    until: float | None = None
    ids: tuple[int, ...] | None = None


@dataclass(slots=True)
class OutboxStats:
    """Counters a store keeps about its own writes, for benchmarks and tests."""

    enqueued: int = 0
    duplicates: int = 0


@runtime_checkable
class OutboxStore(Protocol):
    """Durable storage for outgoing webhooks.

    `enqueue` returns only after the message and its deliveries are committed (fsync'd).
    """

    stats: OutboxStats

    async def open(self) -> None:
        """Connect and create the schema if needed; calling it again does nothing."""
        ...

    async def close(self) -> None:
        """Finish pending writes and disconnect; calling it again does nothing."""
        ...

    # -- endpoints -------------------------------------------------------------------------

    async def save_endpoint(self, endpoint: Endpoint, *, create: bool) -> None:
        """Insert (`create`) or update an endpoint's configuration; not its failure state.

        Raises:
            ConfigError: creating an id that exists, or updating one that does not.
        """
        ...

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint with `endpoint_id`, or None."""
        ...

    async def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint, oldest first."""
        ...

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove the endpoint and its deliveries; False if it did not exist."""
        ...

    async def set_enabled(
        self, endpoint_id: str, *, enabled: bool, reason: str | None, now: float
    ) -> bool:
        """Enable or disable; disabling marks its pending deliveries SKIPPED. False if unknown."""
        ...

    # -- messages --------------------------------------------------------------------------

    async def enqueue(self, message: NewMessage) -> tuple[str, bool]:
        """Store `message` and its deliveries durably: (its msg_id, whether it is new).

        A message whose idempotency key is already stored is not stored again; the earlier
        message's id is returned.
        """
        ...

    # -- workers ---------------------------------------------------------------------------

    async def claim(self, *, now: float, limit: int, lease: float) -> list[OutboxLease]:
        """Lease up to `limit` due deliveries for `lease` seconds, oldest due first.

        Only the head of each ordering lane is due. Each claim counts as an attempt.
        """
        ...

    async def renew(self, token: str, *, until: float) -> int:
        """Extend every delivery still held under `token`; how many were extended."""
        ...

    async def release(self, lease: OutboxLease, *, retry_at: float) -> bool:
        """Give a delivery back unattempted (the attempt is not counted); False if lost."""
        ...

    async def record(
        self, lease: OutboxLease, result: AttemptResult, *, now: float
    ) -> RecordOutcome:
        """Log the attempt and move the delivery (and its endpoint) on accordingly."""
        ...

    async def next_due(self) -> float | None:
        """When the earliest pending delivery is due, or None when nothing is pending."""
        ...

    async def watch(self, wake: Callable[[], object]) -> None:
        """Call `wake` whenever a message may have been enqueued (by any process, where the
        backend can tell); workers still poll, so this only shortens the wait."""
        ...

    # -- operators -------------------------------------------------------------------------

    async def deliveries(
        self, selection: DeliveryFilter, *, limit: int = 50, before_id: int | None = None
    ) -> list[OutboxDelivery]:
        """Deliveries matching `selection`, newest first; `before_id` pages backwards."""
        ...

    async def attempts(
        self,
        *,
        delivery_id: int | None = None,
        msg_id: str | None = None,
        endpoint_id: str | None = None,
        limit: int = 50,
    ) -> list[DeliveryAttempt]:
        """Logged attempts matching every given filter, newest first."""
        ...

    async def replay(self, selection: DeliveryFilter, *, now: float, dry_run: bool) -> int:
        """Make selected finished deliveries pending now with a fresh schedule; how many.

        Pending deliveries are never touched. With `dry_run`, only counts them.
        """
        ...

    async def counts(self) -> dict[DeliveryStatus, int]:
        """How many deliveries are in each status."""
        ...

    async def purge(self, *, attempts_before: float, finished_before: float | None) -> int:
        """Delete attempts logged before `attempts_before`, and finished deliveries (and
        messages left with none) created before `finished_before`; how many rows went."""
        ...


def encode_secrets(secrets: Sequence[EndpointSecret]) -> str:
    return json.dumps([[s.value, s.expires_at] for s in secrets], separators=(",", ":"))


def decode_secrets(text: str) -> tuple[EndpointSecret, ...]:
    return tuple(
        EndpointSecret(str(value), None if expires is None else float(expires))
        for value, expires in json.loads(text)
    )


def encode_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def decode_pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(value)) for name, value in json.loads(text))


def decode_strings(text: str) -> tuple[str, ...]:
    return tuple(str(item) for item in json.loads(text))


def decode_schedule(text: str | None) -> tuple[float, ...] | None:
    return None if text is None else tuple(float(x) for x in json.loads(text))
