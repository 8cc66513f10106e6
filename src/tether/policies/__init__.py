"""The client pipeline. Order, outermost first:

    cache -> retry -> rate limit -> bulkhead -> breaker -> auth -> redirects -> transport

Each link is `send(request, next_)`; the client links the ones its options ask for, once.
"""

from tether.policies._base import Policy, build_pipeline
from tether.policies._retry import RetryPolicy

__all__ = ["Policy", "RetryPolicy", "build_pipeline"]
