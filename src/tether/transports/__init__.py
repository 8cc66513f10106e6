"""Transports: the one place tether does network I/O."""

from tether.transports._aiohttp import AiohttpTransport
from tether.transports._base import AsyncTransport
from tether.transports._httpx import HttpxTransport
from tether.transports._mock import MockTransport

__all__ = ["AiohttpTransport", "AsyncTransport", "HttpxTransport", "MockTransport"]
