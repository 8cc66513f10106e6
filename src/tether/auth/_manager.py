"""The token lifecycle around a store: single-flight refresh, early refresh, reuse recovery.

One `TokenManager` per credential object; any number of them may stand for the same identity
(store + key), and then they share one refresh. The flight registry is process-wide and
thread-safe, so tasks on different event loops (each `SyncClient` runs its own) and plain
threads all wait on the one token request. No lock is held while a user's request is in
flight: only the token request itself runs under the flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import replace
from typing import TypeVar, cast

from tether._clock import Clock
from tether._core._oauth import Lifecycle, TokenAction, TokenSet, decide, refresh_backoff
from tether._errors import AuthError, ReauthRequired
from tether._redact import Redactor
from tether.auth._stores import TokenStore

__all__ = ["ReauthHook", "TokenManager", "single_flight"]

logger = logging.getLogger("tether.auth")

T = TypeVar("T")

#: Called with the credential's description when a person must authorize again.
ReauthHook = Callable[[ReauthRequired], Awaitable[None] | None]

#: How long a caller waits for another caller's token request. Generous: that request is itself
#: bounded (attempts x timeout, backoff, the store's lock timeout), so this only ends the wait
#: when its event loop was stopped under it.
FLIGHT_WAIT_LIMIT = 300.0

_registry_lock = threading.Lock()
_flights: dict[Hashable, concurrent.futures.Future[object]] = {}
_waiting: dict[Hashable, int] = {}
# Flights keep running when the caller that started them is cancelled: a refresh whose
# request reached the server must be seen through, or a rotated refresh token is lost.
_running: set[asyncio.Task[object]] = set()


async def single_flight(key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` once for every caller that asks for `key` while it runs, in any thread.

    The first caller starts `work` as a task on its own loop; later callers, on that loop or
    any other, wait for its result or its exception. Cancelling a waiter, or the first caller,
    never cancels the work.
    """
    with _registry_lock:
        flight = _flights.get(key)
        owner = flight is None
        if flight is None:
            flight = _flights[key] = concurrent.futures.Future()
        else:
            _waiting[key] = _waiting.get(key, 0) + 1
    if not owner:
        try:
            # shield: cancelling this waiter must not cancel the shared future.
            waited = asyncio.shield(asyncio.wrap_future(flight))
            return cast("T", await asyncio.wait_for(waited, FLIGHT_WAIT_LIMIT))
        except TimeoutError:
            # The flight's loop may have been stopped under it (a SyncClient closed mid-refresh):
            # forget it, so the next caller starts a new one instead of waiting again.
            with _registry_lock:
                if _flights.get(key) is flight:
                    del _flights[key]
            raise AuthError(
                f"waited {FLIGHT_WAIT_LIMIT:g} s for another caller's token request"
            ) from None
        finally:
            with _registry_lock:
                left = _waiting.get(key, 1) - 1
                if left:
                    _waiting[key] = left
                else:
                    _waiting.pop(key, None)

    async def run() -> object:
        return await work()

    task: asyncio.Task[object] = asyncio.ensure_future(run())
    _running.add(task)

    def finish(done: asyncio.Task[object]) -> None:
        _running.discard(done)
        with _registry_lock:
            if _flights.get(key) is flight:
                del _flights[key]
        if done.cancelled():
            flight.set_exception(AuthError("the token request was cancelled"))
        elif (error := done.exception()) is not None:
            flight.set_exception(error)
        else:
            flight.set_result(done.result())

    task.add_done_callback(finish)
    return cast("T", await asyncio.shield(task))


def in_flight(key: Hashable) -> bool:
    with _registry_lock:
        return key in _flights


def flight_waiters(key: Hashable) -> int:
    """How many callers wait on the flight for `key` (for tests and diagnostics)."""
    with _registry_lock:
        return _waiting.get(key, 0)


#: Fetches a new token set from the token set we hold (None: none yet).
Fetch = Callable[[TokenSet | None], Awaitable[TokenSet]]


class TokenManager:
    """Holds the current token set of one credential and decides when to refresh it."""

    __slots__ = (
        "_clock",
        "_current",
        "_failures",
        "_fetch",
        "_lifecycle",
        "_on_reauth",
        "_random",
        "_redactors",
        "_retry_after",
        "_seen",
        "_seen_set",
        "_state_lock",
        "description",
        "key",
        "store",
    )

    def __init__(
        self,
        *,
        fetch: Fetch,
        store: TokenStore,
        key: str,
        lifecycle: Lifecycle,
        clock: Clock,
        description: str,
        on_reauth_required: ReauthHook | None = None,
        rand: random.Random | None = None,
    ) -> None:
        self._fetch = fetch
        self.store = store
        self.key = key
        self._lifecycle = lifecycle
        self._clock = clock
        self.description = description
        self._on_reauth = on_reauth_required
        self._random = rand or random.Random()
        self._current: TokenSet | None = None
        self._retry_after = 0.0
        self._failures = 0
        self._state_lock = threading.Lock()
        # Every token value this manager has handed out recently, for redaction: an old access
        # token may still be valid, and a rotated refresh token is still worth hiding.
        self._seen: deque[str] = deque(maxlen=16)
        self._seen_set: frozenset[str] = frozenset()
        self._redactors: dict[int, tuple[Redactor, frozenset[str], Redactor]] = {}

    @property
    def flight_key(self) -> tuple[str, str]:
        return (self.store.identity, self.key)

    @property
    def current(self) -> TokenSet | None:
        return self._current

    @property
    def lifecycle(self) -> Lifecycle:
        return self._lifecycle

    def rand(self) -> float:
        return self._random.random()

    def _adopt(self, token: TokenSet) -> TokenSet:
        with self._state_lock:
            current = self._current
            if current is None or token.version >= current.version:
                self._current = current = token
                for value in token.secrets():
                    if value not in self._seen:
                        self._seen.append(value)
                self._seen_set = frozenset(self._seen)
            return current

    def secrets(self) -> frozenset[str]:
        return self._seen_set

    def redactor_for(self, base: Redactor) -> Redactor:
        """`base` extended with every token value seen so far; cached while they do not change.

        The client's redactor is built once, before any token exists; this is how tokens that
        arrive later (and rotate) reach its logs and error messages: the credential replaces
        the request's redactor with this one on every attempt.
        """
        secrets = self._seen_set
        cached = self._redactors.get(id(base))
        if cached is not None and cached[0] is base and cached[1] is secrets:
            return cached[2]
        merged = base.merge(Redactor(secrets=secrets))
        if len(self._redactors) > 32:
            self._redactors.clear()
        self._redactors[id(base)] = (base, secrets, merged)
        return merged

    async def token(self) -> TokenSet:
        """A token to send now, refreshing first when it is expired or missing."""
        current = self._current
        now = self._clock.time()
        action = decide(current, now=now, lifecycle=self._lifecycle, retry_after=self._retry_after)
        if action is TokenAction.USE and current is not None:
            return current
        if action is TokenAction.USE_AND_REFRESH and current is not None:
            if in_flight(self.flight_key):
                # Someone is already refreshing and this token is still good: do not wait.
                return current
            try:
                return await self._refresh(stale=current, force=False)
            except ReauthRequired:
                # The hook has been told; the access token still works until it expires.
                self._back_off(current)
                return current
            except AuthError as error:
                self._back_off(current)
                logger.warning(
                    "early token refresh for %s failed, still using the current token: %s",
                    self.description,
                    error,
                )
                return current
        return await self._refresh(stale=current, force=False)

    def _back_off(self, current: TokenSet) -> None:
        with self._state_lock:
            self._failures += 1
            failures = self._failures
        self._retry_after = refresh_backoff(
            failures,
            now=self._clock.time(),
            token=current,
            lifecycle=self._lifecycle,
            rand=self._random.random(),
        )

    async def renew(self, rejected: TokenSet) -> TokenSet:
        """After a 401: a new token, unless the rejected one has already been replaced."""
        current = self._current
        if current is not None and current.version != rejected.version:
            return current
        return await self._refresh(stale=rejected, force=True)

    async def _refresh(self, *, stale: TokenSet | None, force: bool) -> TokenSet:
        stale_version = stale.version if stale is not None else None
        token = await single_flight(
            self.flight_key, lambda: self._locked_refresh(stale_version, force)
        )
        with self._state_lock:
            self._failures = 0
        self._retry_after = 0.0
        return self._adopt(token)

    async def _locked_refresh(self, stale_version: int | None, force: bool) -> TokenSet:
        async with self.store.lock(self.key):
            stored = await self.store.load(self.key)
            base = self._current
            if stored is not None and (base is None or stored.version > base.version):
                base = self._adopt(stored)
            if base is not None and (base.version != stale_version or not force):
                action = decide(base, now=self._clock.time(), lifecycle=self._lifecycle)
                if base.version != stale_version and action is not TokenAction.REFRESH:
                    # A peer (another process, or another credential object) already refreshed.
                    return base
                if not force and action is TokenAction.USE:
                    return base
            try:
                new = await self._fetch(base)
            except ReauthRequired as error:
                # The refresh token may have been rotated by a peer between our read and our
                # request: adopt theirs rather than asking a person to sign in again.
                latest = await self.store.load(self.key)
                if latest is not None and (base is None or latest.version > base.version):
                    return self._adopt(latest)
                await self._reauth(error)
                raise
            if base is not None and new.version <= base.version:
                new = _bump(new, base.version + 1)
            expected = stored.version if stored is not None else None
            if not await self.store.save(self.key, new, expected_version=expected):
                # Compare-and-swap lost: the stored token is newer than ours; everyone uses it.
                latest = await self.store.load(self.key)
                if latest is not None:
                    return self._adopt(latest)
            logger.debug("obtained a new token for %s (version %d)", self.description, new.version)
            return self._adopt(new)

    async def _reauth(self, error: ReauthRequired) -> None:
        hook = self._on_reauth
        if hook is None:
            return
        try:
            result = hook(error)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result
        except Exception:
            logger.exception("on_reauth_required hook for %s failed", self.description)

    async def seed(self, token: TokenSet) -> TokenSet:
        """Store `token` as the first token set for this key unless one is stored already."""
        stored = await self.store.load(self.key)
        if stored is not None:
            return self._adopt(stored)
        if await self.store.save(self.key, token, expected_version=None):
            return self._adopt(token)
        latest = await self.store.load(self.key)
        return self._adopt(latest if latest is not None else token)

    async def replace(self, token: TokenSet) -> TokenSet:
        """Store a token set obtained interactively (login), after whatever is stored."""
        async with self.store.lock(self.key):
            stored = await self.store.load(self.key)
            version = (stored.version if stored is not None else 0) + 1
            token = _bump(token, version)
            expected = stored.version if stored is not None else None
            if not await self.store.save(self.key, token, expected_version=expected):
                raise AuthError("the token store changed during sign-in; try again")
            return self._adopt(token)

    async def load(self) -> TokenSet | None:
        stored = await self.store.load(self.key)
        return self._adopt(stored) if stored is not None else self._current


def _bump(token: TokenSet, version: int) -> TokenSet:
    return replace(token, version=version)
