"""The outbox: enqueue webhooks durably (or inside your own transaction), manage endpoints,
inspect and replay deliveries. Workers (`Outbox.worker()`) do the sending.

    outbox = webhooks.Outbox("app.db")
    async with outbox:
        endpoint = await outbox.add_endpoint("https://example.com/hooks", event_types=["invoice.*"])
        await outbox.enqueue("invoice.paid", {"id": "in_1"}, idempotency_key="in_1:paid")
        async with outbox.worker():
            ...
"""

from __future__ import annotations

import base64
import enum
import json
import math
import os
import re
import sqlite3
import uuid
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import unquote, urlsplit

from tether._clock import Clock, SystemClock
from tether._errors import ConfigError
from tether._flow import RateLimit
from tether.stores._outbox_postgres import PostgresOutboxStore
from tether.stores._outbox_sqlite import SQLiteOutboxStore
from tether.webhooks._keys import (
    PUBLIC_KEY_PREFIX,
    SigningKey,
    generate_keypair,
    generate_secret,
    standard_key,
)
from tether.webhooks._outbox_egress import EgressPolicy, check_endpoint_url
from tether.webhooks._outbox_model import (
    DeliveryAttempt,
    DeliveryFilter,
    DeliveryStatus,
    Endpoint,
    EndpointSecret,
    NewMessage,
    OutboxDelivery,
    OutboxStore,
)
from tether.webhooks._outbox_policy import OutboxPolicy, check_schedule
from tether.webhooks._outbox_worker import OutboxWorker

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Outbox", "open_outbox_store"]

_DAY = 86_400.0


class _Keep(enum.Enum):
    """Marks an update_endpoint() option left as it is (None means "remove")."""

    token = 0


_KEEP = _Keep.token
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
_ENDPOINT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def open_outbox_store(
    location: str | os.PathLike[str], *, prefix: str = "tether_outbox", schema: str = "public"
) -> OutboxStore:
    """The outbox store at `location` (not yet opened).

    `location` is a file path or `sqlite:///relative.db` / `sqlite:////absolute.db` for SQLite,
    or a `postgresql://` (or `postgres://`) URL. `schema` applies to PostgreSQL only.

    Raises:
        ConfigError: an empty location or an unknown URL scheme.
    """
    text = os.fspath(location)
    if not text.strip():
        raise ConfigError("the outbox store location is empty")
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return PostgresOutboxStore(text, schema=schema, prefix=prefix)
    if scheme == "sqlite":
        # sqlite:///x.db is relative, sqlite:////x.db absolute: SQLAlchemy's convention.
        path = unquote(text[len("sqlite://") :]).removeprefix("/")
        if not path:
            raise ConfigError("a sqlite:// URL needs a path, e.g. sqlite:///tether.db")
        return SQLiteOutboxStore(path, prefix=prefix)
    if scheme:
        raise ConfigError(
            f"unknown outbox store URL scheme {scheme!r}: use a file path, sqlite:///path "
            "or postgresql://..."
        )
    return SQLiteOutboxStore(text, prefix=prefix)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not _TEXT.fullmatch(value):
        raise ConfigError(f"{what} must be 1-255 characters of text without control characters")
    return value


def _payload(payload: object, limit: int) -> bytes:
    if isinstance(payload, bytes | bytearray | memoryview):
        body = bytes(payload)
    else:
        try:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"the payload is not JSON-serialisable: {exc}") from None
    if len(body) > limit:
        raise ConfigError(f"the payload is {len(body)} bytes; the outbox takes at most {limit}")
    return body


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    checked: list[tuple[str, str]] = []
    for name, value in pairs:
        given: object = name  # checked at run time too: configuration files carry any type
        if not isinstance(given, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{name!r} is not a valid header name")
        text: object = value
        if not isinstance(text, str) or any(c in value for c in "\r\n\x00"):
            raise ConfigError(f"the value of header {name!r} must be text on one line")
        if name.lower().startswith("webhook-") or name.lower() == "content-type":
            raise ConfigError(f"header {name!r} is set by the outbox on every attempt")
        checked.append((name, value))
    return tuple(checked)


def _secret(value: str | None) -> str:
    if value is None:
        return generate_secret()
    given: object = value  # checked at run time too: configuration files carry any type
    if not isinstance(given, str) or not value.startswith(("whsec_", "whsk_")):
        raise ConfigError(
            "an endpoint secret is a 'whsec_' secret (generate_secret()) or a 'whsk_' Ed25519 "
            "secret key (generate_keypair().secret_key)"
        )
    standard_key(value, 0)  # raises ConfigError for bad base64 or a bad key
    return value


def _verification_key(secret: str) -> str:
    """What a receiver verifies with: the secret itself, or a whsk_ key's whpk_ half."""
    key = standard_key(secret, 0)
    if isinstance(key, SigningKey):
        public = key.public().key.public_bytes_raw()
        return PUBLIC_KEY_PREFIX + base64.b64encode(public).decode("ascii")
    return secret


def _timeout(value: object, policy: OutboxPolicy) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= policy.max_timeout
    ):
        raise ConfigError(f"timeout must be a number of seconds in (0, {policy.max_timeout:g}]")
    return float(value)


def _rate_limit(value: str | None) -> str | None:
    if value is None:
        return None
    RateLimit.parse(value)  # raises ConfigError with the reason
    return value


class Outbox:
    """Durable outgoing webhooks: a message is stored before `enqueue` returns, then
    delivered by workers to every endpoint subscribed to its type, signed with Standard
    Webhooks headers, retried on a schedule, dead-lettered when the schedule is spent.

    Args:
        store: an `OutboxStore`, or where one is: a file path, `sqlite:///...` or
            `postgresql://...` (see `open_outbox_store`).
        policy: retry schedule, leases, retention and the other defaults.
        egress: which addresses deliveries may connect to; by default public ones only.
        clock: the time source; tests pass `tether.testing.FakeClock`.
    """

    def __init__(
        self,
        store: OutboxStore | str | os.PathLike[str] = "tether.db",
        *,
        policy: OutboxPolicy | None = None,
        egress: EgressPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store: OutboxStore = (
            open_outbox_store(store) if isinstance(store, str | os.PathLike) else store
        )
        self.policy = policy or OutboxPolicy()
        self.egress = egress or EgressPolicy()
        self.clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"Outbox(store={self.store!r})"

    async def open(self) -> None:
        """Connect and create the tables if needed."""
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def worker(self, **overrides: Any) -> OutboxWorker:
        """A worker on this outbox's store; keyword arguments override `OutboxWorker`'s."""
        options: dict[str, Any] = {
            "policy": self.policy,
            "egress": self.egress,
            "clock": self.clock,
        }
        options.update(overrides)
        return OutboxWorker(self.store, **options)

    # -- messages ----------------------------------------------------------------------------

    def _message(
        self,
        event_type: str,
        payload: object,
        idempotency_key: str | None,
        ordering_key: str | None,
    ) -> NewMessage:
        _text(event_type, "event_type")
        if idempotency_key is not None:
            _text(idempotency_key, "idempotency_key")
        if ordering_key is not None:
            _text(ordering_key, "ordering_key")
        return NewMessage(
            msg_id=f"msg_{uuid.uuid4().hex}",
            event_type=event_type,
            payload=_payload(payload, self.policy.max_payload),
            created_at=self.clock.time(),
            idempotency_key=idempotency_key,
            ordering_key=ordering_key,
        )

    async def enqueue(
        self,
        event_type: str,
        payload: object,
        *,
        idempotency_key: str | None = None,
        ordering_key: str | None = None,
    ) -> str:
        """Store a message for every endpoint subscribed to `event_type`; its `webhook-id`.

        Returns only once the message is committed to disk. `payload` is JSON-serialised
        (bytes are sent as they are). A repeated `idempotency_key` stores nothing new and
        returns the first message's id. Messages that share an `ordering_key` reach each
        endpoint created with `ordered=True` one at a time, in enqueue order.

        Raises:
            ConfigError: an invalid type or key, or a payload that is too big or not JSON.
            StoreError: the store could not commit it; the message is not enqueued.
        """
        message = self._message(event_type, payload, idempotency_key, ordering_key)
        msg_id, _ = await self.store.enqueue(message)
        return msg_id

    @overload
    def enqueue_in(
        self,
        conn: sqlite3.Connection,
        event_type: str,
        payload: object,
        *,
        idempotency_key: str | None = None,
        ordering_key: str | None = None,
    ) -> str: ...

    @overload
    def enqueue_in(
        self,
        conn: asyncpg.Connection,
        event_type: str,
        payload: object,
        *,
        idempotency_key: str | None = None,
        ordering_key: str | None = None,
    ) -> Awaitable[str]: ...

    def enqueue_in(
        self,
        conn: Any,
        event_type: str,
        payload: object,
        *,
        idempotency_key: str | None = None,
        ordering_key: str | None = None,
    ) -> str | Awaitable[str]:
        """Enqueue inside your own open transaction on `conn`: the message exists if and only
        if that transaction commits.

        On SQLite `conn` is a `sqlite3.Connection` to the outbox's database file and the call
        is synchronous; on PostgreSQL it is an asyncpg connection and the call is awaited.
        Durability is then your commit's: on SQLite the connection must use
        synchronous=FULL (the default).

        Raises:
            ConfigError: `conn` is not in a transaction, is on another database, commits
                without fsync (SQLite below synchronous=FULL), or is the wrong kind.
        """
        message = self._message(event_type, payload, idempotency_key, ordering_key)
        store = self.store
        if isinstance(store, SQLiteOutboxStore):
            msg_id, _ = store.enqueue_in(conn, message)
            return msg_id
        if isinstance(store, PostgresOutboxStore):

            async def run() -> str:
                msg_id, _ = await store.enqueue_in(conn, message)
                return msg_id

            return run()
        raise ConfigError(f"{type(store).__name__} does not support enqueue_in()")

    # -- endpoints ---------------------------------------------------------------------------

    async def add_endpoint(
        self,
        url: str,
        *,
        endpoint_id: str | None = None,
        description: str = "",
        event_types: Sequence[str] = (),
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        secret: str | None = None,
        rate_limit: str | None = None,
        timeout: float | None = None,
        schedule: Sequence[float] | None = None,
        ordered: bool = False,
        enabled: bool = True,
    ) -> Endpoint:
        """Register a receiver; messages enqueued from now on that match `event_types` (all,
        when empty; "invoice.*" matches a prefix) are delivered to it.

        `secret` defaults to a new random `whsec_` secret (Standard Webhooks `v1`, HMAC): read
        it with `secret()` and hand it to the receiver. A `whsk_` Ed25519 key
        (`generate_keypair().secret_key`) signs `v1a` instead; the receiver then needs only
        the public key, `verification_key()`.

        Raises:
            ConfigError: a bad URL or option, or an id already in use.
        """
        now = self.clock.time()
        given: object = endpoint_id
        if given is not None and not (isinstance(given, str) and _ENDPOINT_ID.fullmatch(given)):
            raise ConfigError("endpoint_id must be 1-64 letters, digits or '_.:-'")
        endpoint = Endpoint(
            id=endpoint_id or f"ep_{uuid.uuid4().hex[:20]}",
            url=self._url(url),
            description=str(description)[:500],
            enabled=bool(enabled),
            event_types=tuple(_text(t, "an event type filter") for t in event_types),
            headers=_headers(headers),
            secrets=(EndpointSecret(_secret(secret)),),
            rate_limit=_rate_limit(rate_limit),
            timeout=self.policy.timeout if timeout is None else _timeout(timeout, self.policy),
            schedule=None if schedule is None else check_schedule(list(schedule)),
            ordered=bool(ordered),
            created_at=now,
            updated_at=now,
        )
        await self.store.save_endpoint(endpoint, create=True)
        return endpoint

    def _url(self, url: str) -> str:
        checked = check_endpoint_url(url)
        try:
            self.egress.check_url(checked)
        except OSError as exc:
            raise ConfigError(str(exc)) from None
        return checked

    async def endpoint(self, endpoint_id: str) -> Endpoint:
        """The endpoint `endpoint_id`.

        Raises:
            ConfigError: there is none.
        """
        found = await self.store.get_endpoint(endpoint_id)
        if found is None:
            raise ConfigError(f"no endpoint with id {endpoint_id!r}")
        return found

    async def endpoints(self) -> list[Endpoint]:
        """Every endpoint, oldest first."""
        return await self.store.list_endpoints()

    async def update_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        description: str | None = None,
        event_types: Sequence[str] | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        rate_limit: str | _Keep | None = _KEEP,
        timeout: float | None = None,
        schedule: Sequence[float] | _Keep | None = _KEEP,
        ordered: bool | None = None,
    ) -> Endpoint:
        """Change an endpoint's settings; those not given stay. `rate_limit=None` and
        `schedule=None` remove them (back to no limit and the outbox's schedule).

        Raises:
            ConfigError: no such endpoint, or a bad option.
        """
        current = await self.endpoint(endpoint_id)
        changes: dict[str, Any] = {"updated_at": max(self.clock.time(), current.updated_at + 1e-6)}
        if url is not None:
            changes["url"] = self._url(url)
        if description is not None:
            changes["description"] = str(description)[:500]
        if event_types is not None:
            changes["event_types"] = tuple(_text(t, "an event type filter") for t in event_types)
        if headers is not None:
            changes["headers"] = _headers(headers)
        if not isinstance(rate_limit, _Keep):
            changes["rate_limit"] = _rate_limit(rate_limit)
        if timeout is not None:
            changes["timeout"] = _timeout(timeout, self.policy)
        if not isinstance(schedule, _Keep):
            changes["schedule"] = None if schedule is None else check_schedule(list(schedule))
        if ordered is not None:
            changes["ordered"] = bool(ordered)
        updated = replace(current, **changes)
        await self.store.save_endpoint(updated, create=False)
        return updated

    async def rotate_secret(
        self, endpoint_id: str, *, overlap: float = _DAY, secret: str | None = None
    ) -> str:
        """Give the endpoint a new signing secret; returns it.

        For `overlap` seconds every attempt is signed with both the old and the new secret,
        so the receiver can switch at any time within it. The new secret is of the same kind
        as the current one (`whsec_` or `whsk_`) unless `secret` is given.

        Raises:
            ConfigError: no such endpoint, or a bad secret or overlap.
        """
        given: object = overlap
        if isinstance(given, bool) or not isinstance(given, int | float) or overlap < 0:
            raise ConfigError("overlap must be a number of seconds >= 0")
        current = await self.endpoint(endpoint_id)
        now = self.clock.time()
        if secret is None and any(s.value.startswith("whsk_") for s in current.secrets):
            # An endpoint signed with Ed25519 stays on Ed25519.
            secret = generate_keypair().secret_key
        new = _secret(secret)
        ends = now + overlap
        kept = tuple(
            EndpointSecret(s.value, ends if s.expires_at is None else min(s.expires_at, ends))
            for s in current.secrets
            if s.expires_at is None or s.expires_at > now
        )
        updated = replace(
            current,
            secrets=(EndpointSecret(new), *kept),
            updated_at=max(now, current.updated_at + 1e-6),
        )
        await self.store.save_endpoint(updated, create=False)
        return new

    async def secret(self, endpoint_id: str) -> str:
        """The endpoint's current signing secret (a `whsec_` secret or `whsk_` key)."""
        current = await self.endpoint(endpoint_id)
        for item in current.secrets:
            if item.expires_at is None:
                return item.value
        raise ConfigError(f"endpoint {endpoint_id!r} has no current secret; rotate one in")

    async def verification_key(self, endpoint_id: str) -> str:
        """What the endpoint's receiver verifies with: the `whsec_` secret itself, or the
        `whpk_` public key of a `whsk_` signing key (which then never leaves the sender)."""
        return _verification_key(await self.secret(endpoint_id))

    async def disable_endpoint(self, endpoint_id: str, *, reason: str = "disabled by hand") -> None:
        """Stop delivering to the endpoint; its pending deliveries become SKIPPED.

        Raises:
            ConfigError: no such endpoint.
        """
        if not await self.store.set_enabled(
            endpoint_id, enabled=False, reason=reason, now=self.clock.time()
        ):
            raise ConfigError(f"no endpoint with id {endpoint_id!r}")

    async def enable_endpoint(self, endpoint_id: str) -> None:
        """Deliver to the endpoint again (new messages; replay the SKIPPED ones to resend).

        Raises:
            ConfigError: no such endpoint.
        """
        if not await self.store.set_enabled(
            endpoint_id, enabled=True, reason=None, now=self.clock.time()
        ):
            raise ConfigError(f"no endpoint with id {endpoint_id!r}")

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Remove the endpoint with its deliveries and attempt log.

        Raises:
            ConfigError: no such endpoint.
        """
        if not await self.store.delete_endpoint(endpoint_id):
            raise ConfigError(f"no endpoint with id {endpoint_id!r}")

    # -- operators ---------------------------------------------------------------------------

    async def deliveries(
        self,
        *,
        status: DeliveryStatus | str | None = None,
        endpoint_id: str | None = None,
        event_type: str | None = None,
        msg_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[OutboxDelivery]:
        """Deliveries matching every given filter, newest first."""
        selection = DeliveryFilter(
            status=None if status is None else DeliveryStatus(status),
            endpoint_id=endpoint_id,
            event_type=event_type,
            msg_id=msg_id,
            since=since,
            until=until,
        )
        return await self.store.deliveries(selection, limit=limit, before_id=before_id)

    async def dead(
        self, *, endpoint_id: str | None = None, limit: int = 50
    ) -> list[OutboxDelivery]:
        """The dead letters: deliveries whose every scheduled attempt failed."""
        return await self.deliveries(
            status=DeliveryStatus.DEAD, endpoint_id=endpoint_id, limit=limit
        )

    async def attempts(
        self,
        *,
        delivery_id: int | None = None,
        msg_id: str | None = None,
        endpoint_id: str | None = None,
        limit: int = 50,
    ) -> list[DeliveryAttempt]:
        """The attempt log, newest first."""
        return await self.store.attempts(
            delivery_id=delivery_id, msg_id=msg_id, endpoint_id=endpoint_id, limit=limit
        )

    async def retry(self, delivery_id: int) -> bool:
        """Send a finished delivery again now, with a fresh schedule; False if it is pending
        (or unknown, or its endpoint is disabled)."""
        moved = await self.store.replay(
            DeliveryFilter(ids=(delivery_id,)), now=self.clock.time(), dry_run=False
        )
        return moved == 1

    async def replay(
        self,
        *,
        status: DeliveryStatus | str = DeliveryStatus.DEAD,
        since: float | None = None,
        until: float | None = None,
        endpoint_id: str | None = None,
        event_type: str | None = None,
        dry_run: bool = False,
    ) -> int:
        """Send again every delivery in `status` (DEAD by default) whose message was enqueued
        in [since, until), to `endpoint_id`, of `event_type`; how many (would) go.

        Each goes out with its original `webhook-id` and a fresh timestamp and signature.
        Deliveries of disabled endpoints are left alone. `dry_run` only counts.

        Raises:
            ConfigError: `status` is PENDING (those are on their way already).
        """
        chosen = DeliveryStatus(status)
        if chosen is DeliveryStatus.PENDING:
            raise ConfigError(
                "pending deliveries are on their way; replay dead, delivered or skipped"
            )
        selection = DeliveryFilter(
            status=chosen,
            endpoint_id=endpoint_id,
            event_type=event_type,
            since=since,
            until=until,
        )
        return await self.store.replay(selection, now=self.clock.time(), dry_run=dry_run)

    async def counts(self) -> dict[DeliveryStatus, int]:
        """How many deliveries are in each status."""
        return await self.store.counts()
