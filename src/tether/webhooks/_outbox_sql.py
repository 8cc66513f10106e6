"""SQL the SQLite and PostgreSQL outbox stores share, written once with `?` placeholders.

PostgreSQL statements pass through `numbered()`, which turns each `?` into `$1`, `$2`, ...
No statement here has a `?` inside a string literal, so the conversion is a plain scan.
"""

# ruff: noqa: S608 - table names pass check_identifier; every value is bound

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether._errors import ConfigError
from tether.stores._inbox import check_identifier
from tether.webhooks._outbox_model import (
    DeliveryAttempt,
    DeliveryFilter,
    DeliveryStatus,
    Endpoint,
    OutboxDelivery,
    decode_pairs,
    decode_schedule,
    decode_secrets,
    decode_strings,
)

__all__ = [
    "DELIVERY_COLUMNS",
    "ENDPOINT_COLUMNS",
    "Tables",
    "attempt_from_row",
    "delivery_from_row",
    "endpoint_from_row",
    "filter_clause",
    "numbered",
]

ENDPOINT_COLUMNS = (
    "id, url, description, enabled, disabled_reason, event_types, headers, secrets, rate_limit, "
    "timeout, schedule, ordered, created_at, updated_at, failing_since, paused_until"
)
DELIVERY_COLUMNS = (
    "id, msg_id, endpoint_id, event_type, status, attempts, created_at, next_attempt_at, "
    "completed_at, last_status, last_error, ordering_key"
)
ATTEMPT_COLUMNS = (
    "id, delivery_id, msg_id, endpoint_id, attempt, started_at, latency, status_code, outcome, "
    "error, response"
)


@dataclass(frozen=True, slots=True)
class Tables:
    """The four table names behind one outbox, from its prefix (and schema, on PostgreSQL)."""

    prefix: str
    schema: str | None = None

    def __post_init__(self) -> None:
        check_identifier(self.prefix, "prefix")
        if self.schema is not None:
            check_identifier(self.schema, "schema")
        if len(self.prefix) > 40:
            # Index names add up to 20 characters; PostgreSQL cuts identifiers at 63.
            raise ConfigError("prefix must be at most 40 characters")

    def _name(self, suffix: str) -> str:
        base = f"{self.prefix}_{suffix}"
        return base if self.schema is None else f"{self.schema}.{base}"

    @property
    def endpoints(self) -> str:
        return self._name("endpoints")

    @property
    def messages(self) -> str:
        return self._name("messages")

    @property
    def deliveries(self) -> str:
        return self._name("deliveries")

    @property
    def attempts(self) -> str:
        return self._name("attempts")

    def index(self, suffix: str) -> str:
        return f"{self.prefix}_{suffix}"


def numbered(sql: str) -> str:
    """`sql` with each `?` replaced by PostgreSQL's `$n`, in order."""
    parts = sql.split("?")
    out = [parts[0]]
    for n, part in enumerate(parts[1:], start=1):
        out.append(f"${n}{part}")
    return "".join(out)


def endpoint_from_row(row: Sequence[Any]) -> Endpoint:
    return Endpoint(
        id=row[0],
        url=row[1],
        description=row[2],
        enabled=bool(row[3]),
        disabled_reason=row[4],
        event_types=decode_strings(row[5]),
        headers=decode_pairs(row[6]),
        secrets=decode_secrets(row[7]),
        rate_limit=row[8],
        timeout=float(row[9]),
        schedule=decode_schedule(row[10]),
        ordered=bool(row[11]),
        created_at=float(row[12]),
        updated_at=float(row[13]),
        failing_since=None if row[14] is None else float(row[14]),
        paused_until=float(row[15]),
    )


def delivery_from_row(row: Sequence[Any], payload: bytes = b"") -> OutboxDelivery:
    return OutboxDelivery(
        id=int(row[0]),
        msg_id=row[1],
        endpoint_id=row[2],
        event_type=row[3],
        status=DeliveryStatus(row[4]),
        attempts=int(row[5]),
        created_at=float(row[6]),
        next_attempt_at=float(row[7]),
        completed_at=None if row[8] is None else float(row[8]),
        last_status=None if row[9] is None else int(row[9]),
        last_error=row[10],
        ordering_key=row[11],
        payload=payload,
    )


def attempt_from_row(row: Sequence[Any]) -> DeliveryAttempt:
    return DeliveryAttempt(
        id=int(row[0]),
        delivery_id=int(row[1]),
        msg_id=row[2],
        endpoint_id=row[3],
        attempt=int(row[4]),
        started_at=float(row[5]),
        latency=float(row[6]),
        status_code=None if row[7] is None else int(row[7]),
        outcome=row[8],
        error=row[9],
        response=row[10],
    )


def filter_clause(selection: DeliveryFilter, *, sqlite: bool) -> tuple[str, list[object]]:
    """A WHERE condition (with `?` placeholders) and its parameters for `selection`."""
    clauses: list[str] = []
    params: list[object] = []
    if selection.ids is not None:
        if sqlite:
            clauses.append("id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([int(i) for i in selection.ids]))
        else:
            clauses.append("id = ANY(?::bigint[])")
            params.append([int(i) for i in selection.ids])
    if selection.status is not None:
        clauses.append("status = ?")
        params.append(DeliveryStatus(selection.status).value)
    for column, value in (
        ("endpoint_id", selection.endpoint_id),
        ("event_type", selection.event_type),
        ("msg_id", selection.msg_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if selection.since is not None:
        clauses.append("created_at >= ?")
        params.append(float(selection.since))
    if selection.until is not None:
        clauses.append("created_at < ?")
        params.append(float(selection.until))
    return (" AND ".join(clauses) or "TRUE"), params


def schema_statements(tables: Tables, *, sqlite: bool) -> list[str]:
    """CREATE statements for the outbox; every one is idempotent."""
    key = "INTEGER PRIMARY KEY AUTOINCREMENT" if sqlite else "BIGSERIAL PRIMARY KEY"
    real = "REAL" if sqlite else "DOUBLE PRECISION"
    blob = "BLOB" if sqlite else "BYTEA"
    flag = "INTEGER" if sqlite else "BOOLEAN"
    true, false = ("1", "0") if sqlite else ("TRUE", "FALSE")
    ref = "INTEGER" if sqlite else "BIGINT"
    t = tables
    return [
        f"""CREATE TABLE IF NOT EXISTS {t.endpoints} (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            enabled {flag} NOT NULL DEFAULT {true},
            disabled_reason TEXT,
            event_types TEXT NOT NULL DEFAULT '[]',
            headers TEXT NOT NULL DEFAULT '[]',
            secrets TEXT NOT NULL,
            rate_limit TEXT,
            timeout {real} NOT NULL,
            schedule TEXT,
            ordered {flag} NOT NULL DEFAULT {false},
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            failing_since {real},
            paused_until {real} NOT NULL DEFAULT 0
        )""",
        f"""CREATE TABLE IF NOT EXISTS {t.messages} (
            seq {key},
            msg_id TEXT NOT NULL UNIQUE,
            event_type TEXT NOT NULL,
            payload {blob} NOT NULL,
            idempotency_key TEXT UNIQUE,
            ordering_key TEXT,
            created_at {real} NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS {t.deliveries} (
            id {key},
            message_seq {ref} NOT NULL,
            msg_id TEXT NOT NULL,
            endpoint_id TEXT NOT NULL,
            event_type TEXT NOT NULL,
            ordering_key TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at {real} NOT NULL,
            next_attempt_at {real} NOT NULL,
            claimed_until {real},
            claim_token TEXT,
            completed_at {real},
            last_status INTEGER,
            last_error TEXT
        )""",
        f"""CREATE TABLE IF NOT EXISTS {t.attempts} (
            id {key},
            delivery_id {ref} NOT NULL,
            msg_id TEXT NOT NULL,
            endpoint_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            started_at {real} NOT NULL,
            latency {real} NOT NULL,
            status_code INTEGER,
            outcome TEXT NOT NULL,
            error TEXT,
            response TEXT
        )""",
        f"CREATE INDEX IF NOT EXISTS {t.index('due')} ON {t.deliveries} (next_attempt_at, id) "
        "WHERE status = 'pending'",
        # Ordered lanes: "is there an earlier pending delivery in my lane?" is one index probe.
        f"CREATE INDEX IF NOT EXISTS {t.index('lane')} ON {t.deliveries} "
        "(endpoint_id, ordering_key, id) WHERE status = 'pending' AND ordering_key IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS {t.index('by_endpoint')} ON {t.deliveries} "
        "(endpoint_id, status, id)",
        f"CREATE INDEX IF NOT EXISTS {t.index('by_status')} ON {t.deliveries} (status, created_at)",
        f"CREATE INDEX IF NOT EXISTS {t.index('by_message')} ON {t.deliveries} (message_seq)",
        f"CREATE INDEX IF NOT EXISTS {t.index('by_msg_id')} ON {t.deliveries} (msg_id)",
        f"CREATE INDEX IF NOT EXISTS {t.index('att_delivery')} ON {t.attempts} (delivery_id, id)",
        f"CREATE INDEX IF NOT EXISTS {t.index('att_started')} ON {t.attempts} (started_at)",
        # The attempt log is read by message and by endpoint (`tether outbox attempts`).
        f"CREATE INDEX IF NOT EXISTS {t.index('att_msg')} ON {t.attempts} (msg_id, id)",
        f"CREATE INDEX IF NOT EXISTS {t.index('att_endpoint')} ON {t.attempts} (endpoint_id, id)",
        # Last on purpose: PostgreSQL takes its existence to mean every object above exists.
        f"CREATE INDEX IF NOT EXISTS {t.index('msg_created')} ON {t.messages} (created_at)",
    ]


def subscribed(*, sqlite: bool, event_type: str) -> str:
    """The condition on endpoints `e` subscribed to the type in placeholder `event_type`.

    A filter "invoice.*" matches every type that starts with "invoice."; "*" matches all.
    """
    if sqlite:
        types = "SELECT value AS f FROM json_each(e.event_types)"
    else:
        types = "SELECT json_array_elements_text(e.event_types::json) AS f"
    t = f"CAST({event_type} AS TEXT)"
    return (
        f"(e.event_types = '[]' OR EXISTS (SELECT 1 FROM ({types}) x WHERE x.f = {t} OR "
        f"(substr(x.f, length(x.f), 1) = '*' AND "
        f"substr({t}, 1, length(x.f) - 1) = substr(x.f, 1, length(x.f) - 1))))"
    )


def fan_out_sql(tables: Tables, *, sqlite: bool) -> str:
    """INSERT one delivery per endpoint subscribed to the message's type.

    Parameters, in order: message seq, msg_id, event type, ordering key, created_at, now (the
    earliest attempt; an endpoint's Retry-After pause pushes it later), now (completed_at of a
    skipped one), event type, event type.
    """
    t = tables
    real = "REAL" if sqlite else "DOUBLE PRECISION"
    later = "max(?, e.paused_until)" if sqlite else f"greatest(CAST(? AS {real}), e.paused_until)"
    return (
        f"INSERT INTO {t.deliveries} (message_seq, msg_id, endpoint_id, event_type, "
        "ordering_key, status, created_at, next_attempt_at, completed_at) "
        "SELECT ?, ?, e.id, ?, CASE WHEN e.ordered THEN CAST(? AS TEXT) ELSE NULL END, "
        "CASE WHEN e.enabled THEN 'pending' ELSE 'skipped' END, ?, "
        f"{later}, CASE WHEN e.enabled THEN NULL ELSE CAST(? AS {real}) END "
        f"FROM {t.endpoints} e WHERE {subscribed(sqlite=sqlite, event_type='?')}"
    )


def enqueue_statement_pg(tables: Tables) -> str:
    """The whole enqueue as one PostgreSQL statement: one round trip, one commit.

    Parameters: $1 msg_id, $2 event type, $3 payload, $4 idempotency key, $5 ordering key,
    $6 created_at. Returns the new message's seq, or no row for a repeated idempotency key.
    """
    t = tables
    return (
        f"WITH m AS (INSERT INTO {t.messages} (msg_id, event_type, payload, idempotency_key, "
        "ordering_key, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING "
        f"RETURNING seq), f AS (INSERT INTO {t.deliveries} (message_seq, msg_id, endpoint_id, "
        "event_type, ordering_key, status, created_at, next_attempt_at, completed_at) "
        "SELECT m.seq, $1, e.id, $2, CASE WHEN e.ordered THEN CAST($5 AS TEXT) ELSE NULL END, "
        "CASE WHEN e.enabled THEN 'pending' ELSE 'skipped' END, $6, "
        "greatest(CAST($6 AS DOUBLE PRECISION), e.paused_until), "
        "CASE WHEN e.enabled THEN NULL ELSE CAST($6 AS DOUBLE PRECISION) END "
        f"FROM m, {t.endpoints} e WHERE {subscribed(sqlite=False, event_type='$2')}) "
        "SELECT seq FROM m"
    )


def due_condition(tables: Tables) -> str:
    """Deliveries claimable at `?` (given twice): due, unleased, and first in their lane."""
    t = tables
    return (
        "c.status = 'pending' AND c.next_attempt_at <= ? "
        "AND (c.claimed_until IS NULL OR c.claimed_until <= ?) "
        "AND (c.ordering_key IS NULL OR NOT EXISTS ("
        f"SELECT 1 FROM {t.deliveries} h WHERE h.endpoint_id = c.endpoint_id "
        "AND h.ordering_key = c.ordering_key AND h.status = 'pending' AND h.id < c.id))"
    )
