"""Breaker gossip: each process keeps its own circuit breaker and tells the others about it.

A shared breaker lets one bad node poison all good ones (Polly closed its distributed
breaker for that, #287). Here no process's breaker is ever driven by another's: each publishes
its state, and a closed breaker opens early on *shared evidence* only when a quorum of the
instances that reported lately say open (never on one report). Reports expire on the Redis
server's clock, so a process that died stops counting after `ttl` seconds.

An instance that opened on shared evidence reports `open_shared`: it is counted as reporting
but not as evidence, or the followers would keep a quorum alive after the instances that saw
the failures recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from dataclasses import dataclass

from tether._core._breaker import CircuitState, TransitionReason
from tether._errors import ConfigError
from tether._flow import BreakerEvent
from tether.distributed._common import (
    REDIS_ERRORS,
    RedisLike,
    Throttled,
    connect,
    digest,
    key_prefix,
)

__all__ = ["BreakerGossip", "GossipView"]

log = logging.getLogger("tether.distributed")

# KEYS[1]: hash instance -> "<state> <expires at, ms>". ARGV: instance, state, ttl ms.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (now + tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
"""

# Returns the live reports as a flat list {instance, state, ...}, dropping expired ones.
_VIEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local state, expires = string.match(all[i + 1], '^(%S+) (%d+)$')
  if state and tonumber(expires) > now then
    live[#live + 1] = all[i]
    live[#live + 1] = state
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
"""

# Publish (when ARGV[2] is not empty) and view in one round trip: the background sync's script.
_SYNC = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. string.format('%d', now + ttl))
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local state, expires = string.match(all[i + 1], '^(%S+) (%d+)$')
  if state and tonumber(expires) > now then
    live[#live + 1] = all[i]
    live[#live + 1] = state
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
"""

#: What an instance may report: its circuit's state, or that it is open on shared evidence.
OPEN_SHARED = "open_shared"
_REPORTS = frozenset({*(state.value for state in CircuitState), OPEN_SHARED})


def _report(state: CircuitState, on_evidence: bool) -> str:
    return OPEN_SHARED if on_evidence and state is CircuitState.OPEN else state.value


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipView:
    """What the instances that reported lately say about one circuit."""

    open: int
    half_open: int
    closed: int
    #: Instances open only because of the others' reports: reporting, but not evidence.
    open_shared: int = 0
    #: True when at least `min_reports` instances reported, at least two say open, and more
    #: than `quorum` of them do: shared evidence that a closed breaker acts on (advisory).
    quorum_open: bool

    @property
    def reporting(self) -> int:
        return self.open + self.half_open + self.closed + self.open_shared


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


class BreakerGossip:
    """Publishes this process's circuit states and reads everyone's, through Redis.

    Pass it to a breaker, `tether.Breaker(gossip=BreakerGossip(redis=url))`: the breaker
    publishes each transition at once, and a background task, started by the first request,
    republishes the state of every circuit in use and re-reads the others' every `interval`
    seconds (at once for a circuit seen for the first time). Requests only read the view that
    task keeps, so the verdict a request acts on is at most `interval` plus one round trip
    old, and no request waits for Redis.

    Args:
        redis: A `redis://` URL or a `redis.asyncio` client.
        name: Which group of processes gossips together.
        instance: This process's name in the group (default: a random one). Use one
            BreakerGossip per process.
        quorum: The share of reporting instances that must say open, strictly exceeded
            (0.5: a strict majority). At least two must say open, whatever the share.
        min_reports: Fewest reporting instances for any verdict; below it, never open.
        ttl: Seconds a report counts; at least twice `interval`.
        interval: Seconds between background syncs (publish and view).
        prefix: First part of every key name.

    Gossip is advisory: while Redis is unreachable, nothing is published, the view is empty
    and each process goes by its own breaker alone (one warning, repeated at most every 30 s).
    Use it from one event loop; `aclose()` stops the background task and withdraws this
    instance's reports.
    """

    __slots__ = (
        "_client",
        "_local",
        "_name",
        "_own_client",
        "_pending",
        "_scripts",
        "_syncing",
        "_task",
        "_throttled",
        "_touched",
        "_verdicts",
        "_wake",
        "instance",
        "interval",
        "min_reports",
        "quorum",
        "target",
        "ttl",
    )

    def __init__(
        self,
        *,
        redis: str | RedisLike,
        name: str = "default",
        instance: str | None = None,
        quorum: float = 0.5,
        min_reports: int = 2,
        ttl: float = 30.0,
        interval: float = 0.5,
        prefix: str = "tether",
    ) -> None:
        if not _number(quorum) or not 0 <= quorum < 1:
            raise ConfigError(f"quorum must be a number in [0, 1), got {quorum!r}")
        count: object = min_reports
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"min_reports must be an int >= 1, got {min_reports!r}")
        if not _number(ttl) or not ttl > 0:
            raise ConfigError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        if not _number(interval) or not interval > 0:
            raise ConfigError(f"interval must be a number of seconds > 0, got {interval!r}")
        if ttl < 2 * interval:
            raise ConfigError(
                f"ttl ({ttl:g} s) must be at least twice interval ({interval:g} s), or live "
                "instances' reports run out between two syncs"
            )
        self._client, self.target, self._own_client = connect(redis)
        self._name = f"{key_prefix(prefix)}:breaker:{key_prefix(name)}"
        self.instance = instance or uuid.uuid4().hex[:16]
        self.quorum = float(quorum)
        self.min_reports = min_reports
        self.ttl = float(ttl)
        self.interval = float(interval)
        self._scripts = (
            self._client.register_script(_PUBLISH),
            self._client.register_script(_VIEW),
            self._client.register_script(_SYNC),
        )
        self._pending: set[asyncio.Task[None]] = set()
        self._throttled = Throttled()
        #: This instance's last known report per circuit.
        self._local: dict[str, str] = {}
        #: Circuits that requests went through since the last background sync.
        self._touched: set[str] = set()
        #: The quorum verdict per circuit, as of the last sync.
        self._verdicts: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._syncing = asyncio.Lock()

    def redis_key(self, key: str) -> str:
        """The Redis key holding everyone's reports for circuit `key`."""
        return f"{{{self._name}:{digest(key)}}}"

    # -- the breaker's side: no I/O ------------------------------------------------------------

    def quorum_open(self, key: str, state: CircuitState, *, on_evidence: bool = False) -> bool:
        """Note this instance's `state` of circuit `key` and answer whether, by the last sync,
        a quorum reports it open. Called by the breaker on every request: memory only."""
        local = self._local
        if key not in local:
            self._wake_up()  # a circuit seen for the first time gets a view at once
        # CircuitState is a str enum: its members are their own report text.
        local[key] = OPEN_SHARED if on_evidence else state
        self._touched.add(key)
        return self._verdicts.get(key, False)

    def on_state_change(self, event: BreakerEvent) -> None:
        """A `Breaker(on_state_change=...)` hook: publishes each transition in the background.

        Called from the breaker's synchronous hook, so the publish runs as a task on the
        running loop; a reference is kept until it finishes.
        """
        report = _report(event.to_state, event.reason == TransitionReason.SHARED_EVIDENCE)
        self._local[event.key] = report
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.publish(event.key, report))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _wake_up(self) -> None:
        task = self._task
        if task is None or task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._beat(), name="tether-breaker-gossip")
        elif self._wake is not None:
            self._wake.set()

    async def _beat(self) -> None:
        wake = self._wake
        while True:
            try:
                await self.sync()
            except Exception as error:  # the task must outlive any one failure
                log.warning("breaker gossip: sync failed (%s)", type(error).__name__)
                self._verdicts = {}
            if wake is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.interval)
                wake.clear()

    async def sync(self) -> None:
        """Republish this instance's state of the circuits in use (and of any not closed) and
        re-read everyone's, now; the background task does this every `interval` seconds.

        A closed circuit no request went through since the last sync is read but not
        republished: an idle instance has no evidence, so its report runs out.
        """
        # One at a time: a background sync that read Redis before a change must not replace,
        # when it finishes, the verdicts of a sync that began after the change.
        async with self._syncing:
            touched, self._touched = self._touched, set()
            verdicts: dict[str, bool] = {}
            ttl_ms = math.ceil(self.ttl * 1000)
            try:
                for key, report in list(self._local.items()):
                    publish = report if key in touched or report != "closed" else ""
                    flat = await self._scripts[2](
                        keys=[self.redis_key(key)], args=[self.instance, publish, ttl_ms]
                    )
                    verdicts[key] = self._judge(flat).quorum_open
            except REDIS_ERRORS as error:
                self._warn(error)
                verdicts = {}  # no evidence: every breaker goes by itself
            self._verdicts = verdicts

    # -- direct use --------------------------------------------------------------------------

    async def publish(self, key: str, state: CircuitState | str) -> None:
        """Report this process's state of circuit `key` for the next `ttl` seconds."""
        value = state.value if isinstance(state, CircuitState) else state
        if value not in _REPORTS:
            raise ConfigError(f"unknown circuit state {state!r}")
        try:
            await self._scripts[0](
                keys=[self.redis_key(key)],
                args=[self.instance, value, math.ceil(self.ttl * 1000)],
            )
        except REDIS_ERRORS as error:
            self._warn(error)

    async def view(self, key: str) -> GossipView:
        """What the instances that reported within `ttl` say about circuit `key`."""
        try:
            flat = await self._scripts[1](keys=[self.redis_key(key)])
        except REDIS_ERRORS as error:
            self._warn(error)
            flat = []
        return self._judge(flat)

    def _judge(self, flat: list[object]) -> GossipView:
        states = [s.decode() if isinstance(s, bytes) else str(s) for s in flat[1::2]]
        opened = states.count("open")
        reporting = len(states)
        return GossipView(
            open=opened,
            half_open=states.count("half_open"),
            closed=states.count("closed"),
            open_shared=states.count(OPEN_SHARED),
            quorum_open=(
                reporting >= self.min_reports and opened >= 2 and opened > self.quorum * reporting
            ),
        )

    async def drain(self) -> None:
        """Wait for background publishes (tests, and before shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _warn(self, error: BaseException) -> None:
        self._throttled.warning(
            "breaker gossip: Redis %s unreachable (%s); going by the local breaker only",
            self.target,
            type(error).__name__,
        )

    async def aclose(self) -> None:
        """Stop the background sync, finish publishes, withdraw this instance's reports (it no
        longer counts), and close the pool if this object opened it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.drain()
        with contextlib.suppress(*REDIS_ERRORS):
            for key in self._local:
                await self._client.hdel(self.redis_key(key), self.instance)
        self._local.clear()
        self._verdicts = {}
        if self._own_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        return (
            f"BreakerGossip(redis={self.target!r}, instance={self.instance!r}, "
            f"quorum={self.quorum:g}, min_reports={self.min_reports})"
        )
