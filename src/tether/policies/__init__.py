"""The client pipeline. Order (outermost first): retry -> auth -> transport.

Rate limiting, circuit breaking and caching slot in as further links; see DESIGN.md.
"""

from tether.policies._base import Policy, build_pipeline
from tether.policies._retry import RetryPolicy

__all__ = ["Policy", "RetryPolicy", "build_pipeline"]
