"""Test helpers shipped with tether: virtual time, no-wait mode, an in-memory transport."""

from tether._clock import FakeClock
from tether.testing._nowait import no_wait
from tether.transports._mock import MockTransport

__all__ = ["FakeClock", "MockTransport", "no_wait"]
