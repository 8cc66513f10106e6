"""`tether serve`: one process (or several sharing PostgreSQL and Redis) that runs a
tether.toml: its pollers, webhook inbox, outbox and streams, with an HTTP API and a dashboard.

    async with Hub(tether.spec.load("tether.toml")) as hub:
        app = build_app(hub, token=None)     # a Starlette app; serve it with uvicorn

See docs/hub.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from tether.hub._api import build_app
from tether.hub._runtime import Hub
from tether.hub._store import HubEvent, HubStore, PollerSnapshot, open_hub_store

__all__ = [
    "DemoSandbox",
    "Hub",
    "HubEvent",
    "HubStore",
    "PollerSnapshot",
    "build_app",
    "open_hub_store",
]


def __getattr__(name: str) -> Any:
    # The demo sandbox pulls in the testing kit's servers: loaded only when asked for.
    if name == "DemoSandbox":
        return importlib.import_module("tether.hub._demo").DemoSandbox
    raise AttributeError(f"module 'tether.hub' has no attribute {name!r}")
