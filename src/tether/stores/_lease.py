"""Leases: one holder at a time for a named job (a poller, a stream), with fencing tokens.

A lease is granted when it is free, expired, or already held by the same holder (a renewal).
Every grant to a new holder takes the next fencing token for that name, so a holder that
stalled past its expiry and wakes up can be told apart from the one that took over: its fence
is smaller. Expiry is judged by the store's clock (PostgreSQL's, Redis's, or the SQLite
process's), never by each holder's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tether._errors import ConfigError

__all__ = ["MAX_TTL", "HeldLease", "LeaseStore", "check_lease", "check_lease_args"]

#: The longest lease: a holder that wants more should renew; a week also keeps the SQL and
#: Redis expiry arithmetic far from any overflow.
MAX_TTL = 7 * 86_400.0
#: Names and holders end up in keys, rows and logs: short printable strings.
_MAX_TEXT = 512


@dataclass(frozen=True, slots=True)
class HeldLease:
    """A lease as granted: who holds what, with which fence, until when."""

    name: str
    holder: str
    #: Strictly increasing per name, across holders; a renewal keeps it.
    fence: int
    #: Epoch seconds, by the store's clock.
    expires_at: float


@runtime_checkable
class LeaseStore(Protocol):
    """Where leases live; every backend passes the same conformance tests."""

    async def open(self) -> None:
        """Connect and create what is missing; acquire and the others open on first use."""
        ...

    async def acquire(self, name: str, holder: str, ttl: float) -> HeldLease | None:
        """Grant when free, expired, or already held by `holder` (then renew: same fence, new
        expiry); None while another holder's lease is live."""
        ...

    async def release(self, lease: HeldLease) -> bool:
        """Free it if `lease` is still the current one (same holder and fence) and live."""
        ...

    async def current(self, name: str) -> HeldLease | None:
        """The live lease on `name`, or None when it is free or expired."""
        ...

    async def aclose(self) -> None:
        """Release connections; held leases are not released (they run out)."""
        ...


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise ConfigError(f"a lease {what} must be a non-empty string of at most {_MAX_TEXT} chars")
    if not value.isprintable():
        raise ConfigError(f"a lease {what} must be printable text")
    return value


def check_lease_args(name: str, holder: str, ttl: float) -> float:
    """Validate an acquire's arguments; returns the ttl as a float."""
    _text(name, "name")
    _text(holder, "holder")
    span: object = ttl
    if isinstance(span, bool) or not isinstance(span, int | float):
        raise ConfigError(f"a lease ttl must be a number of seconds, got {ttl!r}")
    if not (math.isfinite(ttl) and 0 < ttl <= MAX_TTL):
        raise ConfigError(f"a lease ttl must be > 0 and at most {MAX_TTL:g} s, got {ttl!r}")
    return float(ttl)


def check_lease(lease: object) -> HeldLease:
    if not isinstance(lease, HeldLease):
        raise ConfigError(f"release takes the HeldLease that acquire returned, got {lease!r}")
    return lease
