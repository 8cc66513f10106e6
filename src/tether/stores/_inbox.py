"""The webhook inbox's storage contract: what the receiver writes and the dispatcher leases.

Every backend (SQLite by default, PostgreSQL) implements `InboxStore` and passes the same
conformance tests. Times are wall-clock seconds since the epoch, passed in by the caller, so a
fake clock drives leases and backoff in tests and several processes agree on them.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _quote
from typing import Any, Protocol, runtime_checkable

from tether._errors import ConfigError, TetherError

__all__ = [
    "EVENT_COLUMNS",
    "EventStatus",
    "InboxEvent",
    "InboxStore",
    "Lease",
    "NewEvent",
    "StoreError",
    "StoreStats",
    "check_identifier",
    "decode_headers",
    "encode_headers",
    "event_from_row",
]

#: Longest event id kept verbatim; longer ids are the sender's bug, and the receiver hashes them.
MAX_EVENT_ID = 255
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class StoreError(TetherError):
    """The store could not do what was asked: the database is unreachable, full or broken."""


class EventStatus(enum.StrEnum):
    """Where an inbox event is in its life."""

    #: Stored and waiting for (another) dispatch attempt.
    PENDING = "pending"
    #: Every matching handler succeeded.
    DELIVERED = "delivered"
    #: No handler matched its source and type; kept so it can be replayed once one exists.
    IGNORED = "ignored"
    #: A handler failed on every allowed attempt; waits for a person to replay or purge it.
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A verified delivery, as the receiver hands it to the store."""

    source: str
    event_id: str
    event_type: str | None
    received_at: float
    #: Every received header as (name, value) pairs, repeats included, credentials redacted.
    headers: tuple[tuple[str, str], ...]
    body: bytes = field(repr=False)
    #: The verification result: which scheme, which secret matched, the signed time and id.
    scheme: str
    secret_index: int | None = None
    signed_at: int | None = None
    msg_id: str | None = None


# A frozen dataclass's __init__ sets each field through object.__setattr__, which for ten fields
# costs more than the rest of admitting a delivery. The receiver makes its events here instead,
# setting the slots directly: an equal object, just as frozen afterwards.
_new = object.__new__
_NEW_EVENT_SLOTS = tuple(getattr(NewEvent, name).__set__ for name in NewEvent.__slots__)


def new_event(
    *,
    source: str,
    event_id: str,
    event_type: str | None,
    received_at: float,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    scheme: str,
    secret_index: int | None,
    signed_at: int | None,
    msg_id: str | None,
) -> NewEvent:
    """`NewEvent(...)` with every field given, made faster."""
    event: NewEvent = _new(NewEvent)
    (
        set_source,
        set_event_id,
        set_event_type,
        set_received_at,
        set_headers,
        set_body,
        set_scheme,
        set_secret_index,
        set_signed_at,
        set_msg_id,
    ) = _NEW_EVENT_SLOTS
    set_source(event, source)
    set_event_id(event, event_id)
    set_event_type(event, event_type)
    set_received_at(event, received_at)
    set_headers(event, headers)
    set_body(event, body)
    set_scheme(event, scheme)
    set_secret_index(event, secret_index)
    set_signed_at(event, signed_at)
    set_msg_id(event, msg_id)
    return event


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """A stored webhook event: the raw delivery, its verification and its dispatch state."""

    #: The store's row id; the CLI and `replay` refer to events by it.
    id: int
    source: str
    event_id: str
    event_type: str | None
    status: EventStatus
    #: Dispatch attempts started so far (a claim counts, so a crash mid-handler counts too).
    attempts: int
    received_at: float
    next_attempt_at: float
    completed_at: float | None
    last_error: str | None
    #: Names of the handlers that already succeeded; a retry runs only the others.
    handled: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes = field(repr=False)
    scheme: str
    secret_index: int | None
    signed_at: int | None
    msg_id: str | None

    def json(self) -> Any:
        """The body parsed as JSON.

        Raises:
            ValueError: the body is not JSON.
        """
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first received value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Lease:
    """An event claimed by one dispatcher until `expires_at`; updates must present `token`."""

    event: InboxEvent
    token: str = field(repr=False)
    expires_at: float


@dataclass(slots=True)
class StoreStats:
    """Counters a store keeps about its own writes, for benchmarks and tests."""

    #: Events written (new ones only; duplicates are not written).
    inserted: int = 0
    #: Deliveries that matched an event already stored.
    duplicates: int = 0
    #: Durable commits that carried at least one new delivery.
    commits: int = 0
    #: The largest number of deliveries one commit carried.
    largest_batch: int = 0

    def record_batch(self, size: int, inserted: int) -> None:
        self.commits += 1
        self.inserted += inserted
        self.duplicates += size - inserted
        self.largest_batch = max(self.largest_batch, size)


@runtime_checkable
class InboxStore(Protocol):
    """Durable storage for received webhooks.

    `add` returns only after the event is committed to disk (fsync'd), so the receiver may
    acknowledge it; concurrent calls share commits. A (source, event_id) pair is stored once.
    """

    stats: StoreStats

    async def open(self) -> None:
        """Connect and create the schema if needed; calling it again does nothing."""
        ...

    async def close(self) -> None:
        """Finish pending writes and disconnect; calling it again does nothing."""
        ...

    async def add(self, event: NewEvent) -> int | None:
        """Store `event` durably: its new row id, or None when (source, event_id) exists."""
        ...

    async def claim(self, *, now: float, limit: int, lease: float) -> list[Lease]:
        """Lease up to `limit` pending events due at `now` for `lease` seconds, oldest due first.

        Each claim counts as an attempt. Events whose lease expired (a crashed dispatcher) are
        due again.
        """
        ...

    async def renew(self, lease: Lease, *, handled: Sequence[str], until: float) -> Lease | None:
        """Record the handlers done so far and extend the lease; None if the lease was lost."""
        ...

    async def complete(
        self, lease: Lease, *, status: EventStatus, handled: Sequence[str], now: float
    ) -> bool:
        """Finish the event as DELIVERED or IGNORED; False if the lease was lost."""
        ...

    async def fail(
        self,
        lease: Lease,
        *,
        error: str,
        handled: Sequence[str],
        retry_at: float | None,
        now: float,
    ) -> bool:
        """Record a failed attempt: pending again at `retry_at`, or DEAD when it is None.

        False if the lease was lost.
        """
        ...

    async def get(self, event_id: int) -> InboxEvent | None:
        """The event with row id `event_id`, or None."""
        ...

    async def find(self, source: str, event_id: str) -> InboxEvent | None:
        """The event `event_id` from `source`, or None."""
        ...

    async def list(
        self,
        *,
        source: str | None = None,
        status: EventStatus | None = None,
        event_type: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[InboxEvent]:
        """Events matching every given filter, newest first; `before_id` pages backwards."""
        ...

    async def counts(self) -> dict[EventStatus, int]:
        """How many events are in each status."""
        ...

    async def next_due(self) -> float | None:
        """When the earliest pending event is due, or None when nothing is pending."""
        ...

    async def replay(
        self,
        *,
        ids: Iterable[int] | None = None,
        status: EventStatus | None = None,
        source: str | None = None,
        now: float,
    ) -> int:
        """Make finished events pending again with a fresh attempt budget; how many moved.

        Selects `ids` if given, else every event in `status` (and `source`, if given). Pending
        events are left alone. Every handler runs again, including ones that had succeeded.
        """
        ...

    async def purge(
        self,
        *,
        before: float,
        statuses: Iterable[EventStatus],
        source: str | None = None,
    ) -> int:
        """Delete events in `statuses` received before `before`; how many were deleted.

        Pending events are never purged: they have not been handled.
        """
        ...


def check_identifier(name: str, what: str) -> str:
    """`name` if it is a plain SQL identifier; table and schema names are spliced into SQL."""
    given: object = name  # checked at run time too: configuration files carry any type
    if not isinstance(given, str) or not _IDENTIFIER.fullmatch(given):
        raise ConfigError(
            f"{what} must be letters, digits and underscores, starting with a letter "
            f"(at most 63 characters), not {name!r}"
        )
    return name


#: Header lists as JSON, by their names: the text around the values, e.g. for host and accept
#: ['[["host","', "", '"],["accept","', "", '"]]'], values going in the gaps. A sender's headers
#: come in the same order on every delivery, so one entry serves them all.
_TEMPLATES: dict[tuple[str, ...], list[str]] = {}
_MAX_TEMPLATES = 256
#: The bytes JSON leaves as they are: printable ASCII but the quote and the backslash.
_PLAIN = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")


def _template(names: tuple[str, ...]) -> list[str]:
    template = _TEMPLATES.get(names)
    if template is None:
        template = []
        for index, name in enumerate(names):
            template += [("[[" if index == 0 else '"],[') + _quote(name) + ',"', ""]
        template.append('"]]')
        if len(_TEMPLATES) < _MAX_TEMPLATES:
            _TEMPLATES[names] = template
    return template


def encode_headers(headers: Sequence[tuple[str, str]]) -> str:
    """What json.dumps(headers, separators=(",", ":")) gives, with less work per delivery.

    Header values are almost always printable ASCII without quotes or backslashes, which JSON
    leaves as they are: those go into a template made once per sequence of names. Anything
    else is escaped value by value with json's own C escaper.
    """
    if not headers:
        return "[]"
    names, values = zip(*headers, strict=True)
    joined = "".join(values)
    # isascii() is a flag check; deleting every plain byte leaves nothing only if all are plain.
    if joined.isascii() and not joined.encode("ascii").translate(None, _PLAIN):
        parts = _template(names).copy()
        parts[1::2] = values
        return "".join(parts)
    return (
        "["
        + ",".join(["[" + _quote(name) + "," + _quote(value) + "]" for name, value in headers])
        + "]"
    )


def decode_headers(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(value)) for name, value in json.loads(text))


def decode_handled(text: str) -> tuple[str, ...]:
    return tuple(str(name) for name in json.loads(text))


def encode_handled(handled: Sequence[str]) -> str:
    return json.dumps(list(handled), separators=(",", ":"))


def finished_statuses(statuses: Iterable[EventStatus]) -> tuple[str, ...]:
    """The statuses a purge may touch, as stored text; PENDING is dropped on purpose."""
    return tuple(dict.fromkeys(EventStatus(s).value for s in statuses if s != EventStatus.PENDING))


#: The columns `event_from_row` reads, in order; both SQL stores select exactly these.
EVENT_COLUMNS = (
    "id, source, event_id, event_type, status, attempts, received_at, next_attempt_at, "
    "completed_at, last_error, handled, headers, body, scheme, secret_index, signed_at, msg_id"
)


def event_from_row(row: Sequence[Any]) -> InboxEvent:
    """An `InboxEvent` from a row of `EVENT_COLUMNS`, whichever database it came from."""
    return InboxEvent(
        id=int(row[0]),
        source=row[1],
        event_id=row[2],
        event_type=row[3],
        status=EventStatus(row[4]),
        attempts=int(row[5]),
        received_at=float(row[6]),
        next_attempt_at=float(row[7]),
        completed_at=None if row[8] is None else float(row[8]),
        last_error=row[9],
        handled=decode_handled(row[10]),
        headers=decode_headers(row[11]),
        body=bytes(row[12]),
        scheme=row[13],
        secret_index=row[14],
        signed_at=row[15],
        msg_id=row[16],
    )
