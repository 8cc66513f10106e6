"""Optional OpenTelemetry spans for the hub's units of work: a poll, a dispatch, a delivery.

With `[hub] traces = true` and `opentelemetry-api` installed, each unit is a span on the
`tether.hub` tracer (exported wherever the application's SDK sends spans); otherwise nothing
happens and nothing is imported. Attributes are names, never URLs with queries or secrets.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

__all__ = ["Tracer"]


class Tracer:
    """Makes spans when enabled and OpenTelemetry is importable; a no-op otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self._tracer: Any = None
        if enabled:
            try:
                trace = importlib.import_module("opentelemetry.trace")
            except ImportError:
                return
            self._tracer = trace.get_tracer("tether.hub")

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextlib.contextmanager
    def span(self, name: str, **attributes: str | int | float | bool) -> Iterator[None]:
        if self._tracer is None:
            yield
            return
        with self._tracer.start_as_current_span(name, attributes=attributes):
            yield
