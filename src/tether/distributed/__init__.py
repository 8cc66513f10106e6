"""State shared between processes through Redis: rate limits, advice, tokens, breakers, leases.

Each piece keeps its failure behaviour explicit: what happens while Redis cannot be reached is
an option, never a silent change of meaning (a per-host limit stays per host, a shared limit
never becomes an unlimited one unless asked).
"""

from tether.distributed._common import SharedStateUnavailable
from tether.distributed._redis_advice import RedisAdviceStore
from tether.distributed._redis_breaker import BreakerGossip, GossipView
from tether.distributed._redis_lease import RedisLeaseStore
from tether.distributed._redis_limiter import OnRedisError, RedisRateLimiter
from tether.distributed._redis_tokens import RedisTokenStore

__all__ = [
    "BreakerGossip",
    "GossipView",
    "OnRedisError",
    "RedisAdviceStore",
    "RedisLeaseStore",
    "RedisRateLimiter",
    "RedisTokenStore",
    "SharedStateUnavailable",
]
