"""Breaker gossip: each process keeps its own circuit breaker and tells the others about it.

A shared breaker lets one bad node poison all good ones (Polly closed its distributed
breaker for that, #287). Here no process's breaker is ever driven by another's: each publishes
its state, and a process may choose to open early on *shared evidence*, only when a quorum of
the instances that reported lately say open. Reports expire on the Redis server's clock, so
a process that died stops counting after `ttl` seconds.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass

from tether._core._breaker import CircuitState
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

_STATES = frozenset(state.value for state in CircuitState)


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipView:
    """What the instances that reported lately say about one circuit."""

    open: int
    half_open: int
    closed: int
    #: True when at least `min_reports` instances reported and more than `quorum` of them
    #: say open: shared evidence that this process may act on (advisory).
    quorum_open: bool

    @property
    def reporting(self) -> int:
        return self.open + self.half_open + self.closed


class BreakerGossip:
    """Publishes this process's circuit states and reads everyone's, through Redis.

    Args:
        redis: A `redis://` URL or a `redis.asyncio` client.
        name: Which group of processes gossips together.
        instance: This process's name in the group (default: a random one).
        quorum: The share of reporting instances that must say open, strictly exceeded
            (0.5: a strict majority).
        min_reports: Fewest reporting instances for any verdict; below it, never open.
        ttl: Seconds a report counts; publish again (on every transition, and from a
            heartbeat) more often than that.
        prefix: First part of every key name.

    Gossip is advisory: while Redis is unreachable, publishing does nothing and the view is
    empty, so each process goes by its own breaker alone.
    """

    __slots__ = (
        "_client",
        "_name",
        "_own_client",
        "_pending",
        "_scripts",
        "_throttled",
        "instance",
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
        prefix: str = "tether",
    ) -> None:
        checked: object = quorum
        if isinstance(checked, bool) or not isinstance(checked, int | float):
            raise ConfigError(f"quorum must be a number in [0, 1), got {quorum!r}")
        if not 0 <= quorum < 1:
            raise ConfigError(f"quorum must be a number in [0, 1), got {quorum!r}")
        count: object = min_reports
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"min_reports must be an int >= 1, got {min_reports!r}")
        span: object = ttl
        if isinstance(span, bool) or not isinstance(span, int | float) or not ttl > 0:
            raise ConfigError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        self._client, self.target, self._own_client = connect(redis)
        self._name = f"{key_prefix(prefix)}:breaker:{key_prefix(name)}"
        self.instance = instance or uuid.uuid4().hex[:16]
        self.quorum = float(quorum)
        self.min_reports = min_reports
        self.ttl = float(ttl)
        self._scripts = (
            self._client.register_script(_PUBLISH),
            self._client.register_script(_VIEW),
        )
        self._pending: set[asyncio.Task[None]] = set()
        self._throttled = Throttled()

    def redis_key(self, key: str) -> str:
        """The Redis key holding everyone's reports for circuit `key`."""
        return f"{{{self._name}:{digest(key)}}}"

    async def publish(self, key: str, state: CircuitState | str) -> None:
        """Report this process's state of circuit `key` for the next `ttl` seconds."""
        value = state.value if isinstance(state, CircuitState) else state
        if value not in _STATES:
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
        states = [s.decode() if isinstance(s, bytes) else str(s) for s in flat[1::2]]
        opened = states.count("open")
        reporting = len(states)
        return GossipView(
            open=opened,
            half_open=states.count("half_open"),
            closed=states.count("closed"),
            quorum_open=reporting >= self.min_reports and opened > self.quorum * reporting,
        )

    def on_state_change(self, event: BreakerEvent) -> None:
        """A `Breaker(on_state_change=...)` hook: publishes each transition in the background.

        Called from the breaker's synchronous hook, so the publish runs as a task on the
        running loop; a reference is kept until it finishes.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.publish(event.key, event.to_state))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

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
        """Finish background publishes; close the pool if this object opened it."""
        await self.drain()
        if self._own_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        return (
            f"BreakerGossip(redis={self.target!r}, instance={self.instance!r}, "
            f"quorum={self.quorum:g}, min_reports={self.min_reports})"
        )
